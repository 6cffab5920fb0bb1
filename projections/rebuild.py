"""Rebuild the read side beside the live one, catch up, and swap it in.

The new tables live in a shadow: a schema of their own on PostgreSQL
(``projections_rebuild``, same table and index names), a file of its own on
SQLite. While a rebuild runs, the ``read`` alias of the rebuilding process
points at the shadow, so the projectors' own code fills it; readers and the
live projectors keep using the live tables.

1. Fill the shadow: by default from one snapshot of the write model (a
   REPEATABLE READ transaction that also records the snapshot: the events of
   every transaction visible in it are already in the rows), set-based: on
   PostgreSQL by COPY from SQL on the write database (``projections.backfill``),
   on SQLite with bulk inserts of the rows ``projections.truth`` computes;
   with ``from_events`` by replaying the whole log through the handlers in
   large batches.
2. Catch up: run the projectors on the shadow from its checkpoints.
3. Swap, under a short lock: on PostgreSQL the live tables are locked, the
   shadow catches up with the last events, and the two sets of tables trade
   schemas in one transaction; on SQLite the live tables are replaced by the
   shadow's rows in one IMMEDIATE transaction, which readers in WAL mode do
   not wait for.

A run killed while filling from a snapshot starts over; killed while
replaying or catching up, it carries on from the shadow's checkpoints. One
rebuild runs at a time (``rebuild_lock``); the parked events' history stays
across the swap (``_keep_parked_history``).
"""

import contextlib
import fcntl
import os
import socket
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management import call_command
from django.db import connections, transaction
from django.utils import timezone

from projections import eventlog
from projections.bulk import upsert
from projections.engine import (
    Projection,
    ReadAhead,
    catch_up,
    ensure_checkpoints,
    notify_checkpoints_changed,
)
from projections.models import (
    Checkpoint,
    ParkedEvent,
    ProductFacts,
    ProductReadModel,
    RebuildRun,
    RelatedLink,
    ReviewReadModel,
    SellerFacts,
    SellerReadModel,
)
from projections.projectors import PROJECTIONS
from projections.projectors.products import WHOLE_PARTITION, WholeProductProjection

READ_DB = "read"
SHADOW_SCHEMA = "projections_rebuild"
RETIRED_SCHEMA = "projections_retired"
# Checkpoint first: the swap locks tables in this order, and a projector batch
# touches the checkpoint table first, so the two never deadlock.
SWAPPED_MODELS = (
    Checkpoint,
    ProductReadModel,
    SellerReadModel,
    ReviewReadModel,
    RelatedLink,
    ProductFacts,
    SellerFacts,
    ParkedEvent,
)
# Locked with the others, but not replaced: see ``_keep_parked_history``.
REPLACED_TABLES = [m._meta.db_table for m in SWAPPED_MODELS if m is not ParkedEvent]
Progress = Callable[[str, int, int], None]
# Events per batch (and transaction). A replaying batch writes every row its
# events touched, once: with the whole log ahead, larger batches write each
# product's row fewer times. On the large bench data (2.6M events), back to
# back: 200,000 replayed in 94-107 s, 300,000 in 95 s, 400,000 in 83-86 s
# with the process at 1.7 GB at most, 800,000 in 105 s at 3.2 GB.
REPLAY_BATCH_SIZE = 400_000
CATCH_UP_BATCH_SIZE = 20_000


def _live_settings() -> dict[str, Any]:
    return settings.DATABASES[READ_DB]


def _is_postgres() -> bool:
    return bool(_live_settings()["ENGINE"].endswith("postgresql"))


def _shadow_file() -> Path:
    live = Path(_live_settings()["NAME"])
    return live.with_name(f"{live.stem}.rebuild{live.suffix}")


