"""Set up and run Storefront on its embedded default: two SQLite files under
var/, no broker, the projector loop beside the web server, and demo data.

    make run            # or: .venv/bin/python scripts/run_local.py [--port 8000]
"""

import argparse
import os
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
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

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
        f"Ctrl-C stops the web server and the projector loop.\n",
        flush=True,
    )
    try:
        manage("runserver", f"127.0.0.1:{options.port}", "--noreload", check=False)
    except KeyboardInterrupt:
        pass
    finally:
        projectors.send_signal(signal.SIGTERM)
        projectors.wait(30)


if __name__ == "__main__":
    main()
