"""The partition count moves from the setting into the database: each
checkpoint row says how many partitions its projector has, so a resize can
change it online (``projections.resize``). Existing rows take the count they
stand for: the product projector's rows are its partitions 0 to N-1, made for
the count it ran with, whatever the setting says where this migration runs."""

from typing import Any

from django.db import migrations, models
from django.db.models import Max


def count_from_rows(apps: Any, schema_editor: Any) -> None:
    checkpoint = apps.get_model("projections", "Checkpoint")
    rows = checkpoint.objects.using(schema_editor.connection.alias).filter(projector="products")
    highest = rows.aggregate(highest=Max("partition"))["highest"]
    if highest is not None:
        rows.update(partitions=highest + 1)


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
            count_from_rows, migrations.RunPython.noop, hints={"model_name": "checkpoint"}
        ),
    ]
