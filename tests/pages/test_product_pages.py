import re
import time
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from catalog import services as catalog_services
from eventstore.models import Event
from kernel import errors as kernel_errors
from projections.registry import project_all
from reviews import errors as review_errors
from reviews.models import Review
from reviews.views import TOO_MANY_REVIEWS
from tests import factories
from tests.api.factories import ProductRowFactory, SellerRowFactory, price_history, review
from tests.api.projector import projector_running
from tests.support import nothing_written

both_databases = pytest.mark.django_db(databases=["default", "read"])
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def row():
    return ProductRowFactory(
        product_id=42,
        name="Espresso machine",
        description="Makes coffee.",
        price=Decimal("249.00"),
        stock_quantity=3,
        rating_histogram=[1, 0, 0, 2, 7],
        seller_name="Bean & Co",
        seller_reputation=Decimal("4.85"),
        related_products=[
            {"id": 43, "name": "Burr grinder", "price": "89.00", "avg_rating": "4.20"},
            {"id": 44, "name": "Tamper", "price": "19.50", "avg_rating": None},
        ],
        price_history=price_history("279.00", "259.00", "249.00"),
        recent_reviews=[
            review(3, author="dana", rating=5, body="Best machine I have owned."),
            review(2, author="erin", rating=1, body="Broke after a week."),
        ],
    )


def text(response):
    return response.content.decode()


def svg_of(page):
    match = re.search(r"<svg\b.*?</svg>", page, re.S)
    assert match, "no inline SVG on the page"
    return ET.fromstring(match.group(0))


@both_databases
def test_the_detail_page_shows_every_field(client, row):
    response = client.get("/products/42/")
    assert response.status_code == 200
    page = text(response)
    for shown in [
        "<title>Espresso machine · Storefront</title>",
        "Espresso machine",
        "Makes coffee.",
        "249.00 EUR",
        '<span class="badge low_stock">Low stock</span>',
        "Only 3 left",
        "★★★★☆",
        "4.40 out of 5",
        "10 reviews",
        "Bean &amp; Co",
        "Reputation 4.85 / 5",
        'href="/products/43/"',
        "Burr grinder",
        "89.00 EUR",
        "4.20",
        "Tamper",
        "19.50 EUR",
        "no reviews",
        "dana",
        "Best machine I have owned.",
        "erin",
        "Broke after a week.",
        '<meta name="viewport"',
    ]:
        assert shown in page, shown
    bars = re.findall(r"<span>(\d) stars?</span>.*?width: (\d+)%.*?>(\d+)</span>", page, re.S)
    assert bars == [
        ("5", "70", "7"),
        ("4", "20", "2"),
        ("3", "0", "0"),
        ("2", "0", "0"),
        ("1", "10", "1"),
    ]
    assert page.index("dana") < page.index("erin")  # newest review first


@pytest.mark.parametrize(
    ("quantity", "badge", "detail"),
    [(0, "Out of stock", None), (50, "In stock", "50 available"), (5, "Low stock", "Only 5 left")],
)
@both_databases
def test_the_stock_badge(client, quantity, badge, detail):
    ProductRowFactory(product_id=7, stock_quantity=quantity)
    page = text(client.get("/products/7/"))
    assert f">{badge}</span>" in page
    if detail:
        assert detail in page


@both_databases
def test_an_unrated_product(client):
    ProductRowFactory(product_id=7)
    page = text(client.get("/products/7/"))
    assert "☆☆☆☆☆" in page
    assert "No reviews yet" in page


@both_databases
def test_the_price_chart_is_well_formed_svg(client, row):
    chart = svg_of(text(client.get("/products/42/")))
    assert chart.tag == f"{SVG}svg"
    assert chart.get("role") == "img"
    assert "from 279.00 to 249.00 EUR" in chart.find(f"{SVG}title").text
    points = chart.find(f"{SVG}polyline").get("points").split()
    assert len(points) == 6  # a step (two corners) per price
    heights = [float(point.split(",")[1]) for point in points]
    assert heights[0] < heights[2] < heights[4]  # each price lower than the one before
    markers = chart.findall(f".//{SVG}circle")
    assert [marker.find(f"{SVG}title").text for marker in markers] == [
        "279.00 EUR on 2025-01-01 00:00",
        "259.00 EUR on 2025-01-08 00:00",
        "249.00 EUR on 2025-01-15 00:00",
    ]
    labels = [label.text for label in chart.iter(f"{SVG}text")]
    assert labels[:2] == ["279.00", "249.00"]


