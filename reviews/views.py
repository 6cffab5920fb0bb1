"""The review form's POST: add the review, then show the product page, which
waits until the read model shows the new review."""

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from catalog.errors import DomainError, NotFound
from projections.receivers import capture_positions
from projections.views import read_model_page, remember_pending_write, render_product_page
from reviews import services
from reviews.forms import ReviewForm


@require_POST
@read_model_page
def review_create(request: HttpRequest, product_id: int) -> HttpResponse:
    product_page = reverse("product-detail", args=[product_id])
    if not request.user.is_authenticated:
        return redirect_to_login(product_page)
    form = ReviewForm(request.POST)
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
