"""Plain Django's WSGI application, for the bare ceiling (``bench.bare_settings``)."""

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
