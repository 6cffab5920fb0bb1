"""What demo data looks like: names, prices, popularity, ratings, review texts.

Pure functions of a ``random.Random``; both ways of seeding (through the
services, or in bulk straight into the tables) draw from them, so a demo shop
looks the same whichever way it was written.
"""

import dataclasses
import math
import random
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

POPULARITY_SKEW = 0.8
MAX_PRICE = Decimal("99999999.99")

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

    @property
    def description_words(self) -> tuple[str, str, str]:
        return self.name.split()[0].lower(), self.noun.lower(), self.material.lower()


def seller_names(count: int) -> list[str]:
    return [
        SELLER_NAMES[index % len(SELLER_NAMES)]
        + (f" {index // len(SELLER_NAMES) + 1}" if index >= len(SELLER_NAMES) else "")
        for index in range(count)
    ]


def reputation(rng: random.Random) -> Decimal:
    return Decimal(f"{rng.triangular(2.8, 5.0, 4.6):.2f}")


def sketch_product(rng: random.Random) -> ProductSketch:
    noun = rng.choice(list(NOUNS))
    material = rng.choice(MATERIALS)
    adjective = rng.choice(ADJECTIVES)
    name = f"{adjective} {material} {noun}" if rng.random() < 0.6 else f"{adjective} {noun}"
    return ProductSketch(name=name, noun=noun, material=material, quality=rng.gauss(0, 0.6))


def description(sketch: ProductSketch, number: int) -> str:
    adjective, noun, material = sketch.description_words
    return f"A {adjective} {noun} in {material}. {FEATURES[number % len(FEATURES)]}"


def price_around(rng: random.Random, typical: int) -> Decimal:
    whole = max(0, round(typical * rng.lognormvariate(0, 0.35)) - 1)
    cents = rng.choice(("0.99", "0.99", "0.49", "0.95", "0.00"))
    price = Decimal(whole) + Decimal(cents)
    return price if price > 0 else Decimal("0.99")


def stock(rng: random.Random) -> int:
    draw = rng.random()
    if draw < 0.08:
        return 0
    if draw < 0.2:
        return rng.randint(1, 5)
    return rng.randint(6, 250)


def popularity(rng: random.Random, count: int) -> list[float]:
    """Zipf-like weights in random product order: a few products get most attention."""
    ranks = list(range(count))
    rng.shuffle(ranks)
    return [1 / (rank + 1) ** POPULARITY_SKEW for rank in ranks]


def related_picks(
    rng: random.Random, index: int, cumulative_popularity: Sequence[float], most: int
) -> list[int]:
    """3 to 6 other products (indexes), drawn by popularity, none twice."""
    count = len(cumulative_popularity)
    wanted = min(rng.randint(3, 6), count - 1, most)
    chosen: list[int] = []
    while len(chosen) < wanted:
        pick = rng.choices(range(count), cum_weights=cumulative_popularity)[0]
        if pick != index and pick not in chosen:
            chosen.append(pick)
    return chosen


def next_price(rng: random.Random, price: Decimal) -> Decimal:
    """A sale or a price rise of a few percent, never the same price."""
    factor = Decimal(f"{rng.uniform(0.75, 1.15):.3f}")
    candidate = (price * factor).quantize(Decimal(1)) - Decimal("0.01")
    if candidate <= 0 or candidate == price:
        candidate = price + Decimal("1.00")
    return min(candidate, MAX_PRICE)


def hot_product(popularity: Sequence[float]) -> int | None:
    """The most popular product's index, the one with the hot reviews."""
    return max(range(len(popularity)), key=popularity.__getitem__) if popularity else None


def review_counts(
    rng: random.Random, popularity: Sequence[float], total: int, *, hot_reviews: int
) -> Counter[int]:
    """``total`` reviews spread by popularity, and ``hot_reviews`` on the hot product.

    When there are hot reviews the hot product takes no share of the others,
    so it has exactly that many (and the shop one product that many).
    """
    if not popularity:
        return Counter()
    hot = hot_product(popularity)
    weights = list(popularity)
    if hot is not None and hot_reviews and len(weights) > 1:
        weights[hot] = 0.0
    counts = Counter(rng.choices(range(len(weights)), weights, k=total))
    if hot is not None and hot_reviews:
        counts[hot] += hot_reviews
    return counts


def reviewers_needed(most_on_one_product: int, reviews: int) -> int:
    """Enough reviewer accounts for the busiest product; most people review once or twice."""
    return max(most_on_one_product, min(reviews, max(50, reviews // 2)))


def reviewer_names(count: int) -> list[str]:
    width = max(4, len(str(count)))
    return [f"reviewer{number:0{width}d}" for number in range(1, count + 1)]


def rating_weights(quality: float) -> list[float]:
    """Online ratings are J-shaped; a better product shifts weight to the top."""
    return [RATING_WEIGHTS[star] * math.exp(quality * (star - 3) * 0.5) for star in RATING_WEIGHTS]


def rating(rng: random.Random, quality: float) -> int:
    return rng.choices(list(RATING_WEIGHTS), rating_weights(quality))[0]


def review_body(rng: random.Random, sketch: ProductSketch, stars: int) -> str:
    details = PRAISE if stars >= 4 else COMPLAINTS if stars <= 2 else PRAISE + COMPLAINTS
    sentences = [
        rng.choice(OPENINGS[stars]),
        *rng.sample(details, rng.randint(1, 2)),
        rng.choice(CLOSINGS[stars]),
    ]
    text = " ".join(sentence for sentence in sentences if sentence)
    return text.format(noun=sketch.noun.lower(), material=sketch.material.lower())
