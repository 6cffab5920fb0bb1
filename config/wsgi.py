import os

from django.core.wsgi import get_wsgi_application

# Production unless told otherwise: it refuses to start without a secret key.
# The local settings (DEBUG on, a published key) are for manage.py on this machine.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

application = get_wsgi_application()
