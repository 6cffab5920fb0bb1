"""Fill an empty catalog with realistic demo data and its events.

Up to a few thousand commands (the default) every seller, product, price
change, recommendation list and review goes through the services, exactly as
a real shop would. Above that, or with ``--bulk``, ``demo.bulk``
writes the same rows and exactly the events those commands would have
recorded straight into the tables (COPY on PostgreSQL): millions of reviews
in minutes. Either way the projectors build the read models from the log as
usual.
"""

import argparse
import contextlib
import dataclasses
import itertools
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.utils.text import slugify
from tqdm import tqdm

from catalog import services
from catalog.models import Product, Seller
from catalog.validation import MAX_RECOMMENDATIONS
from demo import sketches as demo
from demo.bulk import bulk_seed
from demo.sketches import ProductSketch, Sizes
from eventstore.models import Event
from eventstore.recording import command_transaction
from kernel.errors import Conflict
from reviews.services import review_add

T = TypeVar("T")

COMMANDS_PER_TRANSACTION = 200
# Above this many commands the bulk path is used unless --no-bulk says otherwise.
BULK_THRESHOLD = 20_000
DEMO_ADMIN = ("admin", "admin")


def _unstyled(text: str) -> str:
    return text


class _BarStream:
    """Lets tqdm draw on ``self.stderr``, which would end every write with a newline
    and colour it as an error."""

    def __init__(self, out: OutputWrapper) -> None:
        self._out = out

    def write(self, text: str) -> None:
        self._out.write(text, style_func=_unstyled, ending="")

    def flush(self) -> None:
        self._out.flush()