@contextlib.contextmanager
def shadow_alias() -> Iterator[None]:
    """Point this thread's ``read`` connection at the shadow for the block.

    The connection gets a settings dict of its own: the one it was made with
    is shared by every thread's connection. On PostgreSQL it is a connection
    of its own, opened for the block and closed after it, never one from the
    live alias's pool (``DATABASE_POOL``): Django keys its pools by alias, so
    a pooled connection would come with the live search path, and the
    rebuild would write into the live tables. Checked before the block runs.
    """
    connection = connections[READ_DB]
    original = connection.settings_dict
    redirected = dict(original)
    if _is_postgres():
        options = {
            key: value for key, value in original.get("OPTIONS", {}).items() if key != "pool"
        }
        # After the URL's own server options, if any: the last setting wins.
        server_options = f"{options.get('options', '')} -c search_path={SHADOW_SCHEMA}"
        options["options"] = server_options.strip()
        redirected["OPTIONS"] = options
    else:
        redirected["NAME"] = str(_shadow_file())
    connection.close()
    connection.settings_dict = redirected
    try:
        if _is_postgres():
            _check_on_shadow(connection)
        yield
    finally:
        connection.close()
        connection.settings_dict = original


def _check_on_shadow(connection: Any) -> None:
    """Refuse to go on unless ``connection`` reads and writes the shadow schema."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path'), current_schema()")
        search_path, schema = cursor.fetchone()
    if connection.pool is not None or schema != SHADOW_SCHEMA:
        raise RuntimeError(
            f"The rebuild's connection is not on its shadow (search_path {search_path!r}, "
            f"pooled: {connection.pool is not None}); nothing was written."
        )


def shadow_exists() -> bool:
    if not _is_postgres():
        return _shadow_file().exists()
    with connections[READ_DB].cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [SHADOW_SCHEMA]
        )
        return cursor.fetchone() is not None


def drop_shadow() -> None:
    if _is_postgres():
        with connections[READ_DB].cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
        return
    for suffix in ("", "-wal", "-shm"):
        Path(f"{_shadow_file()}{suffix}").unlink(missing_ok=True)


def create_shadow() -> None:
    drop_shadow()
    if _is_postgres():
        with connections[READ_DB].cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {SHADOW_SCHEMA}")
    with shadow_alias():
        call_command("migrate", database=READ_DB, interactive=False, verbosity=0)


def analyze_read_side() -> None:
    """Give the planner statistics of the read models' tables on this thread's
    ``read`` connection. Tables just filled from empty have none until
    autovacuum comes by (a minute or more): the planner takes them for empty
    and looks up the projectors' facts by scanning the whole partition."""
    if not _is_postgres():
        return
    with connections[READ_DB].cursor() as cursor:
        for model in SWAPPED_MODELS:
            cursor.execute(f"ANALYZE {model._meta.db_table}")


def analyze_shadow() -> None:
    """Statistics of the shadow's tables before they go live (a snapshot's
    backfill gathers its own)."""
    with shadow_alias():
        analyze_read_side()


# One rebuild at a time --------------------------------------------------------

REBUILD_LOCK_KEY = zlib.crc32(b"storefront-rebuild") & 0x7FFFFFFF


class RebuildRunning(Exception):
    """Another rebuild holds the rebuild lock; nothing was touched."""


def _lock_file() -> Path:
    return Path(f"{_shadow_file()}.lock")


@contextlib.contextmanager
def rebuild_lock() -> Iterator[None]:
    """Hold the rebuild lock for the block, or raise ``RebuildRunning``
    naming the rebuild that holds it.

    The lock dies with its process, so a rebuild killed even by SIGKILL
    never blocks the next one. On PostgreSQL it is a session advisory lock
    on the live read database, on a connection of its own: this process's
    ``read`` connection is reopened on the shadow meanwhile, and one from
    the pool would keep the lock after going back to it. The connection's
    application name says whose lock it is. On SQLite it is ``flock`` on a
    file beside the shadow file, which says the same.
    """
    holder = f"pid {os.getpid()} on {socket.gethostname()}"
    if _is_postgres():
        with _advisory_rebuild_lock(holder):
            yield
        return
    with _locked_file(holder):
        yield


