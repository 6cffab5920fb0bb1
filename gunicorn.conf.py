"""gunicorn's settings for Storefront (read from the working folder by default).

Metrics: every worker writes its counters and histograms to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them
(``prometheus-client``'s multiprocess mode), so a scrape that lands on any
worker sees them all. Without the variable this server makes a folder of its
own for its workers (under ``TMPDIR``; it removes it when it stops, but
not if it is killed with SIGKILL); give the host's Celery
workers and ``run_projectors`` the same folder, set before all of them
start, to have their counters in the same scrape. Empty a shared folder when
the host's processes start, never while they run. A worker that exits is
marked dead there, so its live gauges stop counting; its counters keep
their totals.

The access log (``--access-logfile -``) ends with the answer's
``X-Request-ID``, the id on the request's log lines and events.
"""

import os
import shutil
import tempfile
from typing import Any

# Settings operators usually pass on the command line keep their defaults;
# the command line wins over this file.
wsgi_app = "config.wsgi:application"
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'
)

# Read in the server's own process before it starts a worker: they inherit it.
# The file is read again on a reload (HUP): the folder it made is named in
# the environment, so the server still knows to remove it when it stops.
OWN_METRICS_DIR = "STOREFRONT_OWN_METRICS_DIR"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ[OWN_METRICS_DIR] = tempfile.mkdtemp(prefix="storefront-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[OWN_METRICS_DIR]


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    own = os.environ.get(OWN_METRICS_DIR)
    if own and own == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(own, ignore_errors=True)
