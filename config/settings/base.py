"""Settings shared by every environment.

One ``env`` object reads the environment. With nothing set, Storefront runs on
its embedded default: two SQLite files under ``var/`` and no broker.
"""

import datetime as dt
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

VAR_DIR = Path(env.str("STOREFRONT_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI and Redoc as static files of our own (/api/docs/, /api/redoc/).
    "drf_spectacular_sidecar",
    "axes",
    # The layers, bottom up: the event store, the write side, the projections,
    # the query side; and the demo shop with the local server.
    "eventstore",
    "catalog",
    "reviews",
    "projections",
    "queries",
    # Before staticfiles, whose runserver its own extends (the first app listed wins).
    "demo",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    # First: the request id and the HTTP metrics cover everything below.
    "config.middleware.RequestIdMiddleware",
    "config.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Sends nothing until SECURE_CSP is set (production sets it).
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into its page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _sqlite(path: Path) -> dict[str, object]:
    """An SQLite database in WAL mode whose writers take the lock up front.

    ``IMMEDIATE`` transactions serialize writers at BEGIN, so two writers never
    deadlock upgrading a read lock, and the event log's position order is its
    commit order.
    """
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
        # File databases in tests too: threads and subprocesses share them.
        "TEST": {"NAME": path.with_name(f"test_{path.name}")},
    }


def _database(var: str, sqlite_file: str) -> dict[str, object]:
    if var not in env:
        return _sqlite(VAR_DIR / sqlite_file)
    config: dict[str, Any] = env.db_url(var)
    if config["ENGINE"] == "django.db.backends.postgresql":
        pooled = env.bool("DATABASE_POOL", default=False)
        # Per alias and process. It opens connections as threads need them at
        # once, up to the most threads of one process: run_projectors' (one
        # per partition and one for the sellers), gunicorn's --threads.
        size = env.int("DATABASE_POOL_MAX_SIZE", default=16)
        pool = {"min_size": min(4, size), "max_size": size} if pooled else False
        # Beside the URL's own options (?sslmode=...&connect_timeout=...), which
        # reach every connection: Django's, its pool's and the LISTEN ones.
        config["OPTIONS"] = {**config.get("OPTIONS", {}), "pool": pool}
        config["CONN_HEALTH_CHECKS"] = True
        if not pooled:
            # Persistent connections: a Celery worker runs a task per commit, and
            # Django's default would open two connections for every one of them.
            config["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    return config


DATABASES = {
    "default": _database("DATABASE_URL", "write.sqlite3"),
    "read": _database("READ_DATABASE_URL", "read.sqlite3"),
}
DATABASE_ROUTERS = ["config.routers.ReadModelRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out sign-in before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/products/"
LOGOUT_REDIRECT_URL = "/products/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Every command is throttled per user: "reviews" for new reviews, "commands"
    # for the others (edits, removals, staff price and stock changes).
    "DEFAULT_THROTTLE_RATES": {
        "reviews": env.str("REVIEW_THROTTLE_RATE", default="30/min"),
        "commands": env.str("COMMAND_THROTTLE_RATE", default="120/min"),
        # POST /api/auth/token/ per client address (kernel.token_api), beside
        # the lockout of a username after LOGIN_FAILURE_LIMIT failures.
        "tokens": env.str("TOKEN_THROTTLE_RATE", default="10/min"),
    },
}
# Anonymous queries (API and pages) per client address; "" for no limit.
QUERY_THROTTLE_RATE = env.str("QUERY_THROTTLE_RATE", default="100/s")
# What shared caches (a CDN, a reverse proxy) may do with a plain anonymous read
# of the query API and pages (queries/caching.py): serve it this many seconds
# without asking (s-maxage; 0: always revalidate), and a stale one this many
# more while they revalidate. Browsers always revalidate (with the ETag: a 304).
QUERY_SHARED_MAX_AGE_SECONDS = env.int("QUERY_SHARED_MAX_AGE_SECONDS", default=1)
QUERY_STALE_WHILE_REVALIDATE_SECONDS = env.int("QUERY_STALE_WHILE_REVALIDATE_SECONDS", default=5)
# Behind N reverse proxies that each append the address they saw to
# X-Forwarded-For, the client's address is the N-th from the right; with 0 the
# header is the client's own say and is never believed. The API's throttles,
# the login lockouts and /healthz's internal callers all use this one rule.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
REST_FRAMEWORK["NUM_PROXIES"] = TRUSTED_PROXY_COUNT

# Sign-ins, on the site's page and the admin's (django-axes): LOGIN_FAILURE_LIMIT
# failures for one username from one address lock that pair out for
# LOGIN_COOLOFF_MINUTES (each try meanwhile starts the wait again); other users
# and the same user elsewhere sign in as usual. Attempts are kept in the write
# database, not in the cache, which fails open when Redis is down.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.float("LOGIN_COOLOFF_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "kernel.clients.client_address"
AXES_LOCKOUT_CALLABLE = "config.security.sign_in_locked_out"

SPECTACULAR_SETTINGS = {
    "TITLE": "Storefront API",
    "DESCRIPTION": "Product pages served from a CQRS read model.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # From STATIC_URL, never a CDN: the docs load nothing from elsewhere.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery. Without CELERY_BROKER_URL there is no broker: projectors run in
# `manage.py run_projectors` and the command side sends no wake-up calls.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")

# The cache (the API's throttle counts) lives in Redis when there is one, so
# every gunicorn worker and every machine counts together; without Redis it is
# per process. It fails open (kernel/cache.py): Redis down never makes a 500.
REDIS_URL = env.str("REDIS_URL", default=CELERY_BROKER_URL)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "kernel.cache.FailOpenRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "storefront",
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        }
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# A projector task is only a wake-up call: the checkpoint in the read database
# is the truth. Even so, a task is acknowledged after it ran (acks_late) and
# handed back to the queue when its worker dies (reject_on_worker_lost), so a
# killed worker's nudge is not lost. Prefetch 1 keeps one worker from hoarding
# nudges that an idle worker could run; the time limits end a stuck batch,
# whose transaction then rolls back and leaves its checkpoint where it was.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes every database connection before and after
# every task unless this is set (it then closes them every 2 x this many
# tasks): each wake-up would open two connections, a PostgreSQL fork each.
# Connections are kept for CONN_MAX_AGE and checked around each task instead
# (config/celery_app.py).
CELERY_DB_REUSE_MAX = 2**30
# Workers log through LOGGING (JSON lines with a request id in production),
# not through handlers of Celery's own on the root logger.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 300}
# Beat's record of when each entry last ran, under var/ (the schedule itself is below).
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "sweep-projections": {
        "task": "projections.tasks.sweep",
        "schedule": env.float("PROJECTION_SWEEP_SECONDS", default=2.0),
    },
}

# Projections.
PROJECTION_PARTITIONS = env.int("PROJECTION_PARTITIONS", default=4)
PROJECTION_BATCH_SIZE = env.int("PROJECTION_BATCH_SIZE", default=2000)
PROJECTION_MAX_ATTEMPTS = env.int("PROJECTION_MAX_ATTEMPTS", default=5)
PROJECTION_RETRY_BASE_SECONDS = env.float("PROJECTION_RETRY_BASE_SECONDS", default=0.5)
PROJECTION_LEASE_SECONDS = env.float("PROJECTION_LEASE_SECONDS", default=30.0)
# A Celery worker runs one task per product partition and one for the
# sellers' at once: with fewer slots, a partition's wake-up waits behind the
# others' (a task keeps its slot while it lingers; README, "Running on
# PostgreSQL, Redis and Celery"). From the setting, not the read database's
# count: after a resize, set PROJECTION_PARTITIONS to the new count (or give
# the workers `-c N`) and restart them. Each child keeps its own connections
# to both databases between tasks.
CELERY_WORKER_CONCURRENCY = PROJECTION_PARTITIONS + 1
READ_MODEL_CURRENCY = env.str("READ_MODEL_CURRENCY", default="EUR")
LOW_STOCK_THRESHOLD = env.int("LOW_STOCK_THRESHOLD", default=5)
CONSISTENCY_WAIT_SECONDS = env.float("CONSISTENCY_WAIT_SECONDS", default=2.0)
# Requests of one process that may wait for a consistency token at once; the
# others answer at once, marked stale. Keep it below the threads per process.
CONSISTENCY_MAX_WAITERS = env.int("CONSISTENCY_MAX_WAITERS", default=2)
# A token older than this is checked once and never waited for.
CONSISTENCY_TOKEN_MAX_AGE_SECONDS = env.float("CONSISTENCY_TOKEN_MAX_AGE_SECONDS", default=300.0)
HEALTH_MAX_LAG_SECONDS = env.float("HEALTH_MAX_LAG_SECONDS", default=60.0)
# An event writer's transaction open longer than this holds every projector
# back: /healthz and projection_status report it as a stalled reader.
PROJECTION_STALL_SECONDS = env.float("PROJECTION_STALL_SECONDS", default=10.0)
# /healthz gives its reasons and figures to staff and to callers from these
# networks (CIDRs; the address by TRUSTED_PROXY_COUNT's rule); others get the
# status alone. Its lag query counts at most HEALTH_LAG_COUNT_CAP events and
# runs at most once per HEALTH_LAG_CACHE_SECONDS in a process.
HEALTH_INTERNAL_NETWORKS: list[str] = env.list(
    "HEALTH_INTERNAL_NETWORKS", default=["127.0.0.0/8", "::1/128"]
)
HEALTH_LAG_COUNT_CAP = env.int("HEALTH_LAG_COUNT_CAP", default=10_000)
HEALTH_LAG_CACHE_SECONDS = env.float("HEALTH_LAG_CACHE_SECONDS", default=1.0)

# Log lines name the request they were written for (request_id); LOG_FORMAT=json
# (production's default) writes one JSON object per line, "text" plain lines.
LOG_FORMATS = ("text", "json")


def logging_config(log_format: str) -> dict[str, Any]:
    """Django's LOGGING for ``log_format``: "json" lines or plain "text"."""
    if log_format not in LOG_FORMATS:
        raise ImproperlyConfigured(f"LOG_FORMAT must be one of {LOG_FORMATS}, not {log_format!r}.")
    log_level = env.str("LOG_LEVEL", default="WARNING")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": "config.logs.RequestIdFilter"},
            "security_thinned": {"()": "config.logs.SecurityRefusalsThinned"},
        },
        "formatters": {
            "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
            "json": {"()": "config.logs.JsonLines"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["request_id", "security_thinned"],
                "formatter": log_format,
            }
        },
        "root": {"handlers": ["console"], "level": log_level},
        "loggers": {
            "projections": {"level": env.str("PROJECTIONS_LOG_LEVEL", default="INFO")},
            # Django's own default sends its records to a console handler of its
            # own when DEBUG is on, and they reach ours too: each line twice.
            "django": {"handlers": [], "level": log_level, "propagate": True},
            # Each answer is in the server's access log already; a client's 4xx
            # logged again here would let a flood of bad requests flood the log.
            # Server errors (5xx) still are. The security logger's 400s and 403s
            # (a forged Host, a missing CSRF token) are thinned to one line a
            # minute of each kind (config.logs.SecurityRefusalsThinned).
            "django.request": {"level": env.str("REQUEST_LOG_LEVEL", default="ERROR")},
        },
    }


LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING = logging_config(LOG_FORMAT)

# /metrics (Prometheus): open to callers from METRICS_ALLOWED_NETWORKS (CIDRs;
# the address by TRUSTED_PROXY_COUNT's rule) and to any caller that sends
# "Authorization: Bearer <METRICS_TOKEN>" when that is set; others get 404.
# The projections' figures behind it are read at most once per
# METRICS_CACHE_SECONDS in a process. Set PROMETHEUS_MULTIPROC_DIR (an empty
# folder shared by a host's gunicorn workers, Celery and run_projectors) so one
# scrape sums every process's counters.
METRICS_ALLOWED_NETWORKS: list[str] = env.list(
    "METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"]
)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_CACHE_SECONDS = env.float("METRICS_CACHE_SECONDS", default=1.0)
