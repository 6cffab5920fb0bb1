import os

from config.handlers import get_application

# Production unless told otherwise: it refuses to start without a secret key.
# The local settings (DEBUG on, a published key) are for manage.py on this machine.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Anonymous queries take a lean middleware stack, the rest Django's full one.
application = get_application()
