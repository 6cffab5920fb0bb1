"""Development settings: the embedded default, debug on, a throwaway key."""

from config.settings.base import *  # noqa: F403
from config.settings.base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="local-development-only-not-a-secret")
# The unsafe defaults above that the environment left in place: runserver
# serves them on a loopback address only (catalog's runserver command).
DEVELOPMENT_DEFAULTS = [
    setting
    for setting, variable in (("DEBUG", "DJANGO_DEBUG"), ("SECRET_KEY", "DJANGO_SECRET_KEY"))
    if variable not in env
]
