"""``runserver`` that will not serve the development defaults beyond this machine.

``manage.py`` falls back to the local settings: DEBUG on and a secret key
that is in the repository. On a loopback address only the developer reaches
them; on any other, anyone on the network could read tracebacks with the
settings in them and forge sessions. So this command refuses a non-loopback
address while any of those defaults is left (``DEVELOPMENT_DEFAULTS``, set
by ``config.settings.local``), until the environment replaces each one on
purpose. It extends staticfiles' ``runserver``, which ``INSTALLED_APPS``
lists after this app for that reason.
"""

import ipaddress
import socket
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import Command as StaticFilesRunserver
from django.core.management.base import CommandError

ENVIRONMENT_OF = {"DEBUG": "DJANGO_DEBUG", "SECRET_KEY": "DJANGO_SECRET_KEY"}


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP address or a host name) reaches only this machine."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        pass
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(address, None)}
    except OSError:
        return False
    return bool(resolved) and all(ipaddress.ip_address(ip).is_loopback for ip in resolved)


def check_address(address: str) -> None:
    """Raise CommandError if serving on ``address`` would expose a development default."""
    left = list(getattr(settings, "DEVELOPMENT_DEFAULTS", ()))
    if not left or is_loopback(address):
        return
    variables = " and ".join(ENVIRONMENT_OF.get(name, name) for name in left)
    raise CommandError(
        f"Refusing to serve on {address}: the local settings' development defaults "
        f"({', '.join(left)}: DEBUG on, a secret key everyone knows) would be open to "
        f"the network. Serve on 127.0.0.1, or set {variables} (and DJANGO_ALLOWED_HOSTS) "
        "in the environment on purpose; in production, run gunicorn with "
        "config.settings.production."
    )


class Command(StaticFilesRunserver):
    addr: str  # set by handle() from the command line

    def run(self, **options: Any) -> None:
        check_address(self.addr)
        super().run(**options)
