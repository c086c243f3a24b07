"""`cds-service serve`: run the service with uvicorn (no external server needed).

Slow or idle clients are bounded here: every connection must send a complete request head within
`--header-timeout-seconds` (protocol/connections.py), an idle keep-alive connection is closed after
`--keep-alive-seconds`, request heads are limited to `--max-header-bytes` (h11), the process may hold
at most `--max-connections` connections (more get 503 from uvicorn), and its file-descriptor limit
is raised to the hard limit so that many idle connections cannot starve `accept()`. Bodies are
bounded by CDS_BODY_READ_TIMEOUT_SECONDS and in-flight calls by CDS_MAX_IN_FLIGHT_CALLS (app.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import tempfile
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from cds_service import __version__
from cds_service.protocol.connections import DEFAULT_HEADER_READ_TIMEOUT_SECONDS, BoundedH11Protocol

# A client JWT may be 16 KiB (security/jwt_auth.py MAX_TOKEN_CHARS): h11's default of 16 KiB for a
# whole request head would refuse it.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_CONNECTIONS = 2000


class ServeConfig(uvicorn.Config):
    """uvicorn's Config, with a listening socket whose accepted connections get TCP_NODELAY.

    With `--workers N` uvicorn binds the socket itself (`socket.socket(family)`, protocol 0) and
    hands it to the workers. Accepted sockets inherit that protocol number, and asyncio sets
    TCP_NODELAY only on sockets that say IPPROTO_TCP: Nagle's algorithm then holds the body of
    every keep-alive response until the client's delayed ACK, about 40 ms on Linux
    (uvicorn issue #3149). One worker is not affected: asyncio binds that socket itself.

    `header_read_timeout`: read by `BoundedH11Protocol` (the protocol class it installs).
    """

    def __init__(self, *args: Any, header_read_timeout: float = DEFAULT_HEADER_READ_TIMEOUT_SECONDS, **kwargs: Any):
        kwargs.setdefault("http", BoundedH11Protocol)
        kwargs.setdefault("h11_max_incomplete_event_size", DEFAULT_MAX_HEADER_BYTES)
        super().__init__(*args, **kwargs)
        self.header_read_timeout = header_read_timeout

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto != socket.IPPROTO_TCP:
            sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
            sock.set_inheritable(True)
        return sock


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (inherited by the workers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def check_configuration() -> str | None:
    """Read every settings class once; the message of the first configuration error, or None."""
    from cds_service.security.settings import AuthSettings
    from cds_service.settings import ConfigurationError, Settings, load_settings
    from cds_service.storage.settings import StorageSettings

    try:
        for cls in (Settings, StorageSettings, AuthSettings):
            load_settings(cls)
    except ConfigurationError as exc:
        return str(exc)
    return None


def serve(config: ServeConfig) -> None:
    """Run `config` as `uvicorn.run` would: one process, or a supervisor of `config.workers` workers."""
    raise_open_file_limit()
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()


def _migrate_once_for_all_workers() -> None:
    """Several workers would each migrate the same database at start-up (SQLite has no lock to
    serialise them): do it once here, and tell the workers not to."""
    from cds_service.settings import load_settings
    from cds_service.storage.settings import StorageSettings

    if load_settings(StorageSettings).migrate_on_startup:
        from cds_service.storage.migrations import upgrade_database

        upgrade_database()
        os.environ["CDS_MIGRATE_ON_STARTUP"] = "false"


def _add_report_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report", help="write the governance report (one self-contained HTML file) from CDS_DATABASE_URL"
    )
    report.add_argument("--since", default="30d", help='start: "30d", "8w" or a date (default 30d)')
    report.add_argument("--until", default=None, help="end: a date (that day included) or a date-time (default now)")
    report.add_argument("--out", required=True, help="the HTML file to write")
    report.add_argument("--json", dest="json_out", default=None, help="also write the figures as JSON here")


def _report(args: argparse.Namespace) -> None:
    """`cds-service report`: the same page as GET /admin/report, written to a file."""
    import asyncio
    import datetime as dt
    import json
    from pathlib import Path

    from cds_service.cards.content import load_card_content
    from cds_service.report import build_report, parse_period, publish, render_html
    from cds_service.report.period import PeriodError
    from cds_service.report.publish import offered_reasons
    from cds_service.settings import Settings
    from cds_service.storage.db import open_storage

    try:
        period = parse_period(args.since, args.until, dt.datetime.now(dt.UTC))
    except PeriodError as exc:
        raise SystemExit(f"cds-service report: {exc}") from None

    async def build() -> None:
        storage = await open_storage()
        try:
            stats = await build_report(storage, period)
        finally:
            await storage.close()
        public = publish(stats, offered_reasons(load_card_content(Settings().cards_dir)))
        Path(args.out).write_text(render_html(public), encoding="utf-8")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(public.to_json(), indent=1), encoding="utf-8")

    asyncio.run(build())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cds-service", description="MS back pain CDS Hooks 2.0 service")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the HTTP service")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve_cmd.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve_cmd.add_argument(
        "--graceful-seconds", type=int, default=20, help="on SIGTERM, how long in-flight calls may finish (default 20)"
    )
    serve_cmd.add_argument(
        "--keep-alive-seconds",
        type=int,
        default=5,
        help="close idle keep-alive connections after this long (default 5; behind a load balancer, "
        "set it longer than the balancer's idle timeout)",
    )
    serve_cmd.add_argument(
        "--header-timeout-seconds",
        type=float,
        default=DEFAULT_HEADER_READ_TIMEOUT_SECONDS,
        help="close a connection that has not sent a complete request head this long after opening, or after "
        "its previous response (default %(default)s)",
    )
    serve_cmd.add_argument(
        "--max-header-bytes",
        type=int,
        default=DEFAULT_MAX_HEADER_BYTES,
        help="largest request head accepted (default %(default)s)",
    )
    serve_cmd.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="open connections per worker beyond which requests get 503 (default %(default)s)",
    )
    serve_cmd.add_argument("--log-level", default="info")
    serve_cmd.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no uvicorn access log (the service logs one JSON line per hook call anyway)",
    )
    sub.add_parser("migrate", help="create or upgrade the database schema (CDS_DATABASE_URL), then exit")
    _add_report_command(sub)
    args = parser.parse_args(argv)
    problem = check_configuration()
    if problem is not None:  # names the CDS_* variable, never its value
        print(f"cds-service: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if args.command == "report":
        _report(args)
        return
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
        serve(
            ServeConfig(
                "cds_service.app:app",
                host=args.host,
                port=args.port,
                workers=args.workers,
                log_level=args.log_level,
                access_log=args.access_log,
                timeout_keep_alive=args.keep_alive_seconds,
                timeout_graceful_shutdown=args.graceful_seconds,
                header_read_timeout=args.header_timeout_seconds,
                h11_max_incomplete_event_size=args.max_header_bytes,
                limit_concurrency=args.max_connections,
            )
        )


if __name__ == "__main__":
    main()