@both_databases
def test_one_price_still_draws_a_chart_and_none_draws_a_note(client):
    ProductRowFactory(product_id=7, price_history=price_history("5.00"))
    ProductRowFactory(product_id=8, price_history=[])
    assert len(svg_of(text(client.get("/products/7/"))).findall(f".//{SVG}circle")) == 1
    page = text(client.get("/products/8/"))
    assert "<svg" not in page
    assert "No price history yet." in page


@both_databases
def test_markup_in_reviews_and_names_is_escaped(client):
    ProductRowFactory(
        product_id=7,
        name="<b>Bold</b> kettle",
        description="<img src=x onerror=alert(1)>",
        seller_name="<i>Seller</i>",
        recent_reviews=[
            review(1, author="<script>a</script>", body="<script>alert('xss')</script> & more")
        ],
        related_products=[
            {"id": 8, "name": "<script>r</script>", "price": "1.00", "avg_rating": None}
        ],
    )
    page = text(client.get("/products/7/"))
    assert "<script>" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;xss&#x27;)&lt;/script&gt; &amp; more" in page
    assert "&lt;b&gt;Bold&lt;/b&gt; kettle" in page
    assert "&lt;i&gt;Seller&lt;/i&gt;" in page
    svg_of(page)  # the chart is still well-formed


@both_databases
def test_the_page_reads_its_row_once_then_only_its_version(client, row, django_assert_num_queries):
    with (
        CaptureQueriesContext(connections["default"]) as on_default,
        django_assert_num_queries(2, connection=connections["read"]),
    ):
        first = client.get("/products/42/")
    with django_assert_num_queries(1, connection=connections["read"]):
        second = client.get("/products/42/")

    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert len(on_default) == 0


@both_databases
def test_a_changed_row_is_rendered_afresh(client, row):
    assert "10 reviews" in text(client.get("/products/42/"))
    row.review_count = 11
    row.last_position += 1  # what the projector does with every change
    row.save(using="read")
    assert "11 reviews" in text(client.get("/products/42/"))


@both_databases
def test_the_row_parts_are_rendered_once_per_row_version(client, row, django_assert_num_queries):
    first = text(client.get("/products/42/"))
    with django_assert_num_queries(1, connection=connections["read"]):
        again = text(client.get("/products/42/"))
    assert again == first


@both_databases
def test_unknown_product_page_is_a_404(client, row):
    assert client.get("/products/41/").status_code == 404
    assert client.get(f"/products/{2**64}/").status_code == 404


@both_databases
def test_anonymous_visitors_are_asked_to_sign_in(client, row):
    page = text(client.get("/products/42/"))
    assert '<form method="post" action="/products/42/reviews/"' not in page
    assert 'href="/accounts/login/?next=/products/42/"' in page


@both_databases
def test_signed_in_users_get_a_review_form_with_csrf(client, row, user):
    client.force_login(user)
    page = text(client.get("/products/42/"))
    form = re.search(r'<form method="post" action="/products/42/reviews/".*?</form>', page, re.S)
    assert form
    assert 'name="csrfmiddlewaretoken"' in form.group(0)
    assert '<select name="rating"' in form.group(0)
    assert '<textarea name="body"' in form.group(0)


@both_databases
def test_no_review_form_for_a_product_off_sale(client, user):
    ProductRowFactory(product_id=7, is_active=False)
    client.force_login(user)
    page = text(client.get("/products/7/"))
    assert "/products/7/reviews/" not in page
    assert "no longer on sale" in page


# Posting a review through the form ---------------------------------------------

reads_commits = pytest.mark.django_db(databases=["default", "read"], transaction=True)


