"""What erasing a user does to the event table: the one place where the write
side reads the log or changes it instead of appending to it (through the
event store's one door for that, ``eventstore.recording.declare_redaction``).
The tests erase users against it on both databases.
"""

from collections.abc import Sequence

from django.db import connections

from eventstore.databases import WRITE_DB
from eventstore.models import Event
from eventstore.recording import declare_redaction

EVENT_TABLE = Event._meta.db_table
REDACTED = "[redacted]"

# The author's own words in a review's events: ReviewAdded carries all three,
# ReviewEdited the body. Every other field (ids, ratings, times) stays.
_REDACT_POSTGRES = f"""
    UPDATE {EVENT_TABLE}
    SET payload = jsonb_set(jsonb_set(jsonb_set(payload,
        '{{author_name}}', to_jsonb(%s::text), false),
        '{{title}}', to_jsonb(%s::text), false),
        '{{body}}', to_jsonb(%s::text), false)
    WHERE stream_type = 'review'
      AND (payload ? 'author_name' OR payload ? 'title' OR payload ? 'body')
      AND stream_id IN (
          SELECT stream_id FROM {EVENT_TABLE}
          WHERE stream_type = 'review' AND event_type = 'ReviewAdded'
            AND payload ->> 'author_id' = %s
      )
"""  # noqa: S608 (a constant table name; values are parameters)
_REDACT_SQLITE = f"""
    UPDATE {EVENT_TABLE}
    SET payload = json_replace(payload, '$.author_name', %s, '$.title', %s, '$.body', %s)
    WHERE stream_type = 'review'
      AND coalesce(json_type(payload, '$.author_name'), json_type(payload, '$.title'),
                   json_type(payload, '$.body')) IS NOT NULL
      AND stream_id IN (
          SELECT stream_id FROM {EVENT_TABLE}
          WHERE stream_type = 'review' AND event_type = 'ReviewAdded'
            AND json_extract(payload, '$.author_id') = %s
      )
"""  # noqa: S608 (a constant table name; values are parameters)


def redact_review_events(*, author_id: int) -> int:
    """Replace the author's name, the title and the body with ``REDACTED`` in
    every recorded event of every review ``author_id`` ever wrote (removed
    ones included: their ``ReviewAdded`` names the author). Every other field,
    and every event row, stays. Returns how many events were redacted.

    Precondition: a transaction is open on the write database and has removed
    each of those reviews with its ``ReviewRemoved`` event, so no projector
    shows a redacted review once it has read that far (a replay from the
    first event shows the marker only inside the batch that removes it).

    On PostgreSQL the event table refuses UPDATE and DELETE (a trigger)
    unless the transaction first declared a redaction (``declare_redaction``);
    this is the only statement that relies on it. SQLite has no such trigger.
    """
    connection = connections[WRITE_DB]
    declare_redaction()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_REDACT_POSTGRES, [REDACTED, REDACTED, REDACTED, str(author_id)])
        else:
            cursor.execute(_REDACT_SQLITE, [REDACTED, REDACTED, REDACTED, author_id])
        return cursor.rowcount


def recorded_after_this_transaction(review_ids: Sequence[int]) -> bool:
    """Whether a transaction that took its id after this one has recorded an
    event of one of these reviews (PostgreSQL; SQLite's writers are serialized).

    Precondition: this transaction holds the lock of each of these reviews, so
    every command that locked one before it has committed (or rolled back) and
    its events are visible here; and this transaction has its id already.
    """
    connection = connections[WRITE_DB]
    if connection.vendor != "postgresql" or not review_ids:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT EXISTS (
                    SELECT 1 FROM {EVENT_TABLE}
                    WHERE stream_type = 'review' AND stream_id = ANY(%s)
                      AND transaction_id > pg_current_xact_id()
                )""",  # noqa: S608 (a constant table name; values are parameters)
            [list(review_ids)],
        )
        return bool(cursor.fetchone()[0])
