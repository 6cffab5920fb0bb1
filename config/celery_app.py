import os

from celery import Celery

# Production unless told otherwise: it refuses to start without a secret key.
# The local settings (DEBUG on, a published key) are for manage.py on this machine.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("storefront")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