@pytest.fixture
def product():
    """On the write side, and its read-model row made directly (no projector)."""
    product = factories.product(price="30.00")
    ProductRowFactory(product_id=product.pk, name=product.name, price=product.price)
    return product


@pytest.fixture
def projected_product():
    """On the write side and projected: for transactional tests only."""
    product = factories.product(price="30.00")
    project_all()
    return product


@reads_commits
def test_after_posting_the_author_sees_the_review_on_the_next_page(client, user, projected_product):
    product = projected_product
    client.force_login(user)
    body = "Lovely <b>kettle</b>, boils fast."
    with projector_running(interval=0.3):
        response = client.post(
            f"/products/{product.pk}/reviews/", {"rating": "5", "body": body}, follow=True
        )
    assert response.redirect_chain == [(f"/products/{product.pk}/#reviews-title", 302)]
    page = text(response)
    assert "Your review is published." in page
    assert "Lovely &lt;b&gt;kettle&lt;/b&gt;, boils fast." in page
    assert "1 review<" in page
    assert "5.00 out of 5" in page
    # The notice is for the page right after posting only.
    assert "Your review is" not in text(client.get(f"/products/{product.pk}/"))


@reads_commits
def test_when_the_projector_lags_the_page_says_the_review_is_coming(
    client, user, projected_product, settings
):
    product = projected_product
    settings.CONSISTENCY_WAIT_SECONDS = 0.3
    client.force_login(user)
    started = time.monotonic()
    response = client.post(
        f"/products/{product.pk}/reviews/",
        {"rating": "4", "body": "Good kettle overall."},
        follow=True,
    )
    assert time.monotonic() - started < 1.5
    page = text(response)
    assert "Your review is being published" in page
    assert "Good kettle overall." not in page
    assert Review.objects.filter(author=user, product=product).exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rating": "5", "body": "short"}, review_errors.BODY_LENGTH),
        ({"rating": "5", "body": "no\x00nul bytes please"}, "Null characters are not allowed."),
        ({"rating": "9", "body": "A long enough review."}, "Select a valid choice."),
        ({"rating": "5"}, "This field is required."),
    ],
)
@both_databases
def test_form_errors_are_shown_and_nothing_is_written(client, user, product, data, message):
    client.force_login(user)
    events = Event.objects.count()
    response = client.post(f"/products/{product.pk}/reviews/", data)
    assert response.status_code == 400
    assert message in text(response)
    assert Event.objects.count() == events
    assert not Review.objects.exists()


@both_databases
def test_the_form_keeps_what_was_typed(client, user, product):
    client.force_login(user)
    response = client.post(f"/products/{product.pk}/reviews/", {"rating": "2", "body": "Meh <3"})
    page = text(response)
    assert ">Meh &lt;3</textarea>" in page
    assert '<option value="2" selected>' in page


@both_databases
def test_a_second_review_shows_the_conflict_on_the_form(client, user, product):
    factories.review(product_obj=product, author=user)
    client.force_login(user)
    events = Event.objects.count()
    response = client.post(
        f"/products/{product.pk}/reviews/", {"rating": "1", "body": "Another opinion."}
    )
    assert response.status_code == 400
    assert review_errors.REVIEW_EXISTS.replace("'", "&#x27;") in text(response)
    assert Event.objects.count() == events


@both_databases
def test_the_form_and_the_api_together_keep_to_the_review_rate(client, user, settings):
    allowed = int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["reviews"].split("/")[0])
    products = [factories.product() for _ in range(allowed + 2)]
    for product in products:
        ProductRowFactory(product_id=product.pk, name=product.name, price=product.price)
    api = APIClient()
    api.force_authenticate(user)
    client.force_login(user)
    for product in products[: allowed - 1]:
        posted = api.post(
            "/api/reviews/", {"product": product.pk, "rating": 4, "body": "Posted by the API."}
        )
        assert posted.status_code == 201
    last = client.post(
        f"/products/{products[allowed - 1].pk}/reviews/",
        {"rating": "5", "body": "The last one allowed."},
    )
    assert last.status_code == 302

    with nothing_written():
        over = client.post(
            f"/products/{products[allowed].pk}/reviews/",
            {"rating": "3", "body": "One review too many."},
        )
        by_api = api.post(
            "/api/reviews/", {"product": products[-1].pk, "rating": 4, "body": "Also too many."}
        )
    assert over.status_code == 429
    assert over["Content-Type"].startswith("text/html")
    wait = int(over["Retry-After"])
    assert wait > 0
    page = text(over)
    assert TOO_MANY_REVIEWS.format(seconds=wait) in page
    assert ">One review too many.</textarea>" in page, "what was typed is kept"
    assert by_api.status_code == 429


