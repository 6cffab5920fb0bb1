"""The site in a real browser: Debian's Chromium, headless, driven by
Playwright, against a live server with the projector running.

A shopper signs in, opens a product page, posts a review and sees it on the
page that follows; a staff member changes the price in the admin and the
product page shows it. Screenshots go to test-artifacts/.
"""

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests import factories
from tests.api.projector import projector_running

pytestmark = [
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def debian_chromium() -> str:
    """Debian's Chromium, installed with apt-get if it is missing; never a
    browser download. Skips when it cannot be installed here."""
    if not Path(CHROMIUM).exists() and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            capture_output=True,
            timeout=900,
            check=False,
        )
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed and could not be installed")
    return CHROMIUM


@pytest.fixture
def browser(monkeypatch):
    executable = debian_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # of the test happen before it starts or after it stops.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_for_text(page, url: str, text: str, timeout: float = 15) -> None:
    """Reload ``url`` until it shows ``text`` (the projector is a moment behind)."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        if text in page.content():
            return
        assert time.monotonic() < deadline, f"{url} never showed {text!r}"
        time.sleep(0.2)


def sign_in(page, base: str, username: str, next_url: str) -> None:
    page.goto(f"{base}/accounts/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", factories.USER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{next_url}*")


def test_a_shopper_reviews_and_staff_reprice_in_chromium(browser, live_server):
    seller = factories.SellerFactory.create(name="Kettle Works")
    product = factories.ProductFactory.create(
        seller=seller, name="Copper kettle", price=Decimal("49.90"), stock_quantity=12
    )
    factories.UserFactory.create(username="shopper")
    factories.UserFactory.create(username="boss", is_staff=True, is_superuser=True)
    base = live_server.url
    detail = f"/products/{product.pk}/"

    with projector_running():
        wait_for_text(browser.new_page(), base + detail, "Copper kettle")

        shopper = browser.new_context().new_page()
        sign_in(shopper, base, "shopper", detail)
        assert "Copper kettle" in shopper.content()
        assert "49.90" in shopper.inner_text(".price")
        shot(shopper, "1-product-page")

        shopper.select_option("#id_rating", "4")
        shopper.fill("#id_title", "Boils fast")
        shopper.fill("#id_body", "Boils a litre in three minutes, handle stays cool.")
        shopper.click(".review-form button[type=submit]")
        shopper.wait_for_url(f"{base}{detail}*")
        # The page that follows the post already shows the review.
        assert "Boils a litre in three minutes" in shopper.content()
        assert "Your review is published" in shopper.inner_text("[role=status]")
        shot(shopper, "2-review-posted")

        staff = browser.new_context().new_page()
        sign_in(staff, base, "boss", f"/admin/catalog/product/{product.pk}/change/")
        staff.fill("#id_price", "123.45")
        staff.click("input[name=_save]")
        staff.wait_for_url(f"{base}/admin/catalog/product/*")
        assert "was changed successfully" in staff.content()
        shot(staff, "3-admin-price-changed")

        wait_for_text(staff, base + detail, "123.45")
        assert "123.45" in staff.inner_text(".price")
        shot(staff, "4-product-page-new-price")


# Redoc's sidebar shows "API docs by Redocly" with an <img> of this URL, and
# has no option to leave it out: the docs' CSP (img-src 'self' data:) stops
# the browser from fetching it, and Redoc hides the broken image.
REDOC_ATTRIBUTION_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@dataclass
class Traffic:
    """What a page asked for, what the browser refused to fetch, and the
    console's messages about the Content-Security-Policy."""

    requested: list[str] = field(default_factory=list)
    blocked_by_csp: list[str] = field(default_factory=list)
    csp_messages: list[str] = field(default_factory=list)

    def left_home(self, base: str) -> list[str]:
        """Requests for anything but the live server (or data the page made)."""
        home = urlsplit(base).netloc
        return [
            url
            for url in self.requested
            if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).netloc != home
        ]


def record_traffic(page) -> Traffic:
    traffic = Traffic()
    page.on("request", lambda request: traffic.requested.append(request.url))
    page.on(
        "requestfailed",
        lambda request: (
            traffic.blocked_by_csp.append(request.url)
            if request.failure in ("csp", "net::ERR_BLOCKED_BY_CSP")
            else None
        ),
    )
    page.on(
        "console",
        lambda message: (
            traffic.csp_messages.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    return traffic


def test_the_api_docs_render_offline_under_their_csp(browser, live_server):
    base = live_server.url
    page = browser.new_page()
    traffic = record_traffic(page)

    answer = page.goto(f"{base}/api/docs/")
    # Swagger UI has fetched the document and drawn an entry per operation.
    page.wait_for_selector(".opblock-summary-path[data-path='/api/auth/token/']", timeout=20_000)
    page.wait_for_load_state("networkidle")
    operations = page.locator(".opblock").count()
    shot(page, "5-swagger-ui")

    assert answer is not None
    script_src = answer.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    assert script_src.strip() == "'self'", "no inline script, no other host"
    assert operations == 9
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in u for u in traffic.requested)
    assert traffic.left_home(base) == []
    assert traffic.csp_messages == []

    page = browser.new_page()
    traffic = record_traffic(page)
    page.goto(f"{base}/api/redoc/")
    # Redoc has fetched the document and drawn a section per operation.
    page.locator("h2", has_text="Get an API token").wait_for(timeout=20_000)
    page.wait_for_load_state("networkidle")
    sections = page.locator("h2", has_text="Get a product").count()
    shot(page, "6-redoc")

    assert sections == 1
    assert any("/static/drf_spectacular_sidecar/redoc/" in u for u in traffic.requested)
    assert set(traffic.left_home(base)) <= {REDOC_ATTRIBUTION_LOGO}
    assert set(traffic.blocked_by_csp) == set(traffic.left_home(base)), "refused, never fetched"
    assert all(REDOC_ATTRIBUTION_LOGO in message for message in traffic.csp_messages)
