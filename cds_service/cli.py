"""`cds-service serve`: run the service with uvicorn (no external server needed)."""

from __future__ import annotations

import argparse
import os
import tempfile

import uvicorn


def _migrate_once_for_all_workers() -> None:
    """Several workers would each migrate the same database at start-up (SQLite has no lock to
    serialise them): do it once here, and tell the workers not to."""
    from cds_service.storage.settings import StorageSettings

    if StorageSettings().migrate_on_startup:
        from cds_service.storage.migrations import upgrade_database

        upgrade_database()
        os.environ["CDS_MIGRATE_ON_STARTUP"] = "false"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cds-service", description="MS back pain CDS Hooks 2.0 service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--graceful-seconds", type=int, default=20, help="on SIGTERM, how long in-flight calls may finish (default 20)"
    )
    serve.add_argument("--log-level", default="info")
    sub.add_parser("migrate", help="create or upgrade the database schema (CDS_DATABASE_URL), then exit")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        from cds_service.storage.migrations import upgrade_database

        upgrade_database()
        return
    if args.command == "serve":
        if args.workers > 1:
            _migrate_once_for_all_workers()
        if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # /metrics then adds up every worker (each worker writes its samples here).
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cds-metrics-")
        uvicorn.run(
            "cds_service.app:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=args.graceful_seconds,
        )


if __name__ == "__main__":
    main()
