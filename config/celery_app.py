import os
from typing import Any

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

# Production unless told otherwise: it refuses to start without a secret key.
# The local settings (DEBUG on, a published key) are for manage.py on this machine.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("storefront")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _check_connections(sender: Task, **kwargs: Any) -> None:
    """A worker's database connections live from task to task, as a web
    process's do from request to request: closed when they broke or reached
    CONN_MAX_AGE, and health-checked before their next use (Django's
    ``close_old_connections``). Celery's own Django fixup would close them all
    around every task (see CELERY_DB_REUSE_MAX in the settings). Eager tasks
    run inside their caller's transaction, which this must not touch."""
    if not getattr(sender.request, "is_eager", False):
        close_old_connections()
