"""The WSGI application: Django's handler, and a lean one for anonymous queries.

Most requests a shop serves are anonymous reads of the query side: the
product and seller API, the product pages. They need no session, no CSRF or
message machinery and no authentication, so they go through a handler with
a short middleware list (``LEAN_MIDDLEWARE``) that keeps everything that
protects the answer: host validation, HSTS, nosniff, the referrer, opener and
frame policies and the Content-Security-Policy. Everything else (a signed-in
visitor, a request with credentials or a message to show, any write, the
admin) takes Django's full stack as configured in ``MIDDLEWARE``.

The choice is made from the WSGI environment before Django builds a request,
and it can only widen the work, never skip a check a request needs: a
request that carries a session or messages cookie, or an ``Authorization``
header, is never lean.
"""

import re
from collections.abc import Iterable
from typing import Any

import django
from django.conf import settings
from django.contrib.messages.storage.cookie import CookieStorage
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse, parse_cookie
from django.utils.module_loading import import_string

# The anonymous query endpoints (the query app's API and pages), by path.
ANONYMOUS_QUERY_PATH = re.compile(r"/(?:api/(?:products|sellers)/|products/)(?:[0-9]+/)?\Z")
SAFE_METHODS = frozenset({"GET", "HEAD"})

LEAN_MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "config.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "config.handlers.AnonymousVisitorMiddleware",
]


class AnonymousVisitorMiddleware:
    """What the full stack's authentication middleware would have found for
    a request without credentials: an anonymous user."""

    def __init__(self, get_response: Any) -> None:
        from django.contrib.auth.models import AnonymousUser  # needs the apps loaded

        self.get_response = get_response
        self.anonymous_user = AnonymousUser

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.user = self.anonymous_user()
        response: HttpResponse = self.get_response(request)
        return response


class MiddlewareListHandler(WSGIHandler):
    """Django's WSGI handler with its own list of (synchronous) middleware
    instead of ``settings.MIDDLEWARE``."""

    def __init__(self, middleware: Iterable[str]) -> None:
        self.middleware = list(middleware)
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for path in reversed(self.middleware):
            instance = import_string(path)(handler)
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler


def is_anonymous_query(environ: dict[str, Any]) -> bool:
    """A read of a query endpoint that carries no credentials and no state."""
    if environ.get("REQUEST_METHOD") not in SAFE_METHODS:
        return False
    if not ANONYMOUS_QUERY_PATH.match(environ.get("PATH_INFO", "")):
        return False
    if "HTTP_AUTHORIZATION" in environ:
        return False
    cookie = environ.get("HTTP_COOKIE")
    if cookie:
        sent = parse_cookie(cookie)
        if settings.SESSION_COOKIE_NAME in sent or CookieStorage.cookie_name in sent:
            return False
    return True


class StorefrontApplication:
    """The project's WSGI application: each request to the handler it needs."""

    def __init__(self) -> None:
        self.full = WSGIHandler()
        self.lean = MiddlewareListHandler(LEAN_MIDDLEWARE)

    def handler_for(self, environ: dict[str, Any]) -> WSGIHandler:
        return self.lean if is_anonymous_query(environ) else self.full

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.handler_for(environ)(environ, start_response)


def get_application() -> StorefrontApplication:
    """Django set up, then the application (``django.core.wsgi``'s steps)."""
    django.setup(set_prefix=False)
    return StorefrontApplication()
