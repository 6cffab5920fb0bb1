"""The review form's POST: add the review, then show the product page, which
waits until the read model shows the new review."""

import functools
import logging
import math
from collections.abc import Callable

from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from eventstore.recording import capture_positions
from kernel.errors import DomainError, NotFound
from kernel.pages import RETRY_AFTER_SECONDS, product_page, remember_pending_write
from reviews import services
from reviews.apis import ReviewCreateView
from reviews.forms import ReviewForm

logger = logging.getLogger(__name__)


def not_saved_on_database_error(
    view: Callable[[HttpRequest, int], HttpResponse],
) -> Callable[[HttpRequest, int], HttpResponse]:
    """Answer 503 with ``Retry-After``, saying the review was not saved, when
    a database fails while a review is posted: the write database (the
    session, the user, the command) or the read one (the page of a refused
    form). The command's transaction rolled back, so nothing was stored, and
    the success redirect is never sent.

    The page touches neither the session nor the user: both live in the
    write database, which may be the one that failed. A connection lost
    while the COMMIT was on its way leaves the outcome unknown; posting
    again then answers "already reviewed" if it was stored.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, product_id: int) -> HttpResponse:
        try:
            return view(request, product_id)
        except DatabaseError as error:
            logger.warning("A review could not be saved: %r", error)
            context = {
                "product_id": product_id,
                "rating": request.POST.get("rating", ""),
                "title": request.POST.get("title", ""),
                "body": request.POST.get("body", ""),
                "messages": (),  # kept in the session, which may be out of reach
            }
            response = render(request, "reviews/not_saved.html", context, status=503)
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response

    return wrapper


TOO_MANY_REVIEWS = "You have posted too many reviews just now. Please try again in {seconds} s."


def over_review_rate(request: HttpRequest) -> int | None:
    """Seconds this user must wait before reviewing again, or None if they may.

    The form counts with the API's own throttles for ``POST /api/reviews/``
    (the "reviews" rate, per user, in the shared cache), so the form and the
    API together never pass that rate. Like the API, every post counts,
    valid or not.
    """
    view = ReviewCreateView()
    for throttle_class in view.throttle_classes:
        throttle = throttle_class()
        # DRF's throttles read only request.user and request.META.
        if not throttle.allow_request(request, view):  # type: ignore[arg-type]
            return max(1, math.ceil(throttle.wait() or 1))
    return None


@require_POST
@not_saved_on_database_error
def review_create(request: HttpRequest, product_id: int) -> HttpResponse:
    page_url = reverse("product-detail", args=[product_id])
    if not request.user.is_authenticated:
        return redirect_to_login(page_url)
    form = ReviewForm(request.POST)
    wait = over_review_rate(request)
    if wait is not None:
        form.is_valid()  # show the form again as typed, with its own errors too
        form.add_error(None, TOO_MANY_REVIEWS.format(seconds=wait))
        response = product_page(request, product_id, review_form=form, status=429)
        response["Retry-After"] = str(wait)
        return response
    if form.is_valid():
        try:
            with capture_positions() as positions:
                services.review_add(
                    product_id=product_id,
                    author=request.user,
                    rating=form.cleaned_data["rating"],
                    title=form.cleaned_data["title"],
                    body=form.cleaned_data["body"],
                )
        except NotFound as error:
            raise Http404(error.message) from error
        except DomainError as error:
            form.add_domain_error(error)
        else:
            remember_pending_write(request, product_id=product_id, token=positions.token())
            return redirect(f"{page_url}#reviews-title")
    return product_page(request, product_id, review_form=form, status=400)
