"""Set up and run Storefront on its embedded default: two SQLite files under
var/, no broker, the projector loop beside the web server, and demo data.

    make run            # or: .venv/bin/python scripts/run_local.py [--port 8000]
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=check)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-demo", action="store_true", help="Do not load demo data.")
    options = parser.parse_args()
    # SIGTERM (from `kill`, or from make, which passes it on to this process)
    # stops whatever runs as Ctrl-C does: a step's child, or both servers.
    signal.signal(signal.SIGTERM, stop_on_signal)
    # Ctrl-C too, even when this started with SIGINT ignored (a background
    # job of a non-interactive shell: Python then leaves it ignored, and the
    # web server started here would inherit that and ignore it as well).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

    # One metrics folder for the server and the projector loop, emptied here
    # (nothing else shares it): /metrics sums both.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics = Path(os.environ.get("STOREFRONT_VAR_DIR", ROOT / "var")) / "metrics"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)

    manage("migrate_all")
    if not options.no_demo:
        # --if-empty keeps the data of an earlier run.
        manage("seed_demo", "--if-empty", "--with-admin")
    manage("run_projectors", "--once")

    projectors = subprocess.Popen([sys.executable, "manage.py", "run_projectors"], cwd=ROOT)
    url = f"http://127.0.0.1:{options.port}"
    print(
        f"\nStorefront is running on the embedded default (SQLite under var/).\n"
        f"  Products:  {url}/products/\n"
        f"  API docs:  {url}/api/docs/\n"
        f"  Admin:     {url}/admin/   (demo login: admin / admin)\n"
        f"  Health:    {url}/healthz\n"
        f"  Metrics:   {url}/metrics\n"
        f"Ctrl-C (or SIGTERM) stops the web server and the projector loop.\n",
        flush=True,
    )
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{options.port}", "--noreload"],
        cwd=ROOT,
    )
    try:
        server.wait()
    except (KeyboardInterrupt, Stopped):
        pass
    finally:
        stop(server, projectors)


class Stopped(Exception):
    """SIGTERM arrived."""


def stop_on_signal(signum: int, frame: object) -> None:
    raise Stopped


def stop(*processes: subprocess.Popen[bytes]) -> None:
    """SIGTERM to each child still running, then wait; SIGKILL after 30 s."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C cannot cut this short
        signal.signal(signum, signal.SIG_IGN)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            print(f"{process.args!r} did not stop within 30 s; killing it.", flush=True)
            process.kill()
            process.wait()


if __name__ == "__main__":
    try:
        main()
    except Stopped:
        sys.exit(128 + signal.SIGTERM)
