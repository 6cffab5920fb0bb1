"""The event table moves here from the projections app, as it is: its state
only (the table keeps its name, ``projections_event``, its rows, indexes and
the guard of projections' migration 0007)."""

import django.core.serializers.json
import django.db.models.functions.datetime
from django.db import migrations, models

import eventstore.models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("projections", "0008_parked_event_resolve_permission"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Event",
                    fields=[
                        ("position", models.BigAutoField(primary_key=True, serialize=False)),
                        (
                            "transaction_id",
                            eventstore.models.TransactionIdField(
                                db_default=eventstore.models.CurrentTransactionId(),
                                editable=False,
                            ),
                        ),
                        ("stream_type", models.CharField(max_length=40)),
                        ("stream_id", models.BigIntegerField()),
                        ("event_type", models.CharField(max_length=60)),
                        ("version", models.PositiveSmallIntegerField()),
                        (
                            "payload",
                            models.JSONField(
                                encoder=django.core.serializers.json.DjangoJSONEncoder
                            ),
                        ),
                        (
                            "occurred_at",
                            models.DateTimeField(
                                db_default=django.db.models.functions.datetime.Now()
                            ),
                        ),
                    ],
                    options={
                        "db_table": "projections_event",
                        "indexes": [
                            models.Index(
                                fields=["transaction_id", "position"], name="event_log_order"
                            ),
                            models.Index(
                                fields=["stream_type", "stream_id", "position"],
                                name="event_stream",
                            ),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
