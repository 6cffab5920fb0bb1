"""The alert rules and the dashboard in ``ops/`` use only metrics that
``/metrics`` exports, and are well formed (``promtool check rules`` too,
where Debian's prometheus package is installed)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "ops" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "storefront.json"
METRIC = re.compile(r"\bstorefront_[a-z_]+\b")
SELECTOR = re.compile(r"\bstorefront_[a-z_]+\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


@pytest.fixture
def exported(client) -> dict[str, set[str]]:
    """Every sample name /metrics gives, with the label names its samples
    carry, after a command, a request and a batch gave each a sample."""
    from decimal import Decimal

    from catalog.services import product_change_price
    from projections.registry import project_all
    from tests import factories

    product = factories.product()
    product_change_price(product_id=product.pk, price=Decimal("2.00"))
    project_all()
    client.get(f"/api/products/{product.pk}/")
    text = client.get("/metrics").content.decode()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        labels = {key for sample in family.samples for key in sample.labels} | {"le"}
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = labels
    return names


def used_exprs() -> list[str]:
    return [rule["expr"] for rule in alert_rules()] + dashboard_exprs()


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
def test_every_metric_and_label_the_alerts_and_the_dashboard_use_is_exported(exported):
    used = {name for expr in used_exprs() for name in METRIC.findall(expr)}
    assert len(used) >= 12
    assert used - set(exported) == set()
    for expr in used_exprs():
        known = set().union(*(exported[name] for name in METRIC.findall(expr)))
        matched = {
            key
            for matchers in SELECTOR.findall(expr)
            for key in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers)
        }
        grouped = {
            key.strip() for keys in GROUPING.findall(expr) for key in keys.split(",") if key.strip()
        }
        assert matched | grouped <= known, (expr, (matched | grouped) - known)


def test_the_alerts_cover_lag_parked_halted_stalled_and_timeouts():
    rules = alert_rules()
    for rule in rules:
        assert rule["alert"].startswith("Storefront")
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
    used = " ".join(rule["expr"] for rule in rules)
    for metric in (
        "storefront_projection_seconds_behind",
        "storefront_projection_parked_events",
        "storefront_projection_halted",
        "storefront_projection_stalled",
        'storefront_consistency_waits_total{outcome="timeout"}',
    ):
        assert metric in used


def test_every_alert_has_a_unit_test_in_which_it_fires():
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert firing == {rule["alert"] for rule in alert_rules()}


def test_the_dashboard_is_importable_grafana_json():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "storefront"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_they_fire_as_their_tests_say():
    for command in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERTS_TEST)]):
        checked = subprocess.run(
            ["promtool", *command], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