class Command(BaseCommand):
    help = (
        "Fill an empty catalog with demo sellers, products, price histories, "
        "recommendations and reviews, with every row's event: through the services, "
        f"or in bulk above {BULK_THRESHOLD:,} commands (or with --bulk)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sellers", type=int, default=5)
        parser.add_argument("--products", type=int, default=300)
        parser.add_argument("--reviews", type=int, default=3000)
        parser.add_argument(
            "--hot-reviews",
            type=int,
            default=1500,
            help="Reviews on one 'hot' product (the most popular), on top of --reviews.",
        )
        parser.add_argument("--price-changes", type=int, default=600)
        parser.add_argument(
            "--seed", type=int, default=None, help="Random seed, for repeatable data."
        )
        parser.add_argument(
            "--bulk",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=(
                "Write rows and events straight into the tables (COPY on PostgreSQL) "
                f"instead of running every command. Default: bulk above {BULK_THRESHOLD:,} "
                "commands."
            ),
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Add another set of demo data even though the catalog is not empty.",
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Seed only an empty catalog; otherwise do nothing and exit successfully.",
        )
        parser.add_argument(
            "--with-admin",
            action="store_true",
            help="Also create the demo superuser admin / admin (never do this in production).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sizes = _sizes(options)
        self.interactive = self.stderr.isatty()
        existing = (Seller.objects.count(), Product.objects.count())
        if any(existing) and not options["force"]:
            if not options["if_empty"]:
                raise CommandError(
                    f"The catalog already has {existing[0]} seller(s) and {existing[1]} "
                    "product(s); nothing was written. seed_demo fills an empty catalog: "
                    "pass --force to add another set of demo data beside it, or "
                    "--if-empty to skip quietly."
                )
            self.stdout.write("The catalog already has data; no demo data added.")
        else:
            rng = random.Random(options["seed"])  # noqa: S311 (demo data, no secrets)
            bulk = options["bulk"]
            if bulk is None:
                bulk = sum(vars(sizes).values()) > BULK_THRESHOLD
            if bulk:
                self._seed_in_bulk(sizes, rng)
            else:
                self._seed(sizes, rng)
        if options["with_admin"]:
            self._ensure_demo_admin()

    def _seed_in_bulk(self, sizes: Sizes, rng: random.Random) -> None:
        started = time.monotonic()
        summary = bulk_seed(sizes, rng, progress=self._progress)
        self._report_totals(
            sizes=sizes,
            products=summary.products,
            reviews=summary.reviews,
            reviewers=summary.reviewers,
            events=summary.events,
            started=started,
            how="in bulk",
        )
        if summary.hot_product is not None:
            self._report_hot(summary.hot_product, summary.hot_reviews)

    def _seed(self, sizes: Sizes, rng: random.Random) -> None:
        events_before = Event.objects.count()
        started = time.monotonic()
        sellers = self._run("sellers", _seller_commands(rng, sizes.sellers))
        sketches = [demo.sketch_product(rng) for _ in range(sizes.products)]
        products = self._run("products", self._product_commands(rng, sketches, sellers))
        popularity = demo.popularity(rng, len(products))
        self._run("recommendations", _recommendation_commands(rng, products, popularity))
        price_commands = _price_commands(rng, products, popularity, sizes.price_changes)
        self._run("price changes", price_commands)
        counts = demo.review_counts(rng, popularity, sizes.reviews, hot_reviews=sizes.hot_reviews)
        hot = demo.hot_product(popularity)
        if hot is not None:
            # It is hot because people like it.
            sketches[hot] = dataclasses.replace(
                sketches[hot], quality=abs(sketches[hot].quality) + 0.4
            )
        reviewers = _reviewers(
            demo.reviewers_needed(max(counts.values(), default=0), sizes.reviews)
        )
        review_commands = _review_commands(rng, products, sketches, counts, reviewers)
        self._run("reviews", review_commands)
        off_sale = [index for index in range(len(products)) if index != hot][: len(products) // 50]
        self._run(
            "taken off sale",
            [
                partial(
                    services.product_change_details, product_id=products[index].pk, is_active=False
                )
                for index in off_sale
            ],
        )
        self._report_totals(
            sizes=sizes,
            products=len(products),
            reviews=sum(counts.values()),
            reviewers=len(reviewers),
            events=Event.objects.count() - events_before,
            started=started,
            how="through the services",
        )
        if hot is not None:
            self._report_hot(products[hot], counts[hot])

    def _product_commands(
        self, rng: random.Random, sketches: Sequence[ProductSketch], sellers: Sequence[Seller]
    ) -> list[Callable[[], Product]]:
        first_number = Product.objects.count() + 1
        seller_weights = [1 / (rank + 1) for rank in range(len(sellers))]
        return [
            partial(
                _create_product,
                seller=rng.choices(sellers, seller_weights)[0],
                sketch=sketch,
                number=first_number + index,
                price=demo.price_around(rng, demo.NOUNS[sketch.noun]),
                stock=demo.stock(rng),
            )
            for index, sketch in enumerate(sketches)
        ]

    @contextlib.contextmanager
    def _progress(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        """A progress bar on stderr when it is a terminal, else one line when done."""
        started = time.monotonic()
        with tqdm(
            total=total,
            desc=f"{label:>16}",
            unit=" row",
            unit_scale=True,
            file=_BarStream(self.stderr),
            disable=not self.interactive or not total,
            dynamic_ncols=True,
        ) as bar:

            def advance(count: int) -> None:
                bar.update(count)

            yield advance
        if not self.interactive and total:
            elapsed = time.monotonic() - started
            self.stderr.write(f"{label}: {total} done in {elapsed:.1f}s")

    def _run(self, label: str, commands: Sequence[Callable[[], T]]) -> list[T]:
        """Run the commands a few hundred to a transaction, showing progress."""
        results: list[T] = []
        with self._progress(label, len(commands)) as advance:
            for chunk in itertools.batched(commands, COMMANDS_PER_TRANSACTION):
                with command_transaction():
                    results.extend(command() for command in chunk)
                advance(len(chunk))
        return results

    def _report_totals(
        self,
        *,
        sizes: Sizes,
        products: int,
        reviews: int,
        reviewers: int,
        events: int,
        started: float,
        how: str,
    ) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {sizes.sellers} sellers, {products} products, "
                f"{reviews} reviews by {reviewers} reviewers and "
                f"{sizes.price_changes} price changes {how}: {events} events recorded "
                f"in {time.monotonic() - started:.1f}s."
            )
        )

    def _report_hot(self, product: Product, reviews: int) -> None:
        self.stdout.write(f'Hot product: "{product.name}" (id {product.pk}), {reviews} reviews.')

    def _ensure_demo_admin(self) -> None:
        username, password = DEMO_ADMIN
        users = get_user_model()._default_manager
        if users.filter(username=username).exists():
            self.stdout.write(f"User {username!r} already exists; left unchanged.")
            return
        users.create_superuser(username=username, email="admin@example.com", password=password)  # type: ignore[attr-defined]
        self.stdout.write(f"Demo superuser created: {username} / {password}")


def _sizes(options: dict[str, Any]) -> Sizes:
    sizes = Sizes(
        sellers=options["sellers"],
        products=options["products"],
        reviews=options["reviews"],
        hot_reviews=options["hot_reviews"],
        price_changes=options["price_changes"],
    )
    if min(vars(sizes).values()) < 0:
        raise CommandError("Sizes cannot be negative.")
    if sizes.products and not sizes.sellers:
        raise CommandError("Products need at least one seller (--sellers).")
    if (sizes.reviews or sizes.hot_reviews or sizes.price_changes) and not sizes.products:
        raise CommandError("Reviews and price changes need at least one product (--products).")
    return sizes


def _seller_commands(rng: random.Random, count: int) -> list[Callable[[], Seller]]:
    return [
        partial(services.seller_register, name=name, reputation=demo.reputation(rng))
        for name in demo.seller_names(count)
    ]


def _create_product(
    *, seller: Seller, sketch: ProductSketch, number: int, price: Decimal, stock: int
) -> Product:
    create = partial(
        services.product_create,
        seller_id=seller.pk,
        name=sketch.name,
        price=price,
        stock_quantity=stock,
        description=demo.description(sketch, number),
    )
    slug = f"{slugify(sketch.name)}-{number}"
    try:
        with command_transaction():
            return create(slug=slug)
    except Conflict:
        return create(slug=f"{slug}-{secrets.token_hex(3)}")


def _recommendation_commands(
    rng: random.Random, products: Sequence[Product], popularity: Sequence[float]
) -> list[Callable[[], Product]]:
    cumulative = list(itertools.accumulate(popularity))
    commands: list[Callable[[], Product]] = []
    for index, product in enumerate(products):
        chosen = demo.related_picks(rng, index, cumulative, MAX_RECOMMENDATIONS)
        if chosen:
            commands.append(
                partial(
                    services.product_set_recommendations,
                    product_id=product.pk,
                    related_ids=[products[pick].pk for pick in chosen],
                )
            )
    return commands


def _price_commands(
    rng: random.Random, products: Sequence[Product], popularity: Sequence[float], count: int
) -> list[Callable[[], Product]]:
    current = {product.pk: product.price for product in products}
    commands: list[Callable[[], Product]] = []
    for product in rng.choices(products, popularity, k=count) if products else []:
        new_price = demo.next_price(rng, current[product.pk])
        current[product.pk] = new_price
        commands.append(
            partial(services.product_change_price, product_id=product.pk, price=new_price)
        )
    return commands


def _reviewers(needed: int) -> list[AbstractBaseUser]:
    """``needed`` reviewer accounts (reviewer0001, ...); existing ones are reused.

    They are real users with unusable passwords.
    """
    names = demo.reviewer_names(needed)
    users = get_user_model()._default_manager
    existing = set(users.filter(username__in=names).values_list("username", flat=True))
    users.bulk_create(
        [
            get_user_model()(username=name, password=make_password(None))
            for name in names
            if name not in existing
        ],
        batch_size=500,
    )
    by_name = {user.get_username(): user for user in users.filter(username__in=names)}
    return [by_name[name] for name in names]


def _review_commands(
    rng: random.Random,
    products: Sequence[Product],
    sketches: Sequence[ProductSketch],
    counts: Counter[int],
    reviewers: Sequence[AbstractBaseUser],
) -> list[Callable[[], Any]]:
    commands: list[Callable[[], Any]] = []
    for index, count in counts.items():
        sketch = sketches[index]
        for author in rng.sample(list(reviewers), count):
            rating = demo.rating(rng, sketch.quality)
            commands.append(
                partial(
                    review_add,
                    product_id=products[index].pk,
                    author=author,
                    rating=rating,
                    body=demo.review_body(rng, sketch, rating),
                )
            )
    rng.shuffle(commands)
    return commands
