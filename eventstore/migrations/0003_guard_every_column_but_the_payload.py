"""The event table's guard (projections migration 0007) let an erasure's
transaction change the payload and nothing else, by naming each other column;
a column added since (``request_id``) was left out. It now compares the whole
row but the payload, so a column added later is guarded too."""

from django.db import migrations

GUARD_TEMPLATE = """
CREATE OR REPLACE FUNCTION storefront_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF current_setting('storefront.event_writer', true) IS DISTINCT FROM 'on' THEN
            RAISE EXCEPTION 'events are recorded only by a transaction announced as an event writer'
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Start the transaction with command_transaction().';
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE'
       AND current_setting('storefront.log_redaction', true) = 'on'
       AND SAME_BUT_THE_PAYLOAD THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the event log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""
GUARD = GUARD_TEMPLATE.replace(
    "SAME_BUT_THE_PAYLOAD", "(to_jsonb(NEW) - 'payload') = (to_jsonb(OLD) - 'payload')"
)
# Projections migration 0007's comparison, column by column.
PREVIOUS_GUARD = GUARD_TEMPLATE.replace(
    "SAME_BUT_THE_PAYLOAD",
    """(NEW.position, NEW.transaction_id, NEW.stream_type, NEW.stream_id,
            NEW.event_type, NEW.version, NEW.occurred_at)
           IS NOT DISTINCT FROM
           (OLD.position, OLD.transaction_id, OLD.stream_type, OLD.stream_id,
            OLD.event_type, OLD.version, OLD.occurred_at)""",
)


def _run(schema_editor, sql):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)  # no parameters: the % in RAISE stays as it is


def guard(apps, schema_editor):
    _run(schema_editor, GUARD)


def previous_guard(apps, schema_editor):
    _run(schema_editor, PREVIOUS_GUARD)


class Migration(migrations.Migration):
    dependencies = [
        ("eventstore", "0002_event_request_id"),
    ]

    # The hint sends it where the event table is (the router: ``default``).
    operations = [migrations.RunPython(guard, previous_guard, hints={"model_name": "event"})]
