"""System checks for settings that would make projections wrong or slow."""

import ipaddress
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from eventstore.databases import READ_DB, WRITE_DB


def _same_database(first: dict[str, Any], second: dict[str, Any]) -> bool:
    keys = ("ENGINE", "NAME", "HOST", "PORT")
    return all(str(first.get(key, "")) == str(second.get(key, "")) for key in keys)


@register()
def check_databases(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    databases = settings.DATABASES
    if READ_DB not in databases:
        return [Error("No 'read' database alias.", id="storefront.E001")]
    if _same_database(databases[WRITE_DB], databases[READ_DB]):
        messages.append(
            Error(
                "The 'read' and 'default' aliases point to the same database.",
                hint="Set READ_DATABASE_URL to a database of its own.",
                id="storefront.E002",
            )
        )
    engines = {databases[WRITE_DB]["ENGINE"], databases[READ_DB]["ENGINE"]}
    if len(engines) > 1:
        messages.append(
            Warning(
                "The write and read databases use different engines.",
                hint="Run both on PostgreSQL, or both on the SQLite default.",
                id="storefront.W001",
            )
        )
    return messages


@register()
def check_projection_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not 1 <= settings.PROJECTION_PARTITIONS <= 256:
        messages.append(Error("PROJECTION_PARTITIONS must be from 1 to 256.", id="storefront.E003"))
    if settings.PROJECTION_BATCH_SIZE < 1:
        messages.append(Error("PROJECTION_BATCH_SIZE must be at least 1.", id="storefront.E004"))
    if settings.PROJECTION_MAX_ATTEMPTS < 1:
        messages.append(Error("PROJECTION_MAX_ATTEMPTS must be at least 1.", id="storefront.E005"))
    return messages


@register()
def check_health_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    messages.extend(
        _networks_errors("HEALTH_INTERNAL_NETWORKS", settings.HEALTH_INTERNAL_NETWORKS, "E006")
    )
    messages.extend(
        _networks_errors("METRICS_ALLOWED_NETWORKS", settings.METRICS_ALLOWED_NETWORKS, "E008")
    )
    if settings.HEALTH_LAG_COUNT_CAP < 1:
        messages.append(Error("HEALTH_LAG_COUNT_CAP must be at least 1.", id="storefront.E007"))
    return messages


def _networks_errors(setting: str, cidrs: list[str], number: str) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            messages.append(
                Error(
                    f"{setting}: {cidr!r} is not a network.",
                    hint="Give CIDRs such as 10.0.0.0/8 or fd00::/8, separated by commas.",
                    id=f"storefront.{number}",
                )
            )
    return messages
