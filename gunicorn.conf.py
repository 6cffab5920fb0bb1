"""gunicorn's settings for Storefront (read from the working folder by default).

Metrics: with ``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its
counters and histograms to files in that folder and ``/metrics`` sums them
(``prometheus-client``'s multiprocess mode). A worker that exits is marked
dead there, so its live gauges stop counting; its counters keep their totals.
Empty the folder when the whole deployment starts (a tmpfs, or systemd's
``RuntimeDirectory``), never while processes that share it are running.
"""

import os
from typing import Any

# Settings operators usually pass on the command line keep their defaults;
# the command line wins over this file.
wsgi_app = "config.wsgi:application"


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
