"""What the server-rendered pages of the two sides share.

The review form posts to the command side (``reviews.views``), which shows
the product page again when the form has errors, and otherwise redirects
there; the product page is the query side's (``queries.views``). So the
command side renders it through this registry, which the query app fills
when it is ready, instead of importing the query side. And the write a
signed-in user just made travels to that page in their session, so the page
waits until the read model shows it.
"""

from collections.abc import Callable
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

from eventstore.tokens import Token

PENDING_WRITE_KEY = "pending_write"
RETRY_AFTER_SECONDS = 5


class ProductPage(Protocol):
    def __call__(
        self,
        request: HttpRequest,
        product_id: int,
        *,
        review_form: Any = None,
        status: int = 200,
    ) -> HttpResponse: ...


_renderers: dict[str, Callable[..., HttpResponse]] = {}


def register_product_page(render: ProductPage) -> None:
    _renderers["product"] = render


def product_page(
    request: HttpRequest, product_id: int, *, review_form: Any = None, status: int = 200
) -> HttpResponse:
    """The product page, with ``review_form`` (bound, with its errors) shown again."""
    try:
        render = _renderers["product"]
    except KeyError:
        raise ImproperlyConfigured(
            "No product page is registered (is 'queries' installed?)"
        ) from None
    return render(request, product_id, review_form=review_form, status=status)


def remember_pending_write(request: HttpRequest, *, product_id: int, token: Token) -> None:
    """Make the next view of the product wait until it shows this write."""
    request.session[PENDING_WRITE_KEY] = {"product_id": product_id, "token": token.value()}


def pending_write(request: HttpRequest, product_id: int) -> Token | None:
    """The write the signed-in user is waiting to see on this product, once."""
    if not request.user.is_authenticated:
        return None
    pending = request.session.get(PENDING_WRITE_KEY)
    if not isinstance(pending, dict) or pending.get("product_id") != product_id:
        return None
    del request.session[PENDING_WRITE_KEY]
    try:
        return Token.from_value(str(pending.get("token")))
    except ValueError:
        return None
