"""Server-side SVG charts: no JavaScript, escaped text, well-formed XML."""

import dataclasses
import datetime as dt
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 32
TAIL = 0.08  # the current price's step, as a share of the history's span


@dataclasses.dataclass(frozen=True)
class PricePoint:
    price: Decimal
    changed_at: datetime


def price_points(history: list[dict[str, Any]]) -> list[PricePoint]:
    """The history's readable entries, oldest first (the row keeps newest first)."""
    points = []
    for entry in history:
        try:
            price = Decimal(str(entry["price"]))
            changed_at = parse_datetime(str(entry["changed_at"]))
        except (KeyError, TypeError, ValueError, InvalidOperation):
            continue
        if changed_at is not None and price.is_finite():
            points.append(PricePoint(price, changed_at))
    return sorted(points, key=lambda point: point.changed_at)


def _number(value: float) -> str:
    return f"{value:.1f}"


def price_history_svg(history: list[dict[str, Any]], *, currency: str) -> SafeString | None:
    """A step chart of the price over time, on a time axis from the first change
    to a little past the last (the current price's step). None if there is
    nothing to draw."""
    points = price_points(history)
    if not points:
        return None
    start = points[0].changed_at
    tail = max((points[-1].changed_at - start) * TAIL, dt.timedelta(hours=1))
    end = points[-1].changed_at + tail
    span = (end - start).total_seconds()
    low = min(point.price for point in points)
    high = max(point.price for point in points)
    if low == high:
        pad = max(low * Decimal("0.1"), Decimal(1))
        low, high = max(low - pad, Decimal(0)), high + pad
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM

    def x(moment: datetime) -> float:
        return LEFT + (moment - start).total_seconds() / span * plot_width

    def y(price: Decimal) -> float:
        return TOP + float((high - price) / (high - low)) * plot_height

    steps: list[tuple[float, float]] = []
    for index, point in enumerate(points):
        following = points[index + 1].changed_at if index + 1 < len(points) else end
        steps += [(x(point.changed_at), y(point.price)), (x(following), y(point.price))]
    polyline = " ".join(f"{_number(px)},{_number(py)}" for px, py in steps)
    markers = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="3.5"><title>{} {} on {}</title></circle>',
        (
            (
                _number(x(point.changed_at)),
                _number(y(point.price)),
                point.price,
                currency,
                f"{point.changed_at:%Y-%m-%d %H:%M}",
            )
            for point in points
        ),
    )
    first, last = points[0], points[-1]
    summary = (
        f"Price history: {len(points)} price(s), from {first.price} to {last.price} {currency}"
    )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="price-chart" viewBox="0 0 {w} {h}" '
        'role="img" aria-label="{summary}">'
        "<title>{summary}</title>"
        '<g class="axes" stroke="#d1d9e0" stroke-width="1">'
        '<line x1="{left}" y1="{top}" x2="{right}" y2="{top}"/>'
        '<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        "</g>"
        '<g class="labels" font-size="12" fill="#59636e">'
        '<text x="{label_x}" y="{top_label}" text-anchor="end">{high}</text>'
        '<text x="{label_x}" y="{bottom_label}" text-anchor="end">{low}</text>'
        '<text x="{left}" y="{date_y}">{since}</text>'
        '<text x="{right}" y="{date_y}" text-anchor="end">{until}</text>'
        "</g>"
        '<polyline class="line" fill="none" stroke="#0b57d0" stroke-width="2" points="{points}"/>'
        '<g class="points" fill="#0b57d0">{markers}</g>'
        "</svg>",
        w=WIDTH,
        h=HEIGHT,
        summary=summary,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=HEIGHT - BOTTOM,
        label_x=LEFT - 8,
        top_label=TOP + 4,
        bottom_label=HEIGHT - BOTTOM + 4,
        date_y=HEIGHT - 8,
        high=f"{high:.2f}",
        low=f"{low:.2f}",
        since=f"{start:%Y-%m-%d}",
        until=f"{points[-1].changed_at:%Y-%m-%d}",
        points=polyline,
        markers=markers,
    )
