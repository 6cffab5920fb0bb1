"""Fill an empty catalog with realistic demo data, through the services.

Every seller, product, price change, recommendation list and review is a
command, so the event log holds exactly the events a real shop would have
recorded, and the projectors build the read models from them as usual.
"""

import dataclasses
import itertools
import math
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import transaction
from django.utils.text import slugify
from tqdm import tqdm

from catalog import services
from catalog.errors import Conflict
from catalog.models import Product, Seller
from catalog.validation import MAX_RECOMMENDATIONS
from projections.models import Event
from reviews.services import review_add

T = TypeVar("T")

COMMANDS_PER_TRANSACTION = 200
POPULARITY_SKEW = 0.8
DEMO_ADMIN = ("admin", "admin")

SELLER_NAMES = (
    "Northwind Traders",
    "Blue Harbor Goods",
    "Maple & Pine Co.",
    "Copperline Supply",
    "Atlas Home",
    "Kestrel Outfitters",
    "Juniper Street Market",
    "Granite Peak Gear",
    "Little Fox Workshop",
    "Saltmarsh Provisions",
    "Orchard Lane",
    "Redwood Electric",
)
ADJECTIVES = (
    "Compact",
    "Classic",
    "Ergonomic",
    "Rugged",
    "Sleek",
    "Handcrafted",
    "Lightweight",
    "Foldable",
    "Premium",
    "Everyday",
    "Vintage",
    "Portable",
    "Modern",
    "Cozy",
    "Smart",
    "Weatherproof",
)
MATERIALS = (
    "Oak",
    "Walnut",
    "Steel",
    "Aluminium",
    "Ceramic",
    "Linen",
    "Wool",
    "Leather",
    "Bamboo",
    "Glass",
    "Cotton",
    "Copper",
)
# Each noun with the price it typically sells around.
NOUNS = {
    "Chair": 120,
    "Desk Lamp": 45,
    "Backpack": 70,
    "Water Bottle": 18,
    "Coffee Grinder": 60,
    "Headphones": 150,
    "Notebook": 9,
    "Blanket": 55,
    "Cutting Board": 30,
    "Kettle": 40,
    "Wall Clock": 35,
    "Plant Pot": 15,
    "Bookshelf": 180,
    "Rain Jacket": 95,
    "Travel Mug": 22,
    "Desk Organizer": 25,
    "Bluetooth Speaker": 80,
    "Frying Pan": 50,
    "Throw Pillow": 28,
    "Camping Stool": 32,
}
FEATURES = (
    "Built to last and easy to clean.",
    "Designed in small batches and tested by hand.",
    "Ships flat-packed; assembly takes minutes.",
    "Comes with a two-year warranty.",
    "A bestseller in its range for three seasons running.",
    "Made with responsibly sourced materials.",
)
# Ratings online are J-shaped: mostly fives, then ones, few in between.
RATING_WEIGHTS = {1: 0.11, 2: 0.05, 3: 0.08, 4: 0.19, 5: 0.57}
OPENINGS = {
    5: ("Absolutely love this {noun}.", "Exceeded my expectations.", "Best purchase this year."),
    4: ("Very good {noun} overall.", "Happy with it.", "Solid choice for the price."),
    3: ("It's okay.", "Does the job, nothing more.", "Mixed feelings about this {noun}."),
    2: ("Disappointed.", "Not what I hoped for.", "Expected more from this {noun}."),
    1: ("Do not buy.", "Broke within a week.", "Waste of money."),
}
PRAISE = (
    "The {material} feels solid and well finished.",
    "Shipping was fast and the packaging was fine.",
    "Exactly as described in the listing.",
    "Looks even better in person.",
    "My partner uses it every day now.",
)
COMPLAINTS = (
    "The {material} scratches far too easily.",
    "It arrived with a dent and customer service was slow.",
    "Smaller than the pictures suggest.",
    "The finish started peeling after a few uses.",
    "Instructions were missing from the box.",
)
CLOSINGS = {
    5: ("Would buy again.", "Highly recommended!", ""),
    4: ("Recommended.", "Four stars from me.", ""),
    3: ("Maybe look around first.", "", "Average."),
    2: ("I will probably return it.", "", "Two stars."),
    1: ("Returned it.", "Avoid.", ""),
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    sellers: int
    products: int
    reviews: int
    hot_reviews: int
    price_changes: int


@dataclasses.dataclass(frozen=True)
class ProductSketch:
    name: str
    noun: str
    material: str
    quality: float


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
        "recommendations and reviews, all through the services (every row has its event)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sellers", type=int, default=5)
        parser.add_argument("--products", type=int, default=300)
        parser.add_argument("--reviews", type=int, default=3000)
        parser.add_argument(
            "--hot-reviews",
            type=int,
            default=1500,
            help="Extra reviews on one 'hot' product, on top of --reviews.",
        )
        parser.add_argument("--price-changes", type=int, default=600)
        parser.add_argument(
            "--seed", type=int, default=None, help="Random seed, for repeatable data."
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
            self._seed(sizes, random.Random(options["seed"]))  # noqa: S311 (demo data, no secrets)
        if options["with_admin"]:
            self._ensure_demo_admin()

    def _seed(self, sizes: Sizes, rng: random.Random) -> None:
        events_before = Event.objects.count()
        started = time.monotonic()
        sellers = self._run("sellers", _seller_commands(rng, sizes.sellers))
        sketches = [_sketch_product(rng) for _ in range(sizes.products)]
        products = self._run("products", self._product_commands(rng, sketches, sellers))
        popularity = _popularity(rng, len(products))
        self._run("recommendations", _recommendation_commands(rng, products, popularity))
        price_commands = _price_commands(rng, products, popularity, sizes.price_changes)
        self._run("price changes", price_commands)
        counts = _review_counts(rng, popularity, sizes.reviews)
        hot = max(range(len(products)), key=popularity.__getitem__) if products else None
        if hot is not None:
            counts[hot] += sizes.hot_reviews
            # It is hot because people like it.
            sketches[hot] = dataclasses.replace(
                sketches[hot], quality=abs(sketches[hot].quality) + 0.4
            )
        reviewers = _reviewers(max(counts.values(), default=0), sizes.reviews)
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
        self._report(sizes, products, hot, reviewers, counts, events_before, started)

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
                price=_price_around(rng, NOUNS[sketch.noun]),
                stock=_stock(rng),
            )
            for index, sketch in enumerate(sketches)
        ]

    def _run(self, label: str, commands: Sequence[Callable[[], T]]) -> list[T]:
        """Run the commands a few hundred to a transaction, showing progress."""
        if not commands:
            return []
        started = time.monotonic()
        results: list[T] = []
        with tqdm(
            total=len(commands),
            desc=f"{label:>16}",
            unit=" cmd",
            file=_BarStream(self.stderr),
            disable=not self.interactive,
            dynamic_ncols=True,
        ) as bar:
            for chunk in itertools.batched(commands, COMMANDS_PER_TRANSACTION):
                with transaction.atomic():
                    results.extend(command() for command in chunk)
                bar.update(len(chunk))
        if not self.interactive:
            elapsed = time.monotonic() - started
            self.stderr.write(f"{label}: {len(commands)} done in {elapsed:.1f}s")
        return results

    def _report(
        self,
        sizes: Sizes,
        products: Sequence[Product],
        hot: int | None,
        reviewers: Sequence[AbstractBaseUser],
        counts: Counter[int],
        events_before: int,
        started: float,
    ) -> None:
        events = Event.objects.count() - events_before
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {sizes.sellers} sellers, {len(products)} products, "
                f"{sum(counts.values())} reviews by {len(reviewers)} reviewers and "
                f"{sizes.price_changes} price changes: {events} events recorded "
                f"in {time.monotonic() - started:.1f}s."
            )
        )
        if hot is not None:
            product = products[hot]
            self.stdout.write(
                f'Hot product: "{product.name}" (id {product.pk}), {counts[hot]} reviews.'
            )

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
    names = [
        SELLER_NAMES[index % len(SELLER_NAMES)]
        + (f" {index // len(SELLER_NAMES) + 1}" if index >= len(SELLER_NAMES) else "")
        for index in range(count)
    ]
    return [
        partial(
            services.seller_register,
            name=name,
            reputation=Decimal(f"{rng.triangular(2.8, 5.0, 4.6):.2f}"),
        )
        for name in names
    ]


