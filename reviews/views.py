"""The review form's POST: add the review, then show the product page, which
waits until the read model shows the new review."""

import math

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from catalog.errors import DomainError, NotFound
from projections.receivers import capture_positions
from projections.views import read_model_page, remember_pending_write, render_product_page
from reviews import services
from reviews.apis import ReviewCreateView
from reviews.forms import ReviewForm

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
@read_model_page
def review_create(request: HttpRequest, product_id: int) -> HttpResponse:
    product_page = reverse("product-detail", args=[product_id])
    if not request.user.is_authenticated:
        return redirect_to_login(product_page)
    form = ReviewForm(request.POST)
    wait = over_review_rate(request)
    if wait is not None:
        form.is_valid()  # show the form again as typed, with its own errors too
        form.add_error(None, TOO_MANY_REVIEWS.format(seconds=wait))
        response = render_product_page(request, product_id, review_form=form, status=429)
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
            remember_pending_write(request, product_id=product_id, token=positions[-1])
            return redirect(f"{product_page}#reviews-title")
    return render_product_page(request, product_id, review_form=form, status=400)