@contextlib.contextmanager
def _advisory_rebuild_lock(holder: str) -> Iterator[None]:
    import psycopg

    params = connections[READ_DB].get_connection_params()
    params["application_name"] = f"rebuild_projections {holder}"[:63]
    with psycopg.connect(**params, autocommit=True) as lock:
        taken = lock.execute("SELECT pg_try_advisory_lock(%s, 0)", [REBUILD_LOCK_KEY]).fetchone()
        if not taken or not taken[0]:
            raise RebuildRunning(_refusal(lock_holder()))
        try:
            yield
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s, 0)", [REBUILD_LOCK_KEY])


@contextlib.contextmanager
def _locked_file(holder: str) -> Iterator[None]:
    with _lock_file().open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RebuildRunning(_refusal(_described(lock))) from None
        _describe(lock, f"{holder}, since {timezone.now():%Y-%m-%d %H:%M:%S %Z}")
        try:
            yield
        finally:
            _describe(lock, "")


def _describe(lock: IO[str], text: str) -> None:
    lock.truncate(0)
    lock.write(text)
    lock.flush()


def _described(lock: IO[str]) -> str | None:
    lock.seek(0)
    return lock.read().strip() or None


def lock_holder() -> str | None:
    """Who holds the rebuild lock, as it described itself: its pid, host and
    since when; None when nobody does (on SQLite: nobody said so, as a
    holder killed meanwhile leaves its words behind)."""
    if not _is_postgres():
        if not _lock_file().exists():
            return None
        with _lock_file().open() as lock:
            return _described(lock)
    with connections[READ_DB].cursor() as cursor:
        cursor.execute(
            """SELECT activity.application_name, activity.backend_start
               FROM pg_locks AS lock JOIN pg_stat_activity AS activity USING (pid)
               WHERE lock.locktype = 'advisory' AND lock.granted
                 AND lock.classid::bigint = %s AND lock.objid = 0 AND lock.objsubid = 2
                 AND lock.database = (
                     SELECT oid FROM pg_database WHERE datname = current_database())""",
            [REBUILD_LOCK_KEY],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    name, since = row
    who = (name or "").removeprefix("rebuild_projections ") or "a session this role cannot see"
    return f"{who}, since {since:%Y-%m-%d %H:%M:%S %Z}" if since else who


def _refusal(holder: str | None) -> str:
    run = RebuildRun.objects.filter(finished_at__isnull=True).order_by("-pk").first()
    what = f"rebuild #{run.pk} ({run.mode}, {run.get_phase_display().lower()})" if run else ""
    who = f"{what} by {holder}" if what and holder else what or holder or "holder unknown"
    return (
        f"Another rebuild_projections is running: {who}. Wait for it to finish; "
        "a rebuild that dies or is killed releases its lock."
    )


# Filling from a snapshot ---------------------------------------------------


def backfill_from_snapshot(progress: Progress) -> int:
    """Fill the shadow from one consistent snapshot of the write model.

    Returns the number of read-model rows written.
    """
    from projections import truth

    write = connections["default"]
    with transaction.atomic(using="default"):
        with write.cursor() as cursor:
            if write.vendor == "postgresql":
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute(
                    "SELECT pg_current_snapshot()::text, "
                    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
                )
                snapshot, xmin = cursor.fetchone()
                start = eventlog.LogPosition(int(xmin), 0)
            else:
                snapshot = ""
                cursor.execute("SELECT coalesce(max(position), 0) FROM projections_event")
                start = eventlog.LogPosition(0, int(cursor.fetchone()[0]))
        last_position = start.position or _max_position()
        if write.vendor == "postgresql" and _is_postgres():
            return _backfill_postgres(cursor_of(write), start, snapshot, last_position, progress)
        products = truth.expected_products()
        progress("products", 0, len(products))
        sellers = truth.expected_sellers()
        facts = _product_facts(products)
        with shadow_alias():
            _write_products(products, last_position)
            progress("products", len(products), len(products))
            _write_sellers(sellers, last_position)
            _write_facts(facts, products, sellers)
            _write_links(products)
            reviews = _write_reviews(progress)
            _write_checkpoints(start, snapshot)
    return len(products) + len(sellers) + reviews


def cursor_of(connection: Any) -> Any:
    """A psycopg cursor on ``connection`` (in its current transaction)."""
    import psycopg

    connection.ensure_connection()
    return psycopg.ClientCursor(connection.connection)


def _backfill_postgres(
    write: Any, start: eventlog.LogPosition, snapshot: str, last_position: int, progress: Progress
) -> int:
    """COPY the rows from the write model into the shadow, set-based; see
    ``projections.backfill``. The reviews go on a thread of their own, in a
    transaction that imports the snapshot, while this one fills the rest.

    Precondition: the snapshot's REPEATABLE READ transaction is open on ``write``.
    """
    from projections import backfill

    backfill.prepare_snapshot(write)
    write.execute("SELECT pg_export_snapshot()")
    exported = str(write.fetchone()[0])
    with ThreadPoolExecutor(1, thread_name_prefix="rebuild-reviews") as pool:
        reviews = pool.submit(_fill_reviews, exported, progress)
        try:
            with shadow_alias(), transaction.atomic(using=READ_DB):
                shadow = cursor_of(connections[READ_DB])
                rows = backfill.fill_products(
                    write, shadow, last_position=last_position, progress=progress
                )
                _write_checkpoints(start, snapshot)
        finally:
            written = reviews.result()
    return rows + written


def _fill_reviews(exported_snapshot: str, progress: Progress) -> int:
    """On a thread of its own, with connections of its own (closed at the end)."""
    from projections import backfill

    try:
        with transaction.atomic(using="default"):
            write = cursor_of(connections["default"])
            write.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            write.execute("SET TRANSACTION SNAPSHOT %s", [exported_snapshot])
            backfill.prepare_snapshot(write)
            with shadow_alias(), transaction.atomic(using=READ_DB):
                shadow = cursor_of(connections[READ_DB])
                return backfill.fill_reviews(write, shadow, progress=progress)
    finally:
        connections.close_all()


def _max_position() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT coalesce(max(position), 0) FROM projections_event")
        return int(cursor.fetchone()[0])


def _product_facts(products: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {
        pk: {
            "seller_id": row["seller_id"],
            "name": row["name"],
            "price": row["price"],
            "is_active": row["is_active"],
            "rating_sum": row["rating_sum"],
            "review_count": row["review_count"],
        }
        for pk, row in products.items()
    }


def _write_products(products: dict[int, dict[str, Any]], last_position: int) -> None:
    now = timezone.now()
    rows = [
        ProductReadModel(product_id=pk, last_position=last_position, updated_at=now, **fields)
        for pk, fields in products.items()
    ]
    fields = [f.name for f in ProductReadModel._meta.concrete_fields if not f.primary_key]
    for start in range(0, len(rows), 5000):
        upsert(ProductReadModel, rows[start : start + 5000], conflict=["product_id"], update=fields)


def _write_sellers(sellers: dict[int, dict[str, Any]], last_position: int) -> None:
    now = timezone.now()
    rows = [
        SellerReadModel(seller_id=pk, last_position=last_position, updated_at=now, **fields)
        for pk, fields in sellers.items()
    ]
    fields = [f.name for f in SellerReadModel._meta.concrete_fields if not f.primary_key]
    upsert(SellerReadModel, rows, conflict=["seller_id"], update=fields)


def _write_facts(
    facts: dict[int, dict[str, Any]],
    products: dict[int, dict[str, Any]],
    sellers: dict[int, dict[str, Any]],
) -> None:
    scopes = [("products", p) for p in range(PROJECTIONS["products"].partition_count())]
    scopes.append(("sellers", 0))
    product_facts = [
        ProductFacts(projector=name, partition=partition, product_id=pk, **fields)
        for name, partition in scopes
        for pk, fields in facts.items()
    ]
    for start in range(0, len(product_facts), 20000):
        upsert(
            ProductFacts,
            product_facts[start : start + 20000],
            conflict=["projector", "partition", "product_id"],
            update=["seller_id", "name", "price", "is_active", "rating_sum", "review_count"],
        )
    seller_facts = [
        SellerFacts(
            projector="products",
            partition=partition,
            seller_id=pk,
            name=row["name"],
            reputation=row["reputation"],
        )
        for _, partition in scopes[:-1]
        for pk, row in sellers.items()
    ]
    upsert(
        SellerFacts,
        seller_facts,
        conflict=["projector", "partition", "seller_id"],
        update=["name", "reputation"],
    )


def _write_links(products: dict[int, dict[str, Any]]) -> None:
    partitions = PROJECTIONS["products"].partition_count()
    RelatedLink.objects.bulk_create(
        (
            RelatedLink(source_id=pk, target_id=entry["id"], partition=pk % partitions)
            for pk, row in products.items()
            for entry in row["related_products"]
        ),
        batch_size=5000,
    )


def _write_reviews(progress: Progress) -> int:
    """Index every counted review in the product projector's review store."""
    from reviews.models import Review

    total = Review.objects.filter(is_hidden=False).count()
    written = 0
    chunk: list[ReviewReadModel] = []
    visible = Review.objects.filter(is_hidden=False).order_by("pk")
    rows = visible.values_list("pk", "product_id", "created_at")
    for pk, product_id, created_at in rows.iterator(20000):
        chunk.append(ReviewReadModel(review_id=pk, product_id=product_id, created_at=created_at))
        if len(chunk) == 20000:
            written += _flush_reviews(chunk)
            progress("reviews", written, total)
    written += _flush_reviews(chunk)
    progress("reviews", written, total)
    return written


def _flush_reviews(chunk: list[ReviewReadModel]) -> int:
    upsert(ReviewReadModel, chunk, conflict=["review_id"], update=["product_id", "created_at"])
    count = len(chunk)
    chunk.clear()
    return count


def _write_checkpoints(start: eventlog.LogPosition, snapshot: str) -> None:
    Checkpoint.objects.bulk_create(
        Checkpoint(
            projector=name,
            partition=partition,
            transaction_id=start.transaction_id,
            position=start.position,
            skip_snapshot=snapshot,
        )
        for name, projection in PROJECTIONS.items()
        for partition in range(projection.partition_count())
    )


# Catching up and swapping --------------------------------------------------


def catch_up_shadow(batch_size: int, progress: Progress | None = None) -> int:
    """Run every projector on the shadow up to the log's end as it is now.

    A fixed target: writers keep adding events, and the ones after it are
    the live projectors' to apply once the shadow is swapped in.
    """
    target = eventlog.head()
    applied = 0
    with shadow_alias():
        behind = _events_behind()
        while not _reached(target, Checkpoint.objects.all()):
            round_applied = 0
            for projection in PROJECTIONS.values():
                ensure_checkpoints(projection)
                for partition in range(projection.partition_count()):
                    round_applied += catch_up(projection, partition, batch_size=batch_size)
            applied += round_applied
            if progress is not None:
                progress("events", applied, max(behind, applied))
            if round_applied == 0:
                break  # a halted or busy partition: the live projectors carry on from it
    return applied


def _reached(target: eventlog.LogPosition, checkpoints: Any) -> bool:
    positions = list(checkpoints.values_list("transaction_id", "position"))
    return bool(positions) and all(
        eventlog.LogPosition(transaction_id, position) >= target
        for transaction_id, position in positions
    )


def replay_whole(batch_size: int, progress: Progress) -> int:
    """Replay the log once for all product partitions together, then give
    every partition the result: its rows are already in place, and its facts
    and checkpoint are copies of the whole pass's.

    Resumable: the whole pass has a checkpoint of its own until the split.
    """
    products = PROJECTIONS["products"]
    sellers = PROJECTIONS["sellers"]
    with shadow_alias():
        whole = Checkpoint.objects.filter(projector=products.name, partition=WHOLE_PARTITION)
        if not whole.exists():
            if Checkpoint.objects.filter(projector=products.name).exists():
                return 0  # split already: the run goes on catching up
            Checkpoint.objects.create(projector=products.name, partition=WHOLE_PARTITION)
        ensure_checkpoints(sellers)
        # Kept from batch to batch: each batch loads only what the ones before
        # did not, instead of every row its events touch.
        whole_products = WholeProductProjection(WHOLE_PARTITION, products.partition_count())
        whole_products.keep_rows = True
        # Both projectors stand at the same place: they share each read, and
        # the next batch is read while this one is applied.
        reads = ReadAhead()
        try:
            applied = _replay_rounds(whole_products, sellers(0, 1), reads, batch_size, progress)
        finally:
            reads.close()
        _split_whole(products.name, products.partition_count())
    return applied


def _replay_rounds(
    whole_products: WholeProductProjection,
    all_sellers: Projection,
    reads: ReadAhead,
    batch_size: int,
    progress: Progress,
) -> int:
    """One batch of each projector per round, so the progress moves batch by
    batch; it counts the log's events once (both projectors apply them all)."""
    sellers = PROJECTIONS["sellers"]
    target = eventlog.head()
    whole = Checkpoint.objects.filter(
        projector=WholeProductProjection.name, partition=WHOLE_PARTITION
    )
    start = whole.get()
    behind = eventlog.count_after(eventlog.LogPosition(start.transaction_id, start.position))
    applied = 0
    while True:
        step = catch_up(
            WholeProductProjection,
            WHOLE_PARTITION,
            batch_size=batch_size,
            max_batches=1,
            projection=whole_products,
            reads=reads,
        )
        seller_step = catch_up(
            sellers, 0, batch_size=batch_size, max_batches=1, projection=all_sellers, reads=reads
        )
        applied += step
        progress("events", applied, max(behind, applied))
        if step + seller_step == 0 or _reached(target, whole):
            return applied


_FACT_COLUMNS = "product_id, seller_id, name, price, is_active, rating_sum, review_count"
_COPY_PRODUCT_FACTS = f"""
    INSERT INTO projections_productfacts (projector, partition, {_FACT_COLUMNS})
    SELECT projector, %s, {_FACT_COLUMNS} FROM projections_productfacts
    WHERE projector = %s AND partition = %s
"""  # noqa: S608 (constant SQL; values are parameters)
_COPY_SELLER_FACTS = """
    INSERT INTO projections_sellerfacts (projector, partition, seller_id, name, reputation)
    SELECT projector, %s, seller_id, name, reputation FROM projections_sellerfacts
    WHERE projector = %s AND partition = %s
"""


def _split_whole(name: str, partitions: int) -> None:
    whole = {"projector": name, "partition": WHOLE_PARTITION}
    with transaction.atomic(using=READ_DB), connections[READ_DB].cursor() as cursor:
        for partition in range(partitions):
            cursor.execute(_COPY_PRODUCT_FACTS, [partition, name, WHOLE_PARTITION])
            cursor.execute(_COPY_SELLER_FACTS, [partition, name, WHOLE_PARTITION])
        ProductFacts.objects.filter(**whole).delete()
        SellerFacts.objects.filter(**whole).delete()
        checkpoint = Checkpoint.objects.get(**whole)
        Checkpoint.objects.bulk_create(
            Checkpoint(
                projector=name,
                partition=partition,
                transaction_id=checkpoint.transaction_id,
                position=checkpoint.position,
                events_applied=checkpoint.events_applied,
            )
            for partition in range(partitions)
        )
        checkpoint.delete()


def _events_behind() -> int:
    first = Checkpoint.objects.order_by("transaction_id", "position").first()
    start = eventlog.LogPosition(first.transaction_id, first.position) if first else eventlog.START
    return eventlog.count_after(start)


def swap(batch_size: int) -> float:
    """Swap the shadow in under a short lock; returns how long readers waited."""
    if _is_postgres():
        return _swap_postgres(batch_size)
    return _swap_sqlite(batch_size)


def _swap_postgres(batch_size: int) -> float:
    tables = [model._meta.db_table for model in SWAPPED_MODELS]
    live = connections[READ_DB]
    with transaction.atomic(using=READ_DB), live.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '30s'")
        locked = time.monotonic()
        cursor.execute(
            f"LOCK TABLE {', '.join(f'public.{t}' for t in tables)} IN ACCESS EXCLUSIVE MODE"
        )
        # The live projectors wait on the lock; the shadow takes the last events.
        _catch_up_on_new_connection(batch_size)
        _keep_parked_history(cursor.execute, live="public", shadow=SHADOW_SCHEMA)
        cursor.execute(f"CREATE SCHEMA {RETIRED_SCHEMA}")
        for table in REPLACED_TABLES:
            cursor.execute(f"ALTER TABLE public.{table} SET SCHEMA {RETIRED_SCHEMA}")
            cursor.execute(f"ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA public")
        cursor.execute(f"DROP SCHEMA {RETIRED_SCHEMA} CASCADE")
        cursor.execute(f"DROP SCHEMA {SHADOW_SCHEMA} CASCADE")
        notify_checkpoints_changed()
        waited = time.monotonic() - locked
    return waited


def _catch_up_on_new_connection(batch_size: int) -> None:
    """Catch the shadow up on a thread of its own: this thread's ``read``
    connection is holding the swap's transaction."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            catch_up_shadow(batch_size)
        except BaseException as error:  # handed back to the caller
            errors.append(error)
        finally:
            connections.close_all()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


def _swap_sqlite(batch_size: int) -> float:
    tables = REPLACED_TABLES
    # The shadow's rows and checkpoints replace the live ones together, so what
    # the live projectors apply meanwhile is simply applied again afterwards.
    _catch_up_on_new_connection(batch_size)
    live = sqlite3.connect(_live_settings()["NAME"], timeout=30, isolation_level=None)
    try:
        live.execute("ATTACH DATABASE ? AS rebuild", [str(_shadow_file())])
        locked = time.monotonic()
        live.execute("BEGIN IMMEDIATE")
        for table in tables:
            live.execute(f"DELETE FROM main.{table}")  # noqa: S608
            live.execute(f"INSERT INTO main.{table} SELECT * FROM rebuild.{table}")  # noqa: S608
        _keep_parked_history(live.execute, live="main", shadow="rebuild")
        live.execute("COMMIT")
        waited = time.monotonic() - locked
        live.execute("DETACH DATABASE rebuild")
    finally:
        live.close()
    drop_shadow()
    return waited


_PARKED = ParkedEvent._meta.db_table
_PARKED_COLUMNS = ", ".join(
    str(field.column) for field in ParkedEvent._meta.concrete_fields if not field.primary_key
)
_OPEN = "status IN ('parked', 'retry')"


def _keep_parked_history(execute: Callable[[str], Any], *, live: str, shadow: str) -> None:
    """Keep the live parked events (parked, retried, skipped, resolved: the
    operators' record) across the swap, with the ids they were shown by, and
    add the shadow's own (events its projectors parked) after them.

    An open record (parked, or a retry asked for) stays open, as parked,
    when the rebuilt partition stands halted at the same event: the rebuild
    failed on it too, and the shadow's own record of it is dropped as a
    duplicate. Otherwise it is closed as resolved at the swap: the rebuilt
    partition applied the event (a snapshot already holds its effect), or
    the partition is gone with a change of ``PROJECTION_PARTITIONS``. No
    record says a partition is halted that is not.

    Precondition: under the swap's lock, with the shadow caught up; ``live``
    and ``shadow`` are the schemas (PostgreSQL) or attached databases (SQLite)
    of the two sets of tables, which both read the same SQL.
    """
    halted_at = f"""EXISTS (
        SELECT 1 FROM {shadow}.{Checkpoint._meta.db_table} AS checkpoint
        WHERE checkpoint.projector = {_PARKED}.projector
          AND checkpoint.partition = {_PARKED}.partition
          AND checkpoint.halted_at_position = {_PARKED}.position)"""  # noqa: S608
    execute(
        f"""INSERT INTO {live}.{_PARKED} ({_PARKED_COLUMNS})
            SELECT {_PARKED_COLUMNS} FROM {shadow}.{_PARKED} AS added
            WHERE NOT (added.{_OPEN} AND EXISTS (
                SELECT 1 FROM {live}.{_PARKED} AS kept
                WHERE kept.{_OPEN} AND kept.projector = added.projector
                  AND kept.partition = added.partition AND kept.position = added.position))
            ORDER BY added.id"""  # noqa: S608 (model metadata only)
    )
    execute(f"UPDATE {live}.{_PARKED} SET status = 'parked' WHERE {_OPEN} AND {halted_at}")  # noqa: S608
    execute(
        f"""UPDATE {live}.{_PARKED} SET status = 'resolved', resolved_at = CURRENT_TIMESTAMP
            WHERE {_OPEN} AND NOT {halted_at}"""  # noqa: S608 (model metadata only)
    )


# The whole run -------------------------------------------------------------


def rebuild(
    *,
    from_events: bool,
    batch_size: int | None,
    progress: Progress,
    log: Callable[[str], None],
) -> RebuildRun:
    """Rebuild every read model without downtime; see the module docstring.

    ``batch_size`` is the events of one batch, each its own transaction; by
    default ``REPLAY_BATCH_SIZE`` while replaying and ``CATCH_UP_BATCH_SIZE``
    while catching up. Raises ``RebuildRunning``, having touched nothing,
    while another rebuild runs.
    """
    with rebuild_lock():
        return _rebuild(from_events=from_events, batch_size=batch_size, progress=progress, log=log)


def _rebuild(
    *,
    from_events: bool,
    batch_size: int | None,
    progress: Progress,
    log: Callable[[str], None],
) -> RebuildRun:
    run = RebuildRun.objects.filter(finished_at__isnull=True).order_by("-pk").first()
    resumable = {RebuildRun.Phase.TAIL, RebuildRun.Phase.REPLAY}
    if run is not None and run.phase in resumable and shadow_exists():
        log(f"Resuming rebuild #{run.pk} from its shadow's checkpoints ({run.phase}).")
    else:
        if run is not None:
            run.phase = RebuildRun.Phase.FAILED
            run.message = "Interrupted; started over."
            run.finished_at = timezone.now()
            run.save()
        mode = "from-events" if from_events else "snapshot"
        run = RebuildRun.objects.create(mode=mode, phase=RebuildRun.Phase.BACKFILL)
        create_shadow()
        if from_events:
            _set_phase(run, RebuildRun.Phase.REPLAY)
        else:
            run.rows = backfill_from_snapshot(progress)
            _set_phase(run, RebuildRun.Phase.TAIL)
    if run.phase == RebuildRun.Phase.REPLAY:
        run.events += replay_whole(batch_size or REPLAY_BATCH_SIZE, progress)
        analyze_shadow()
        _set_phase(run, RebuildRun.Phase.TAIL)
    catch_up_size = batch_size or CATCH_UP_BATCH_SIZE
    run.events += catch_up_shadow(catch_up_size, progress)
    run.save(update_fields=["events"])
    waited = swap(catch_up_size)
    run.rows = run.rows or ProductReadModel.objects.count() + SellerReadModel.objects.count()
    run.message = f"Swapped in; readers waited at most {waited * 1000:.0f} ms."
    run.finished_at = timezone.now()
    _set_phase(run, RebuildRun.Phase.SWAPPED)
    return run


def _set_phase(run: RebuildRun, phase: str) -> None:
    run.phase = phase
    run.updated_at = timezone.now()
    run.save()