def _sketch_product(rng: random.Random) -> ProductSketch:
    noun = rng.choice(list(NOUNS))
    material = rng.choice(MATERIALS)
    adjective = rng.choice(ADJECTIVES)
    name = f"{adjective} {material} {noun}" if rng.random() < 0.6 else f"{adjective} {noun}"
    return ProductSketch(name=name, noun=noun, material=material, quality=rng.gauss(0, 0.6))


def _create_product(
    *, seller: Seller, sketch: ProductSketch, number: int, price: Decimal, stock: int
) -> Product:
    adjective = sketch.name.split()[0].lower()
    create = partial(
        services.product_create,
        seller_id=seller.pk,
        name=sketch.name,
        price=price,
        stock_quantity=stock,
        description=(
            f"A {adjective} {sketch.noun.lower()} in {sketch.material.lower()}. "
            f"{FEATURES[number % len(FEATURES)]}"
        ),
    )
    slug = f"{slugify(sketch.name)}-{number}"
    try:
        with transaction.atomic():
            return create(slug=slug)
    except Conflict:
        return create(slug=f"{slug}-{secrets.token_hex(3)}")


def _price_around(rng: random.Random, typical: int) -> Decimal:
    whole = max(0, round(typical * rng.lognormvariate(0, 0.35)) - 1)
    cents = rng.choice(("0.99", "0.99", "0.49", "0.95", "0.00"))
    price = Decimal(whole) + Decimal(cents)
    return price if price > 0 else Decimal("0.99")


