"""The request id of each event's command (``Event.request_id``).

On PostgreSQL adding a column with a constant default does not rewrite the
table, but it needs the table's exclusive lock for a moment, and while it
waits for that lock every command queues behind it. So it waits at most
``LOCK_TIMEOUT``: behind a long reader of the log the migration fails with
a lock timeout and is simply run again, instead of stopping the writes.
"""

from django.db import migrations, models

LOCK_TIMEOUT = "5s"


def wait_briefly_for_locks(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])


class Migration(migrations.Migration):
    dependencies = [
        ("eventstore", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(
            wait_briefly_for_locks,
            migrations.RunPython.noop,
            hints={"model_name": "event"},
            elidable=True,
        ),
        migrations.AddField(
            model_name="event",
            name="request_id",
            field=models.CharField(blank=True, db_default="", max_length=64),
        ),
    ]
