"""Misconfigurations that would make projections wrong are reported by `manage.py check`."""

import copy

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from projections import checks


def ids(messages):
    return [message.id for message in messages]


@pytest.fixture
def databases(monkeypatch):
    """A copy of DATABASES the test may break; connections keep the real one."""
    broken = copy.deepcopy(settings.DATABASES)
    monkeypatch.setattr(settings, "DATABASES", broken)
    return broken


def test_the_test_configuration_passes():
    assert checks.check_databases(None) == []
    assert checks.check_projection_settings(None) == []
    assert checks.check_health_settings(None) == []


@pytest.mark.django_db(databases=["default", "read"])  # model checks ask about JSON support
def test_read_and_write_on_the_same_database_is_an_error(databases):
    databases["read"] = dict(databases["default"])

    assert ids(checks.check_databases(None)) == ["storefront.E002"]
    with pytest.raises(SystemCheckError, match=r"storefront\.E002"):
        call_command("check")


def test_a_missing_read_alias_is_an_error(databases):
    del databases["read"]

    assert ids(checks.check_databases(None)) == ["storefront.E001"]


def test_different_engines_are_a_warning(databases):
    other = "sqlite3" if databases["default"]["ENGINE"].endswith("postgresql") else "postgresql"
    databases["read"] = {**databases["read"], "ENGINE": f"django.db.backends.{other}"}

    assert ids(checks.check_databases(None)) == ["storefront.W001"]


@pytest.mark.django_db(databases=["default", "read"])
@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("PROJECTION_PARTITIONS", 0, "storefront.E003"),
        ("PROJECTION_PARTITIONS", 257, "storefront.E003"),
        ("PROJECTION_BATCH_SIZE", 0, "storefront.E004"),
        ("PROJECTION_MAX_ATTEMPTS", 0, "storefront.E005"),
    ],
)
def test_impossible_projection_settings_are_errors(monkeypatch, setting, value, check_id):
    monkeypatch.setattr(settings, setting, value)

    assert check_id in ids(checks.check_projection_settings(None))
    with pytest.raises(SystemCheckError, match=check_id):
        call_command("check")


@pytest.mark.django_db(databases=["default", "read"])
@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("HEALTH_INTERNAL_NETWORKS", ["10.0.0.0/8", "not-a-network"], "storefront.E006"),
        ("HEALTH_INTERNAL_NETWORKS", ["10.0.0.0/33"], "storefront.E006"),
        ("HEALTH_LAG_COUNT_CAP", 0, "storefront.E007"),
        ("METRICS_ALLOWED_NETWORKS", ["127.0.0.1/8", "localhost"], "storefront.E008"),
    ],
)
def test_impossible_health_settings_are_errors(monkeypatch, setting, value, check_id):
    monkeypatch.setattr(settings, setting, value)

    assert ids(checks.check_health_settings(None)) == [check_id]
    with pytest.raises(SystemCheckError, match=check_id):
        call_command("check")