def _stock(rng: random.Random) -> int:
    draw = rng.random()
    if draw < 0.08:
        return 0
    if draw < 0.2:
        return rng.randint(1, 5)
    return rng.randint(6, 250)


def _popularity(rng: random.Random, count: int) -> list[float]:
    """Zipf-like weights in random product order: a few products get most attention."""
    ranks = list(range(count))
    rng.shuffle(ranks)
    return [1 / (rank + 1) ** POPULARITY_SKEW for rank in ranks]


def _recommendation_commands(
    rng: random.Random, products: Sequence[Product], popularity: Sequence[float]
) -> list[Callable[[], Product]]:
    commands: list[Callable[[], Product]] = []
    for index, product in enumerate(products):
        wanted = min(rng.randint(3, 6), len(products) - 1, MAX_RECOMMENDATIONS)
        chosen: list[int] = []
        while len(chosen) < wanted:
            pick = rng.choices(range(len(products)), popularity)[0]
            if pick != index and products[pick].pk not in chosen:
                chosen.append(products[pick].pk)
        if chosen:
            commands.append(
                partial(
                    services.product_set_recommendations,
                    product_id=product.pk,
                    related_ids=chosen,
                )
            )
    return commands


def _price_commands(
    rng: random.Random, products: Sequence[Product], popularity: Sequence[float], count: int
) -> list[Callable[[], Product]]:
    current = {product.pk: product.price for product in products}
    commands: list[Callable[[], Product]] = []
    for product in rng.choices(products, popularity, k=count) if products else []:
        new_price = _next_price(rng, current[product.pk])
        current[product.pk] = new_price
        commands.append(
            partial(services.product_change_price, product_id=product.pk, price=new_price)
        )
    return commands


def _next_price(rng: random.Random, price: Decimal) -> Decimal:
    """A sale or a price rise of a few percent, never the same price."""
    factor = Decimal(f"{rng.uniform(0.75, 1.15):.3f}")
    candidate = (price * factor).quantize(Decimal(1)) - Decimal("0.01")
    if candidate <= 0 or candidate == price:
        candidate = price + Decimal("1.00")
    return min(candidate, Decimal("99999999.99"))


def _review_counts(rng: random.Random, popularity: Sequence[float], total: int) -> Counter[int]:
    if not popularity:
        return Counter()
    return Counter(rng.choices(range(len(popularity)), popularity, k=total))


def _reviewers(most_on_one_product: int, reviews: int) -> list[AbstractBaseUser]:
    """Enough reviewer accounts (reviewer0001, ...) for the busiest product.

    They are real users with unusable passwords; existing ones are reused.
    """
    needed = max(most_on_one_product, min(reviews, max(50, reviews // 2)))
    width = max(4, len(str(needed)))
    names = [f"reviewer{number:0{width}d}" for number in range(1, needed + 1)]
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
            rating = _rating(rng, sketch.quality)
            commands.append(
                partial(
                    review_add,
                    product_id=products[index].pk,
                    author=author,
                    rating=rating,
                    body=_review_body(rng, sketch, rating),
                )
            )
    rng.shuffle(commands)
    return commands


def _rating(rng: random.Random, quality: float) -> int:
    stars = list(RATING_WEIGHTS)
    weights = [RATING_WEIGHTS[star] * math.exp(quality * (star - 3) * 0.5) for star in stars]
    return rng.choices(stars, weights)[0]


def _review_body(rng: random.Random, sketch: ProductSketch, rating: int) -> str:
    details = PRAISE if rating >= 4 else COMPLAINTS if rating <= 2 else PRAISE + COMPLAINTS
    sentences = [
        rng.choice(OPENINGS[rating]),
        *rng.sample(details, rng.randint(1, 2)),
        rng.choice(CLOSINGS[rating]),
    ]
    text = " ".join(sentence for sentence in sentences if sentence)
    return text.format(noun=sketch.noun.lower(), material=sketch.material.lower())