@both_databases
def test_anonymous_posts_go_to_the_sign_in_page(client, product):
    response = client.post(
        f"/products/{product.pk}/reviews/", {"rating": "5", "body": "Anonymous review."}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/products/{product.pk}/"
    assert not Review.objects.exists()


@both_databases
def test_the_form_needs_its_csrf_token(user, product):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(
        f"/products/{product.pk}/reviews/", {"rating": "5", "body": "Forged review here."}
    )
    assert response.status_code == 403
    assert not Review.objects.exists()


@both_databases
def test_reviewing_an_unknown_product_is_a_404(client, user):
    client.force_login(user)
    response = client.post("/products/999999/reviews/", {"rating": "5", "body": "A long review."})
    assert response.status_code == 404
    assert client.get("/products/1/reviews/").status_code == 405


@both_databases
def test_reviewing_a_product_off_sale_shows_why(client, user, product):
    catalog_services.product_change_details(product_id=product.pk, is_active=False)
    client.force_login(user)
    response = client.post(
        f"/products/{product.pk}/reviews/", {"rating": "5", "body": "A long review."}
    )
    assert response.status_code == 400
    assert kernel_errors.PRODUCT_INACTIVE in text(response)


# The list page --------------------------------------------------------------------


@pytest.fixture
def listing():
    SellerRowFactory(seller_id=1, name="Acme Goods")
    SellerRowFactory(seller_id=2, name="Bolt Bros")
    rows = [
        ProductRowFactory(name=f"Widget {n:02d}", price=Decimal(n), seller_id=1 + n % 2)
        for n in range(1, 31)
    ]
    ProductRowFactory(name="Off sale", is_active=False)
    return rows


def names(page):
    return re.findall(r'<h2><a href="/products/\d+/">(.*?)</a></h2>', page)


@both_databases
def test_the_list_page_shows_products_a_page_at_a_time(client, listing):
    response = client.get("/products/")
    assert response.status_code == 200
    page = text(response)
    assert names(page) == [f"Widget {n:02d}" for n in range(1, 25)]
    assert "1.00 EUR" in page
    assert "Off sale" not in page
    link = re.search(r'<a rel="next" href="(.*?)"', page)
    assert link
    following = link.group(1).replace("&amp;", "&")
    rest = text(client.get(f"/products/{following}"))
    assert names(rest) == [f"Widget {n:02d}" for n in range(25, 31)]
    assert 'rel="next"' not in rest
    assert 'rel="prev"' in rest


@both_databases
def test_the_list_page_filters_and_sorts(client, listing):
    page = text(client.get("/products/", {"ordering": "-price", "max_price": "5", "seller": "2"}))
    assert names(page) == ["Widget 05", "Widget 03", "Widget 01"]
    assert '<option value="-price" selected>' in page
    assert '<option value="2" selected>Bolt Bros</option>' in page
    assert names(text(client.get("/products/", {"search": "widget 1"}))) == [
        f"Widget {n}" for n in range(10, 20)
    ]
    assert names(text(client.get("/products/", {"in_stock": "true", "search": "30"}))) == [
        "Widget 30"
    ]


@both_databases
def test_the_list_page_explains_bad_filters(client, listing):
    response = client.get("/products/", {"max_price": "cheap"})
    assert response.status_code == 400
    assert "max_price: A valid number is required." in text(response)
    response = client.get("/products/", {"cursor": "bogus"})
    assert response.status_code == 400
    assert "Invalid cursor." in text(response)
