"""The event table now belongs to the event store app (``eventstore``
migration 0001): the projections app lets go of its state only."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("projections", "0008_parked_event_resolve_permission"),
        ("eventstore", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Event")],
            database_operations=[],
        ),
    ]
