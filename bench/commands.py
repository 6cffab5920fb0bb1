"""Command latency: ``review_add`` and ``product_change_price`` through the services.

Each call is timed from the call to its return (validation, the transaction
with its row locks, the event row, the commit). Three conditions: an idle
server, and while wrk hammers the naive five-table endpoint (reads on the
write database, the situation the reference describes) or the read API
(reads on the read database only).
"""

import random
import time
from decimal import Decimal
from typing import Any

from bench import setup
from bench.stats import summary_ms
from bench.web import PATHS, BackgroundLoad, require_wrk


def _authors(count: int) -> list[Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    users = get_user_model()
    start = users.objects.filter(username__startswith="benchcmd").count()
    password = make_password(None)
    created = users.objects.bulk_create(
        [users(username=f"benchcmd{start + n:07d}", password=password) for n in range(count)],
        batch_size=5000,
    )
    return list(created)


def _measure(count: int, product_ids: list[int], rng: random.Random) -> dict[str, Any]:
    from catalog.models import Product
    from catalog.services import product_change_price
    from reviews.services import review_add

    authors = _authors(count)
    prices = dict(Product.objects.filter(pk__in=product_ids).values_list("pk", "price"))
    adds, changes = [], []
    for author in authors:
        product_id = rng.choice(product_ids)
        started = time.perf_counter()
        review_add(
            product_id=product_id,
            author=author,
            rating=rng.randint(1, 5),
            body="Bench review: it works as described.",
        )
        adds.append(time.perf_counter() - started)
        product_id = rng.choice(product_ids)
        prices[product_id] = prices[product_id] + Decimal("0.01")
        started = time.perf_counter()
        product_change_price(product_id=product_id, price=prices[product_id])
        changes.append(time.perf_counter() - started)
    return {"review_add": summary_ms(adds), "product_change_price": summary_ms(changes)}


def run(size: Any, products: dict[str, int], log: Any) -> dict[str, Any]:
    from catalog.models import Product

    require_wrk()
    rng = random.Random(5)
    active = list(Product.objects.filter(is_active=True).values_list("pk", flat=True))
    product_ids = [*rng.sample(active, min(len(active), 500)), products["hot"]]
    results = {"idle": _measure(size.commands, product_ids, rng)}
    _log(log, "idle", results["idle"])
    with setup.gunicorn(workers=2, DATABASE_POOL="true") as base:
        for label, path in (
            ("under_naive_reads", PATHS["naive"]),
            ("under_read_model_reads", PATHS["api"]),
        ):
            with BackgroundLoad(base + path.format(id=products["hot"])):
                results[label] = _measure(size.commands, product_ids, rng)
            _log(log, label, results[label])
    return results


def _log(log: Any, label: str, row: dict[str, Any]) -> None:
    add, change = row["review_add"], row["product_change_price"]
    log(
        f"  {label:<24} review_add p50 {add['p50_ms']:.2f} p99 {add['p99_ms']:.2f} ms   "
        f"change_price p50 {change['p50_ms']:.2f} p99 {change['p99_ms']:.2f} ms"
    )
