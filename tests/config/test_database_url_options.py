"""Options in DATABASE_URL (``?sslmode=...&connect_timeout=...&application_name=...``)
reach every connection: Django's, pooled or not, and the LISTEN connections of
the projector loop and of the readers waiting for a consistency token."""

import json
import os
import subprocess
import sys

import pytest

from tests.projections.processes import ROOT, database_url

# Run with the settings as a process reads them from its environment.
REPORT_CONNECTIONS = """
import json

import django

django.setup()
import psycopg
from django.db import connections

from queries import consistency
from eventstore.eventlog import LogPosition
from eventstore.listen import listening_connection

OPTIONS = ("connect_timeout", "sslmode")
SERVER_SAYS = "SELECT current_setting('application_name')"
seen = {}
for alias in ("default", "read"):
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(SERVER_SAYS)
        application_name = cursor.fetchone()[0]
    parameters = connection.connection.info.get_parameters()
    seen[alias] = {
        "application_name": application_name,
        **{option: parameters.get(option) for option in OPTIONS},
        "pooled": connection.pool is not None,
    }
listeners = {
    "events listener": listening_connection("default", "storefront_events"),
    "checkpoint waiter": psycopg.connect(**consistency._listener_params(), autocommit=True),
}
for name, listener in listeners.items():
    parameters = listener.info.get_parameters()
    seen[name] = {
        "application_name": listener.execute(SERVER_SAYS).fetchone()[0],
        **{option: parameters.get(option) for option in OPTIONS},
    }
    listener.close()
# A reader's wait for a position nobody applied: LISTEN on its own connection.
seen["waited"] = consistency.wait_for(LogPosition(1, 1), timeout=0.2)
# That wait started the process's checkpoint watch, on a connection of its own.
with connections["read"].cursor() as cursor:
    cursor.execute(
        "SELECT application_name FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE %s",
        ["%checkpoint-watch"],
    )
    seen["watch"] = [row[0] for row in cursor.fetchall()]
consistency.watch.stop()
print(json.dumps(seen))
"""


@pytest.mark.postgres
@pytest.mark.django_db(databases=["default", "read"])
@pytest.mark.parametrize("pool", ["false", "true"], ids=["persistent", "pooled"])
def test_the_database_url_options_reach_every_connection(pool):
    options = "sslmode=disable&connect_timeout=7&application_name=storefront-{}"
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "READ_DATABASE_"))
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=f"{database_url('default')}?{options.format('write')}",
        READ_DATABASE_URL=f"{database_url('read')}?{options.format('read')}",
        DATABASE_POOL=pool,
    )
    done = subprocess.run(
        [sys.executable, "-c", REPORT_CONNECTIONS],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    expected = {"connect_timeout": "7", "sslmode": "disable"}
    assert seen["default"] == {
        "application_name": "storefront-write",
        **expected,
        "pooled": pool == "true",
    }
    assert seen["read"] == {
        "application_name": "storefront-read",
        **expected,
        "pooled": pool == "true",
    }
    assert seen["events listener"] == {"application_name": "storefront-write", **expected}
    assert seen["checkpoint waiter"] == {"application_name": "storefront-read", **expected}
    assert seen["waited"] is False
    assert seen["watch"] == ["storefront-read:storefront-checkpoint-watch"]
