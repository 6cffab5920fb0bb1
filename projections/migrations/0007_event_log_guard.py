"""The event table's guard on PostgreSQL (the write database only).

- An event may be inserted only by a transaction that announced itself as an
  event writer (``eventstore.recording.announce_event_writer``): the log's readers
  wait for those transactions alone, so an event from any other would risk
  being passed and never read. A forgotten announcement is an error, not a
  silent skip.
- The log is append-only: UPDATE and DELETE are refused. The one door is the
  erasure of a user's personal data, which sets ``storefront.log_redaction``
  in its transaction and may then change an event's payload, nothing else.

TRUNCATE is left to the database's owner (test databases are emptied so).
"""

from django.db import migrations

GUARD = """
CREATE FUNCTION storefront_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
       AND (NEW.position, NEW.transaction_id, NEW.stream_type, NEW.stream_id,
            NEW.event_type, NEW.version, NEW.occurred_at)
           IS NOT DISTINCT FROM
           (OLD.position, OLD.transaction_id, OLD.stream_type, OLD.stream_id,
            OLD.event_type, OLD.version, OLD.occurred_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the event log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER storefront_event_guard
    BEFORE INSERT OR UPDATE OR DELETE ON projections_event
    FOR EACH ROW EXECUTE FUNCTION storefront_event_guard();
"""

UNGUARD = """
DROP TRIGGER IF EXISTS storefront_event_guard ON projections_event;
DROP FUNCTION IF EXISTS storefront_event_guard();
"""


def _run(schema_editor, sql):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)  # no parameters: the % in RAISE stays as it is


def guard(apps, schema_editor):
    _run(schema_editor, GUARD)


def unguard(apps, schema_editor):
    _run(schema_editor, UNGUARD)


class Migration(migrations.Migration):
    dependencies = [
        ("projections", "0006_review_store_narrow"),
    ]

    # The hint sends it where the event table is (the router: ``default``).
    operations = [migrations.RunPython(guard, unguard, hints={"model_name": "event"})]
