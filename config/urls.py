from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path, reverse
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from django.views.decorators.http import require_safe
from django.views.generic import RedirectView
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from catalog.apis import ProductPriceView, ProductStockView
from config.metrics import metrics
from kernel.token_api import ApiTokenView
from queries.apis import not_found, router
from queries.health import healthz
from queries.views import product_detail, product_list
from reviews.apis import ReviewCreateView, ReviewDetailView
from reviews.views import review_create

# Swagger UI and Redoc come from our own static files (drf-spectacular-sidecar),
# and Swagger UI's start-up script from its own URL (the split view), so the
# docs run no inline script and load nothing from another host. Redoc styles
# itself with inline styles, and runs its search in a worker made from a blob.
DOCS_CSP: dict[str, list[str]] = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "worker-src": [CSP.SELF, "blob:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}


def api_index(request: HttpRequest) -> JsonResponse:
    """``GET /api/``: where each endpoint of the API is, and its description."""
    return JsonResponse(
        {
            "products": "/api/products/",
            "product": "/api/products/{product_id}/",
            "product_price": "/api/products/{product_id}/price/",
            "product_stock": "/api/products/{product_id}/stock/",
            "seller": "/api/sellers/{seller_id}/",
            "reviews": "/api/reviews/",
            "review": "/api/reviews/{review_id}/",
            "token": reverse("api-token"),
            "schema": reverse("api-schema"),
            "docs": reverse("api-docs"),
            "redoc": reverse("api-redoc"),
        }
    )


api = [
    path("api/", require_safe(api_index), name="api-index"),
    # The query side: read-only viewsets (products list and detail, seller detail).
    path("api/", include(router.urls)),
    path("api/reviews/", ReviewCreateView.as_view(), name="api-review-create"),
    path("api/reviews/<int:review_id>/", ReviewDetailView.as_view(), name="api-review-detail"),
    path(
        "api/products/<int:product_id>/price/",
        ProductPriceView.as_view(),
        name="api-product-price",
    ),
    path(
        "api/products/<int:product_id>/stock/",
        ProductStockView.as_view(),
        name="api-product-stock",
    ),
    path("api/auth/token/", ApiTokenView.as_view(), name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        csp_override(DOCS_CSP)(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path(
        "api/redoc/",
        csp_override(DOCS_CSP)(
            SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html")
        ),
        name="api-redoc",
    ),
    # Last: any other /api/.../ path is a JSON 404 (without the slash, Django
    # first tries the path with one).
    re_path(r"^api/[\s\S]*/$", not_found),
]

pages = [
    path("", RedirectView.as_view(pattern_name="product-list"), name="home"),
    path("products/", product_list, name="product-list"),
    path("products/<int:product_id>/", product_detail, name="product-detail"),
    path("products/<int:product_id>/reviews/", review_create, name="product-review"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    *api,
    *pages,
]
