"""The partition count moves from the setting into the database: each
checkpoint row says how many partitions its projector has, so a resize can
change it online (``projections.resize``). Existing rows take the setting in
effect when this migration runs, the count they were built with; rows of
partitions beyond it (left by an earlier change of the setting) are dropped."""

from typing import Any

from django.conf import settings
from django.db import migrations, models


def count_from_setting(apps: Any, schema_editor: Any) -> None:
    checkpoint = apps.get_model("projections", "Checkpoint")
    rows = checkpoint.objects.using(schema_editor.connection.alias).filter(projector="products")
    count = settings.PROJECTION_PARTITIONS
    rows.filter(partition__gte=count).delete()
    rows.update(partitions=count)


class Migration(migrations.Migration):
    dependencies = [
        ("projections", "0009_event_moves_to_eventstore"),
    ]

    operations = [
        migrations.AddField(
            model_name="checkpoint",
            name="partitions",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.RunPython(
            count_from_setting, migrations.RunPython.noop, hints={"model_name": "checkpoint"}
        ),
    ]
