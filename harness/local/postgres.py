"""An embedded PostgreSQL for the local mode on Airflow 2.11, which refuses SQLite beside a parallel executor.

Run with the Airflow 2.11 virtualenv's python (``pgserver`` and ``psycopg2-binary`` are in
``requirements/airflow-2.11.lock``, not in the dev lock)::

    .compat/airflow-2.11/bin/python -m harness.local.postgres --pgdata DIR --url-file FILE

It starts PostgreSQL from the ``pgserver`` wheel (its own binaries; a Unix socket in DIR, no TCP port, trust
authentication for local connections only), creates the database ``airflow``, writes Airflow's SQLAlchemy URL to
FILE (owner-only) and keeps the server until SIGTERM or SIGINT, then stops it. As root, pgserver runs the server as
a system user ``pgserver`` it creates (PostgreSQL refuses to run as root) and makes the folders above DIR
traversable for it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

DATABASE = "airflow"
# Airflow's driver for PostgreSQL; pgserver's URL names no driver.
DRIVER_SCHEME = "postgresql+psycopg2://"


def sqlalchemy_url(uri: str) -> str:
    """Turn pgserver's ``postgresql://`` URI into the SQLAlchemy URL Airflow takes."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme.startswith("postgres"):
        raise ValueError("pgserver returned a URI that is not PostgreSQL's")
    return DRIVER_SCHEME + rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.local.postgres")
    parser.add_argument("--pgdata", type=Path, required=True)
    parser.add_argument("--url-file", type=Path, required=True)
    args = parser.parse_args(argv)

    import pgserver  # type: ignore[import-not-found,unused-ignore]  # only in the Airflow 2.11 virtualenv

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    args.pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode "stop": pgserver stops the server when this process exits (atexit), also after an error.
    server = pgserver.get_server(args.pgdata, cleanup_mode="stop")
    if DATABASE not in server.psql("SELECT datname FROM pg_database;"):
        server.psql(f"CREATE DATABASE {DATABASE};")
    url = sqlalchemy_url(server.get_uri(DATABASE))
    # The URL holds no password (trust over a socket only this machine reaches), but it is the database's
    # address: written for the stack (whole, then renamed: the stack waits for the file), never printed.
    pending = args.url_file.with_suffix(".pending")
    pending.touch(mode=0o600)
    pending.write_text(url)
    pending.replace(args.url_file)
    print(f"PostgreSQL running for {args.pgdata}", flush=True)
    while not stop.wait(1.0):
        pass
    print("stopping PostgreSQL", flush=True)
    server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
