"""Schemathesis against /api/schema/, in process through the WSGI app, over
every endpoint (``POST /api/auth/token/`` too), as nobody, a signed-in user
(token) and staff (token)."""

import os

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from rest_framework.throttling import ScopedRateThrottle
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from projections.registry import project_all
from reviews import services as review_services
from tests import factories
from tests.fuzz.conftest import answered

# Per operation and run; FUZZ_EXAMPLES=500 digs deeper.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ_PASSWORD = "fuzz-pw-123"
TOKEN_PATH = "/api/auth/token/"

# Transactional: the projector reads only committed events.
pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
    pytest.mark.usefixtures("keep_the_test_connection"),
]

# The document as the site serves it (fetching it touches no database). No
# made-up query parameters: like most APIs, this one ignores unknown ones.
schema = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    get_wsgi_application(),
    config=SchemathesisConfig.from_dict({"generation": {"allow-extra-parameters": False}}),
)


@pytest.fixture(autouse=True)
def _short_consistency_waits(settings):
    """A made-up consistency token is one no projector will reach: answer stale
    at once instead of after the usual wait."""
    settings.CONSISTENCY_WAIT_SECONDS = 0.01


@pytest.fixture
def world(django_user_model, monkeypatch, settings):
    """A projected shop, and request headers for nobody, a signed-in user (who
    has written a review) and a staff member who may change products.
    Unthrottled: the throttles have tests of their own, and a 429 would hide
    every other answer."""
    monkeypatch.setattr(
        ScopedRateThrottle, "THROTTLE_RATES", {"reviews": "100000/min", "commands": "100000/min"}
    )
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "tokens": "100000/min"},
    }
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    users = {}
    for name in ("user", "staff"):
        users[name] = django_user_model.objects.create_user(
            username=f"fuzz-{name}", password=FUZZ_PASSWORD, is_staff=name == "staff"
        )
        if name == "staff":
            factories.grant(users[name], "catalog.change_product")
        headers[name] = {"Authorization": f"Token {Token.objects.create(user=users[name]).key}"}
    product = factories.product(price="19.99", stock=10)
    factories.product(price="5.00", stock=0)
    review = review_services.review_add(
        product_id=product.pk, author=users["user"], rating=4, body="Written before the fuzz."
    )
    project_all()
    ids = {"product_id": product.pk, "seller_id": product.seller_id, "review_id": review.pk}
    return headers, ids


def aim_at_real_rows(case, ids: dict[str, int]) -> None:
    """Half the valid ids the generator made up (the even ones) become ids of
    rows that exist, so the answers are not all 404."""
    for name, real in ids.items():
        value = (case.path_parameters or {}).get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value % 2 == 0:
            case.path_parameters[name] = real
    product = case.body.get("product") if isinstance(case.body, dict) else None
    if isinstance(product, int) and not isinstance(product, bool) and product % 2 == 0:
        case.body["product"] = ids["product_id"]
    generated = case._meta.generation.mode if case._meta is not None else None
    if generated == GenerationMode.POSITIVE and isinstance(case.body, dict):
        # Half the valid token requests name a real user, half of them with
        # the right password (only valid ones: a fix would turn an invalid
        # request into one that is rightly accepted).
        username = case.body.get("username")
        if isinstance(username, str) and len(username) % 2 == 0:
            case.body["username"] = "fuzz-user"
            if len(username) % 4 == 0:
                case.body["password"] = FUZZ_PASSWORD


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_endpoint_answers_within_its_schema_and_never_5xx(case, world):
    identities, ids = world
    aim_at_real_rows(case, ids)
    # The token endpoint takes no credentials but those in its body: who asks
    # changes nothing, so it is asked once.
    asking = [{}] if case.path == TOKEN_PATH else identities.values()
    for headers in asking:
        # Every other check runs: no 5xx, documented status codes, content
        # types, headers and bodies, invalid input refused. Not "a schema-valid
        # request is accepted": the schema cannot say that a cursor is opaque
        # or that a product takes one review per author, so 400 and 409 are
        # right answers to some schema-valid requests.
        response = case.call_and_validate(
            headers=headers, excluded_checks=[positive_data_acceptance]
        )
        answered[f"{response.status_code // 100}xx"] += 1
