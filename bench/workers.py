#!/usr/bin/env python3
"""Throughput of `cds-service serve --workers 1` beside `--workers 2` (or any counts), one command:

    .venv/bin/python bench/workers.py                      # 100 resources, 4 connections, ~1 minute
    CDS_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench \\
        .venv/bin/python bench/workers.py --workers 1 2     # against PostgreSQL (the database must exist)

Each worker count runs as its own `cds-service serve` (the command operators run, so the same
listening socket and worker supervisor), with its own fresh SQLite file unless CDS_DATABASE_URL is
set. They are driven in alternating A/B rounds by wrk (bench/wrk_post.lua) with --connections
keep-alive connections in flight. Per count: req/s (median of rounds), client p50/p99, how the CPU
time split between the worker processes (a balance check: the kernel, not uvicorn, spreads the
connections over the workers), and the ratio to the first count, as the median of per-round ratios.
The table goes to bench/results/workers.md.

On a 2-core machine wrk and the workers share the cores, so two workers cannot reach 2x: the
report prints the load generator's CPU share beside the figures, and that of every other process
(from /proc/stat: with PostgreSQL on the same machine, mostly its server processes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import generate  # noqa: E402
import run as bench  # noqa: E402  (bench/run.py: servers, load generator, /proc helpers)


class ServeServer(bench.Server):
    """A `cds-service serve --workers N` process (bench.Server starts plain uvicorn)."""

    @property
    def cmd(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "cds_service.cli",
            "serve",
            "--workers",
            str(self.workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]

    def worker_pids(self) -> list[int]:
        """The processes that serve requests (with N > 1 the supervisor and multiprocessing's
        resource tracker are left out: they hold no listening loop)."""
        pids = bench.descendants(self.proc.pid) if self.proc else []
        if self.workers == 1:
            return pids[-1:] or [self.proc.pid]
        workers = []
        for pid in pids:
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    workers.append(pid)
            except OSError:
                pass
        return workers


def database_env(name: str, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env["CDS_AUTH_MODE"] = "disabled"
    if "CDS_DATABASE_URL" not in env:
        path = bench.RESULTS / f"workers-{name}.db"
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        env["CDS_DATABASE_URL"] = f"sqlite+aiosqlite:///{path}"
    subprocess.run(
        [sys.executable, "-m", "cds_service.cli", "migrate"], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL
    )
    env["CDS_MIGRATE_ON_STARTUP"] = "false"
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=100, choices=generate.DEFAULT_SIZES, help="prefetch size (default 100)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare (default 1 2)")
    p.add_argument("--connections", type=int, default=4, help="keep-alive connections in flight (default 4)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    p.add_argument("--out", type=Path, default=bench.RESULTS / "workers.md")
    args = p.parse_args(argv)
    loadgen = bench.pick_loadgen("auto")

    anchor = dt.datetime.now(dt.UTC).date()
    manifest_path = generate.DATA_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if (
        manifest.get("anchor") != anchor.isoformat()
        or not generate.file_for(args.size).exists()
        or manifest.get("generator_version") != generate.GENERATOR_VERSION
    ):
        generate.generate(list(generate.DEFAULT_SIZES), generate.DEFAULT_SEED, anchor)
    body_path = generate.file_for(args.size)
    body = body_path.read_bytes()

    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    base_env = dict(os.environ)
    servers = {
        n: ServeServer(
            f"{n}w",
            "cds-service",
            bench.free_port(),
            [],
            database_env(f"{n}w", base_env),
            bench.RESULTS / "logs" / f"serve-{n}w.log",
            workers=n,
        )
        for n in args.workers
    }
    rates: dict[int, list[float]] = {n: [] for n in args.workers}
    samples: dict[int, list[int]] = {n: [] for n in args.workers}
    cpu_split: dict[int, list[list[float]]] = {n: [] for n in args.workers}
    loadgen_share: dict[int, list[float]] = {n: [] for n in args.workers}
    other_share: dict[int, list[float]] = {n: [] for n in args.workers}  # the database server, mostly
    try:
        for s in servers.values():
            s.start()
        for s in servers.values():
            s.wait_ready()
            for _ in range(20 * s.workers):  # warm every worker (fresh connections land on any of them)
                status, _, _ = bench.post_once(s.port, body, {})
                if status != 200:
                    raise SystemExit(f"{s.name}: HTTP {status}; see {s.log_path}")
        for r in range(args.rounds):
            order = args.workers if r % 2 == 0 else list(reversed(args.workers))
            for n in order:
                s = servers[n]
                s.wait_idle()
                pids = s.worker_pids()
                cpu0 = [bench.cpu_seconds(pid) for pid in pids]
                children0, busy0, t0 = bench.children_cpu_seconds(), bench.machine_busy_seconds(), time.monotonic()
                result = bench.run_load(loadgen, s.port, body_path, args.connections, args.duration, 30, {})
                elapsed = time.monotonic() - t0
                used = [bench.cpu_seconds(pid) - c for pid, c in zip(pids, cpu0)]
                loadgen_used = bench.children_cpu_seconds() - children0
                other_used = bench.machine_busy_seconds() - busy0 - sum(used) - loadgen_used
                rate = result["requests"] / (result["duration_us"] / 1e6)
                rates[n].append(rate)
                samples[n].extend(result["samples"])
                cpu_split[n].append(used)
                loadgen_share[n].append(loadgen_used / elapsed / (os.cpu_count() or 1))
                other_share[n].append(max(0.0, other_used) / elapsed / (os.cpu_count() or 1))
                print(f"round {r + 1}: {n} worker(s): {rate:.1f} req/s, worker CPU s {[round(u, 1) for u in used]}")
    finally:
        for s in servers.values():
            s.stop()

    first = args.workers[0]
    lines = [
        f"# Workers: `cds-service serve --workers N`, {args.size} resources, {args.connections} connections",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPU; {args.rounds} alternating "
        f"rounds of {args.duration} s; load generator {loadgen}; database "
        f"{'CDS_DATABASE_URL' if 'CDS_DATABASE_URL' in base_env else 'a fresh SQLite file per server'}.",
        "",
        f"| workers | req/s median (min-max) | p50 ms | p99 ms | CPU split between workers | load generator CPU "
        f"| other processes CPU | vs {first} worker(s) |",
        "|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for n in args.workers:
        ordered = sorted(samples[n])
        split = [sum(col) for col in zip(*cpu_split[n])] if cpu_split[n] else []
        total = sum(split) or 1.0
        ratios = [b / a for a, b in zip(rates[first], rates[n]) if a]
        lines.append(
            f"| {n} | {statistics.median(rates[n]):.1f} ({min(rates[n]):.1f}-{max(rates[n]):.1f}) "
            f"| {bench.fmt_ms(bench.percentile(ordered, 50))} | {bench.fmt_ms(bench.percentile(ordered, 99))} "
            f"| {' / '.join(f'{100 * c / total:.0f}%' for c in split)} "
            f"| {100 * statistics.median(loadgen_share[n]):.0f}% | {100 * statistics.median(other_share[n]):.0f}% "
            f"| {statistics.median(ratios):.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
