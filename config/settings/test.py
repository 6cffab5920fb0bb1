"""Test settings: the same databases as the environment says, a fast hasher."""

from config.settings.base import *  # noqa: F403
from config.settings.base import REST_FRAMEWORK, env

DEBUG = False
SECRET_KEY = "test-only-not-a-secret"  # noqa: S105
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests that talk to a broker start real workers; nothing runs eagerly here.
CELERY_TASK_ALWAYS_EAGER = False
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        "reviews": env.str("REVIEW_THROTTLE_RATE", default="5/min"),
        "commands": env.str("COMMAND_THROTTLE_RATE", default="1000/min"),
        "tokens": env.str("TOKEN_THROTTLE_RATE", default="10/min"),
    },
}
PROJECTION_RETRY_BASE_SECONDS = 0.0
# Counted on every query, as in production, but high enough that only the
# tests of the limit itself meet it.
QUERY_THROTTLE_RATE = env.str("QUERY_THROTTLE_RATE", default="100000/s")
CONSISTENCY_WAIT_SECONDS = env.float("CONSISTENCY_WAIT_SECONDS", default=2.0)
# Fewer failed sign-ins before a lockout, so the tests reach it quickly.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=3)
