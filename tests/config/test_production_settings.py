"""Production settings refuse to start without a secret and pass `check --deploy`."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_with_production_settings(*args, tmp_path, **env):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        STOREFRONT_VAR_DIR=str(tmp_path),
        **env,
    )
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path):
    started = run_with_production_settings("-c", "import django; django.setup()", tmp_path=tmp_path)

    assert started.returncode != 0
    assert "ImproperlyConfigured" in started.stderr
    assert "DJANGO_SECRET_KEY" in started.stderr


@pytest.mark.slow
def test_production_settings_pass_the_deployment_checks(tmp_path):
    checked = run_with_production_settings(
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        tmp_path=tmp_path,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="shop.example.com",
    )

    assert checked.returncode == 0, checked.stderr
    assert "no issues" in checked.stdout
