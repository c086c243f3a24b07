#!/usr/bin/env python3
"""Load benchmark of the CDS Hooks service against a do-nothing "ceiling" app, one command:

    .venv/bin/python bench/run.py            # ~5-8 minutes (depends on how fast the service is)
    .venv/bin/python bench/run.py --quick    # ~1-2 minutes, fewer and shorter runs

1. generates the patient-view requests (bench/generate.py; reused when the seed/anchor match),
2. starts, on 127.0.0.1 with one uvicorn worker each and the same uvicorn flags, the service
   (`uvicorn cds_service.app:app`) and the ceiling (`uvicorn bench.ceiling_app:app`),
3. drives them from a separate load-generator process (wrk + bench/wrk_post.lua, or the httpx
   fallback bench/httpx_load.py) in alternating A/B rounds per size, every run bounded in time,
4. prints the table and writes bench/results/latest.md (+ latest.json with every run).

See bench/README.md for the method and every flag.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
LUA = BENCH / "wrk_post.lua"
SERVICE_PATH = "/cds-services/ms-back-pain-patient-view"
APPS = ("service", "ceiling")
CLK_TCK = os.sysconf("SC_CLK_TCK")

DATA_SETS = ("real", "generated")

sys.path.insert(0, str(BENCH))
import generate  # noqa: E402  (bench/generate.py)
import real_shaped  # noqa: E402  (bench/real_shaped.py)

# --- /proc helpers (Linux) ---------------------------------------------------------------------


def proc_status_kb(pid: int, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM (the kernel's peak-RSS mark) of a process we started: `echo 5 > clear_refs`."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def children_cpu_seconds() -> float:
    """CPU seconds of our finished child processes (the load generator runs)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class BackgroundMeter:
    """Share of the machine's CPU used by processes other than the two servers and the load generator
    while a run lasts: other people's jobs on a shared host distort the figures."""

    def __init__(self, servers: list[Server]):
        self.servers = servers

    def __enter__(self) -> BackgroundMeter:
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_seconds()
        self.ours0 = sum(s.cpu() for s in self.servers) + children_cpu_seconds()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.monotonic() - self.t0
        foreign = (machine_busy_seconds() - self.busy0) - (
            sum(s.cpu() for s in self.servers) + children_cpu_seconds() - self.ours0
        )
        self.share = max(0.0, foreign) / max(1e-9, wall * (os.cpu_count() or 1))


def wait_quiet(servers: list[Server], max_share: float, timeout: float) -> float:
    """Wait (up to `timeout` s) until other processes use less than `max_share` of the machine."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with BackgroundMeter(servers) as m:
            time.sleep(1.0)
        if m.share < max_share:
            break
    return time.monotonic() - started


def descendants(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn --workers 1 runs in one process; this also covers a supervisor)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    app: str  # uvicorn import string
    port: int
    uvicorn_args: list[str]
    env: dict[str, str]
    log_path: Path
    workers: int = 1
    proc: subprocess.Popen | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def cmd(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--workers",
            str(self.workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.uvicorn_args,
        ]

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        # Own session: a Ctrl-C in the terminal reaches only run.py, which then stops the servers itself.
        self.proc = subprocess.Popen(
            self.cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(
                    f"{self.name} exited at start-up (code {self.proc.returncode}); see {self.log_path}\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/cds-services")
                conn.getresponse().read()
                conn.close()
                self.pids = descendants(self.proc.pid)
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{self.name} did not answer on port {self.port} within {timeout:.0f} s; see {self.log_path}")

    @property
    def worker_pid(self) -> int:
        """The process that serves requests (the only one with --workers 1)."""
        return self.pids[-1] if self.pids else self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # only the process we started (it stops its own workers)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def rss_kb(self) -> int:
        return sum(proc_status_kb(p, "VmRSS") or 0 for p in self.pids)

    def peak_rss_kb(self) -> int:
        return max((proc_status_kb(p, "VmHWM") or 0 for p in self.pids), default=0)

    def reset_peak(self) -> bool:
        return all(reset_peak_rss(p) for p in self.pids)

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)

    def wait_idle(self, timeout: float = 120.0) -> float:
        """Wait until the server has stopped using CPU (a request cut off by the end of a run may still be
        computing); returns the seconds waited."""
        started = time.monotonic()
        quiet = 0
        last = self.cpu()
        while time.monotonic() - started < timeout:
            time.sleep(0.1)
            now = self.cpu()
            quiet = quiet + 1 if now - last <= 1.0 / CLK_TCK + 1e-9 else 0
            last = now
            if quiet >= 2:
                break
        return time.monotonic() - started


# --- HTTP --------------------------------------------------------------------------------------


def post_once(port: int, body: bytes, headers: dict[str, str], timeout: float = 300.0) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.perf_counter()
    conn.request("POST", SERVICE_PATH, body=body, headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return response.status, data, elapsed


# --- load generator ----------------------------------------------------------------------------


def pick_loadgen(choice: str) -> str:
    if choice in ("auto", "wrk") and shutil.which("wrk"):
        return "wrk"
    if choice == "wrk":
        raise SystemExit("wrk is not installed: apt-get install -y wrk (or use --loadgen httpx)")
    if choice == "auto":
        print("note: wrk not found (apt-get install -y wrk); using the slower Python httpx load generator")
    return "httpx"


def run_load(
    loadgen: str, port: int, body_path: Path, connections: int, duration_s: int, timeout_s: int, headers: dict[str, str]
) -> dict[str, Any]:
    """One bounded load run from a separate process; returns the parsed summary plus `samples` (µs)."""
    url = f"http://127.0.0.1:{port}{SERVICE_PATH}"
    with tempfile.NamedTemporaryFile(prefix="bench-samples-", suffix=".txt", delete=False) as tmp:
        samples_path = tmp.name
    try:
        if loadgen == "wrk":
            # One connection per wrk thread, so each thread can time its own requests (see wrk_post.lua).
            cmd = [
                "wrk",
                f"-t{connections}",
                f"-c{connections}",
                f"-d{duration_s}s",
                "--timeout",
                f"{timeout_s}s",
                "-s",
                str(LUA),
            ]
            for name, value in headers.items():
                cmd += ["-H", f"{name}: {value}"]
            cmd.append(url)
            env = {**os.environ, "BENCH_BODY": str(body_path), "BENCH_SAMPLES": samples_path}
        else:
            cmd = [
                sys.executable,
                str(BENCH / "httpx_load.py"),
                url,
                "--body",
                str(body_path),
                "--connections",
                str(connections),
                "--duration",
                str(duration_s),
                "--timeout",
                str(timeout_s),
                "--samples",
                samples_path,
            ]
            for name, value in headers.items():
                cmd += ["--header", f"{name}: {value}"]
            env = dict(os.environ)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration_s + timeout_s + 60)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(
                f"load generator failed (exit {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
            )
        result = json.loads(line[len("BENCH_RESULT ") :])
        with open(samples_path) as f:
            result["samples"] = [int(x) for x in f if x.strip()]
        return result
    finally:
        os.unlink(samples_path)


# --- statistics --------------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def fmt_ms(us: float | None) -> str:
    if us is None:
        return "-"
    ms = us / 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def fmt_rps(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


# --- plan --------------------------------------------------------------------------------------


@dataclass
class Plan:
    rounds: int
    base_s: int
    max_s: int
    target_samples: int
    min_samples: int
    connections: int
    warm_s: float


HARD_CAP_S = 60  # no single run is longer than this, whatever the flags


def phases_for(plan: Plan, warm_time_s: float) -> list[tuple[str, int, int]]:
    """[(phase, connections, seconds)] for one app at one size.

    'latency': one connection (closed loop: the next request is sent when the answer is in), long
    enough for ~target_samples requests within base..max seconds, and for at least min_samples even
    when that exceeds max (up to HARD_CAP_S). Its rate is the throughput figure too: a single worker
    serves one request at a time, so a second connection only hides the ~0.1 ms client turnaround (on a
    2-CPU machine it costs more in client CPU than it gains). With --connections N > 1 an extra
    'throughput' run with N connections is made, and the req/s column uses it.
    """
    latency_s = min(plan.max_s, max(plan.base_s, math.ceil(plan.target_samples * warm_time_s)))
    latency_s = max(latency_s, min(HARD_CAP_S, math.ceil((plan.min_samples + 0.5) * warm_time_s)))
    phases = [("latency", 1, int(latency_s))]
    if plan.connections > 1:
        phases.insert(0, ("throughput", plan.connections, int(min(plan.max_s, max(plan.base_s, latency_s)))))
    return phases


# --- the benchmark -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Benchmark the CDS Hooks service against a bare FastAPI ceiling.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="~1-2 minute run: 2 rounds, 2-6 s runs, fewer samples")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000], help="prefetch sizes")
    p.add_argument(
        "--data",
        choices=DATA_SETS,
        nargs="+",
        default=list(DATA_SETS),
        help="'real': Synthea charts with MS, back pain and a red flag added (bench/real_shaped.py); "
        "'generated': bench/generate.py's synthetic patient",
    )
    p.add_argument("--rounds", type=int, default=None, help="A/B rounds per size (default 4, quick 2)")
    p.add_argument("--duration", type=int, default=None, help="base (minimum) seconds per run (default 5, quick 2)")
    p.add_argument("--max-duration", type=int, default=None, help="cap on seconds per run (default 20, quick 6)")
    p.add_argument(
        "--target-samples",
        type=int,
        default=None,
        help="latency runs last long enough for about this many requests, within the duration bounds "
        "(default 40, quick 6)",
    )
    p.add_argument(
        "--min-samples",
        type=int,
        default=None,
        help="runs stretch beyond --max-duration (up to 60 s) to get at least this many requests (default 3, quick 1)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=1,
        help="> 1 adds a throughput run per app with this many connections in flight (default: the "
        "one-connection run gives both throughput and latency)",
    )
    p.add_argument("--loadgen", choices=("auto", "wrk", "httpx"), default="auto")
    p.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    p.add_argument(
        "--anchor",
        type=dt.date.fromisoformat,
        default=None,
        help="date the generated data is built around (default: today, UTC)",
    )
    p.add_argument("--regenerate", action="store_true", help="rebuild bench/data even if it matches")
    p.add_argument(
        "--auth",
        choices=("disabled", "inherit"),
        default="disabled",
        help="'disabled' starts the service with CDS_AUTH_MODE=disabled (no client JWT per call); "
        "'inherit' leaves the environment as it is (then pass --header 'Authorization: Bearer ...')",
    )
    p.add_argument("--header", action="append", default=[], help="extra request header 'Name: value' (repeatable)")
    p.add_argument(
        "--uvicorn-arg",
        action="append",
        default=[],
        help="extra uvicorn flag for BOTH apps, e.g. --uvicorn-arg=--http=httptools (repeatable)",
    )
    p.add_argument("--access-log", action="store_true", help="keep uvicorn's access log (off by default for both)")
    p.add_argument(
        "--service-app",
        default="cds_service.app:app",
        help="uvicorn import string of the service (e.g. a what-if variant in bench/variants.py)",
    )
    p.add_argument("--ceiling-app", default="bench.ceiling_app:app", help="uvicorn import string of the ceiling")
    p.add_argument("--service-port", type=int, default=0, help="0 = a free port")
    p.add_argument("--ceiling-port", type=int, default=0, help="0 = a free port")
    p.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, profile in-process calls at 1,000 and 10,000 resources (bench/profile_call.py) "
        "and add the summary to the report",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to SECONDS until other processes use < 10%% of the machine "
        "(for shared hosts; background load is measured and reported either way)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "latest.md")
    args = p.parse_args(argv)

    quick = args.quick
    plan = Plan(
        rounds=args.rounds or (2 if quick else 4),
        base_s=args.duration or (2 if quick else 5),
        max_s=args.max_duration or (6 if quick else 20),
        target_samples=args.target_samples or (6 if quick else 40),
        min_samples=args.min_samples or (1 if quick else 3),
        connections=args.connections,
        warm_s=0.5 if quick else 1.5,
    )
    plan.max_s = max(plan.max_s, plan.base_s)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    loadgen = pick_loadgen(args.loadgen)
    t_start = time.monotonic()

    # 1. data
    anchor = args.anchor or dt.datetime.now(dt.UTC).date()
    manifest_path = generate.DATA_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    fresh = (
        manifest.get("seed") == args.seed
        and manifest.get("anchor") == anchor.isoformat()
        and manifest.get("generator_version") == generate.GENERATOR_VERSION
        and all(str(n) in manifest.get("files", {}) and generate.file_for(n).exists() for n in args.sizes)
    )
    if args.regenerate or not fresh:
        print(f"generating requests (seed {args.seed}, anchor {anchor}) -> {generate.DATA_DIR.relative_to(REPO)}/")
        manifest = generate.generate(sorted(set(args.sizes) | set(generate.DEFAULT_SIZES)), args.seed, anchor)
    else:
        print(f"reusing {generate.DATA_DIR.relative_to(REPO)}/ (seed {args.seed}, anchor {anchor})")
    if "real" in args.data:
        real_manifest = real_shaped.DATA_DIR / "real-manifest.json"
        real = json.loads(real_manifest.read_text()) if real_manifest.exists() else {}
        if (
            args.regenerate
            or real.get("anchor") != anchor.isoformat()
            or not all(real_shaped.file_for(n).exists() and str(n) in real.get("files", {}) for n in args.sizes)
        ):
            print(f"building real-shaped requests from Synthea (anchor {anchor})")
            real_shaped.write(args.sizes, anchor)
    cases = [(data, n) for n in args.sizes for data in args.data]

    # 2. servers
    RESULTS.mkdir(parents=True, exist_ok=True)
    uvicorn_args = ["--log-level", "warning", "--timeout-keep-alive", "5", *args.uvicorn_arg]
    if not args.access_log:
        uvicorn_args.append("--no-access-log")
    base_env = {k: v for k, v in os.environ.items()}
    service_env = dict(base_env)
    if args.auth == "disabled":
        service_env["CDS_AUTH_MODE"] = "disabled"
    # The service opens a database at start-up (SQLite in the working directory by default): keep the
    # bench's own under bench/results/ unless one is configured.
    if "CDS_DATABASE_URL" not in service_env:
        for suffix in ("", "-wal", "-shm", "-journal"):  # a fresh one per run
            (RESULTS / f"bench-cds.db{suffix}").unlink(missing_ok=True)
        service_env["CDS_DATABASE_URL"] = f"sqlite+aiosqlite:///{RESULTS / 'bench-cds.db'}"
    servers = {
        "service": Server(
            "service",
            args.service_app,
            args.service_port or free_port(),
            uvicorn_args,
            service_env,
            RESULTS / "logs" / "service.log",
        ),
        "ceiling": Server(
            "ceiling",
            args.ceiling_app,
            args.ceiling_port or free_port(),
            uvicorn_args,
            base_env,
            RESULTS / "logs" / "ceiling.log",
        ),
    }
    runs: list[dict[str, Any]] = []
    per_size: dict[tuple[str, int], dict[str, Any]] = {}
    idle_rss: dict[str, int] = {}
    try:
        for s in servers.values():
            s.start()
        for s in servers.values():
            s.wait_ready()
            idle_rss[s.name] = s.rss_kb()
            print(
                f"{s.name}: pid {s.worker_pid}, port {s.port}, idle RSS {idle_rss[s.name] / 1024:.0f} MB "
                f"({' '.join(s.cmd[2:])})"
            )

        # 3. per size: sanity + warm-up, then alternating A/B rounds
        for dataset, n in cases:
            body_path = generate.file_for(n) if dataset == "generated" else real_shaped.file_for(n)
            body = body_path.read_bytes()
            info: dict[str, Any] = {"bytes": len(body), "apps": {}, "data": dataset, "size": n}
            per_size[(dataset, n)] = info
            for s in servers.values():
                s.reset_peak()
            warm: dict[str, float] = {}
            for name, s in servers.items():
                s.wait_idle()
                t0, cpu0 = time.monotonic(), s.cpu()
                status, data, first = post_once(s.port, body, headers)
                if status != 200:
                    raise SystemExit(
                        f"{name} answered HTTP {status} for {n} resources: {data[:500]!r}\n"
                        f"(auth: --auth {args.auth}; server log: {s.log_path})"
                    )
                app_info: dict[str, Any] = {"first_call_s": first, "response_bytes": len(data)}
                if name == "service":
                    cards = json.loads(data).get("cards", [])
                    app_info["cards"] = [c.get("indicator") for c in cards]
                    expected = manifest.get("expected_indicator", "critical")
                    if app_info["cards"] != [expected]:
                        print(
                            f"  WARNING: {dataset} {n} resources: service returned cards {app_info['cards']}, expected "
                            f"[{expected!r}] (the anchor date may be too old: --regenerate)"
                        )
                # Warm-up: more calls until warm_s has passed (none more when the check call took that long).
                times = [first]
                while time.monotonic() - t0 < plan.warm_s and len(times) < 200:
                    times.append(post_once(s.port, body, headers)[2])
                warm[name] = statistics.median(times[1:]) if len(times) > 1 else first
                app_info["warm_s"] = warm[name]
                app_info["warm_calls"] = len(times)
                app_info["cpu_ms_per_req"] = 1000 * (s.cpu() - cpu0) / len(times)  # sequential calls
                app_info["phases"] = phases_for(plan, warm[name])
                info["apps"][name] = app_info
                s.wait_idle()
            skipped = [
                l for l in servers["service"].log_path.read_text(errors="replace").splitlines() if "skipped" in l
            ]
            if skipped:
                print(f"  WARNING: the service skipped or repaired data: {skipped[-1][:200]}")
            est = plan.rounds * sum(sum(d for _, _, d in info["apps"][a]["phases"]) for a in APPS)
            print(
                f"\n{dataset} {n} resources ({len(body) / 1e6:.2f} MB): "
                f"warm call service {warm['service'] * 1000:.1f} ms, "
                f"ceiling {warm['ceiling'] * 1000:.1f} ms; {plan.rounds} rounds, ~{est} s of load "
                f"(elapsed so far {time.monotonic() - t_start:.0f} s)"
            )
            for r in range(plan.rounds):
                order = APPS if r % 2 == 0 else APPS[::-1]
                for name in order:
                    s = servers[name]
                    timeout_s = int(min(300, max(10, 4 * warm[name] * plan.connections + 5)))
                    for phase, conns, secs in info["apps"][name]["phases"]:
                        waited = wait_quiet(list(servers.values()), 0.10, args.wait_quiet) if args.wait_quiet else 0.0
                        cpu0 = s.cpu()
                        with BackgroundMeter(list(servers.values())) as bg:
                            res = run_load(loadgen, s.port, body_path, conns, secs, timeout_s, headers)
                        settle = s.wait_idle()
                        cpu = s.cpu() - cpu0
                        samples = res.pop("samples")
                        rps = res["requests"] / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
                        errors = sum(res["errors"].values()) + res["non_200"]
                        run = {
                            "data": dataset,
                            "size": n,
                            "app": name,
                            "round": r,
                            "phase": phase,
                            "connections": conns,
                            "seconds": secs,
                            "rps": rps,
                            "requests": res["requests"],
                            "errors": errors,
                            "cpu_s": cpu,
                            "settle_s": settle,
                            "background_cpu_share": bg.share,
                            "waited_for_quiet_s": waited,
                            "samples_us": samples,
                            "wrk": res,
                        }
                        runs.append(run)
                        sm = sorted(samples)
                        print(
                            f"  round {r + 1} {name:7s} {phase:10s} c={conns} {secs:2d}s: {rps:8.1f} req/s  "
                            f"p50 {fmt_ms(percentile(sm, 50)):>7s} ms  p99 {fmt_ms(percentile(sm, 99)):>7s} ms  "
                            f"n={len(samples)}  background CPU {bg.share * 100:.0f}%"
                            + (f"  ERRORS {errors}" if errors else "")
                        )
            for name, s in servers.items():
                info["apps"][name]["peak_rss_kb"] = s.peak_rss_kb()
    finally:
        for s in servers.values():
            s.stop()

    # 4. report
    rows = summarise(cases, runs, per_size)
    env_info = environment_info(loadgen, servers, args, plan, manifest, idle_rss)
    profile_md = None
    if args.profile:
        import profile_call

        profile_md = profile_call.report([n for n in (1000, 10000) if n in args.sizes] or [max(args.sizes)])
    md = render(rows, env_info, plan, quick, profile_md)
    print("\n" + md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md, encoding="utf-8")
    raw = {"environment": env_info, "rows": rows, "cases": list(per_size.values()), "runs": runs}
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    print(
        f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out} "
        f"(+ .json with every run) in {time.monotonic() - t_start:.0f} s"
    )
    return 0


def summarise(
    cases: list[tuple[str, int]], runs: list[dict[str, Any]], per_size: dict[tuple[str, int], Any]
) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        data, n = case
        by_app: dict[str, dict[str, Any]] = {}
        for app in APPS:
            mine = [r for r in runs if (r["data"], r["size"]) == case and r["app"] == app]
            tput_phase = "throughput" if any(r["phase"] == "throughput" for r in mine) else "latency"
            tput = {r["round"]: r["rps"] for r in mine if r["phase"] == tput_phase}
            lat = sorted(x for r in mine if r["phase"] == "latency" for x in r["samples_us"])
            by_app[app] = {
                "rps_by_round": tput,
                "rps": statistics.median(tput.values()) if tput else None,
                "rps_min": min(tput.values()) if tput else None,
                "rps_max": max(tput.values()) if tput else None,
                "tput_connections": next((r["connections"] for r in mine if r["phase"] == tput_phase), None),
                "p50_us": percentile(lat, 50),
                "p95_us": percentile(lat, 95),
                "p99_us": percentile(lat, 99),
                "max_us": lat[-1] if lat else None,
                "n": len(lat),
                "errors": sum(r["errors"] for r in mine),
                "cpu_ms_per_req": per_size[case]["apps"][app]["cpu_ms_per_req"],
                "peak_rss_kb": per_size[case]["apps"][app].get("peak_rss_kb"),
                "response_bytes": per_size[case]["apps"][app]["response_bytes"],
            }
        svc, ceil = by_app["service"], by_app["ceiling"]
        paired = [
            svc["rps_by_round"][r] / ceil["rps_by_round"][r]
            for r in svc["rps_by_round"]
            if r in ceil["rps_by_round"] and ceil["rps_by_round"][r]
        ]
        shares = [r["background_cpu_share"] for r in runs if (r["data"], r["size"]) == case]
        rows.append(
            {
                "data": data,
                "size": n,
                "body_bytes": per_size[case]["bytes"],
                "apps": by_app,
                "background_mean": statistics.fmean(shares) if shares else 0.0,
                "background_max": max(shares) if shares else 0.0,
                "ratio": statistics.median(paired) if paired else None,
                "ratio_min": min(paired) if paired else None,
                "ratio_max": max(paired) if paired else None,
                "cards": per_size[case]["apps"]["service"].get("cards"),
            }
        )
    return rows


def environment_info(
    loadgen: str, servers: dict[str, Server], args: Any, plan: Plan, manifest: dict[str, Any], idle_rss: dict[str, int]
) -> dict[str, Any]:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu_model = ""
    try:
        cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    except OSError:
        pass
    versions = {}
    for mod in ("fastapi", "uvicorn", "starlette", "pydantic", "orjson", "fhir.resources", "h11"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:  # noqa: BLE001
            pass
    loadgen_version = run(["wrk", "-v"]).splitlines()[0] if loadgen == "wrk" else "httpx (bench/httpx_load.py)"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": run(["git", "rev-parse", "--short", "HEAD"]),
        "dirty": bool(run(["git", "status", "--porcelain", "--untracked-files=no"])),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "versions": versions,
        "loadgen": loadgen,
        "loadgen_version": loadgen_version,
        "commands": {name: " ".join(s.cmd[2:]) for name, s in servers.items()},
        "uvicorn_flags": servers["service"].uvicorn_args,
        "apps": {"service": args.service_app, "ceiling": args.ceiling_app},
        "auth": args.auth,
        "seed": manifest.get("seed"),
        "anchor": manifest.get("anchor"),
        "idle_rss_mb": {k: round(v / 1024, 1) for k, v in idle_rss.items()},
        "plan": plan.__dict__,
        "cds_env": {k: v for k, v in os.environ.items() if k.startswith("CDS_")},
    }


def _p(row: dict[str, Any], key: str) -> Any:
    return row["apps"]["service"][key]


TARGETS = [
    # (size, description, check(row) -> (value text, passed)); checked on each data set measured
    (
        100,
        "100 resources: service throughput >= 60% of the ceiling",
        lambda r: (
            f"{r['ratio'] * 100:.0f}%" if r["ratio"] is not None else "-",
            r["ratio"] is not None and r["ratio"] >= 0.60,
        ),
    ),
    (
        100,
        "100 resources: p99 < 5 ms",
        lambda r: (
            f"{fmt_ms(_p(r, 'p99_us'))} ms (n={_p(r, 'n')})",
            _p(r, "p99_us") is not None and _p(r, "p99_us") < 5_000,
        ),
    ),
    (
        1000,
        "1,000 resources: p99 < 25 ms",
        lambda r: (
            f"{fmt_ms(_p(r, 'p99_us'))} ms (n={_p(r, 'n')})",
            _p(r, "p99_us") is not None and _p(r, "p99_us") < 25_000,
        ),
    ),
    (
        10000,
        "10,000 resources: p50 < 120 ms",
        lambda r: (
            f"{fmt_ms(_p(r, 'p50_us'))} ms (n={_p(r, 'n')})",
            _p(r, "p50_us") is not None and _p(r, "p50_us") < 120_000,
        ),
    ),
    (
        10000,
        "10,000 resources: service peak RSS < 250 MB",
        lambda r: (
            f"{(_p(r, 'peak_rss_kb') or 0) / 1024:.0f} MB",
            (_p(r, "peak_rss_kb") or 0) / 1024 < 250,
        ),
    ),
]


def render(rows: list[dict[str, Any]], env: dict[str, Any], plan: Plan, quick: bool, profile_md: str | None) -> str:
    out = [f"# CDS service benchmark{' (quick)' if quick else ''}: {env['date']}", ""]
    out.append(
        f"Commit `{env['commit']}`{' + uncommitted changes' if env['dirty'] else ''}; {env['cpus']} CPU "
        f"({env['cpu_model']}), Python {env['python']}; load generator {env['loadgen_version']}.  "
    )
    out.append(f"Apps: service `{env['apps']['service']}`, ceiling `{env['apps']['ceiling']}`.  ")
    out.append(
        f"Both apps: `uvicorn <app> --workers 1 --host 127.0.0.1 {' '.join(env['uvicorn_flags'])}` "
        f"(service with client auth {env['auth']}); idle RSS service {env['idle_rss_mb'].get('service')} MB, "
        f"ceiling {env['idle_rss_mb'].get('ceiling')} MB.  "
    )
    out.append(
        f"Data: real = Synthea charts + MS, back pain and a red flag (bench/real_shaped.py); generated = "
        f"bench/generate.py seed {env['seed']}; anchor {env['anchor']}; {plan.rounds} alternating A/B "
        f"rounds per size; runs of {plan.base_s}-{plan.max_s} s."
    )
    out.append("")
    out.append(
        "| data | resources | body | app | req/s | p50 ms | p95 ms | p99 ms | n | service/ceiling | peak RSS MB | "
        "CPU ms/req | response |"
    )
    out.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for app in APPS:
            a = r["apps"][app]
            rps = fmt_rps(a["rps"])
            if a["rps_min"] is not None and len(a["rps_by_round"]) > 1:
                rps += f" ({fmt_rps(a['rps_min'])}-{fmt_rps(a['rps_max'])})"
            rps += f" @c{a['tput_connections']}"
            ratio = (
                f"**{r['ratio'] * 100:.0f}%** ({r['ratio_min'] * 100:.0f}-{r['ratio_max'] * 100:.0f}%)"
                if app == "service" and r["ratio"] is not None
                else ""
            )
            err = f" ⚠ {a['errors']} errors" if a["errors"] else ""
            out.append(
                f"| {r['data']} | {r['size']:,} | {r['body_bytes'] / 1e6:.2f} MB | {app}{err} | {rps} | "
                f"{fmt_ms(a['p50_us'])} | "
                f"{fmt_ms(a['p95_us'])} | {fmt_ms(a['p99_us'])} | {a['n']} | {ratio} | "
                f"{(a['peak_rss_kb'] or 0) / 1024:.0f} | {a['cpu_ms_per_req']:.1f} | "
                f"{a['response_bytes'] / 1000:.1f} kB |"
            )
    out += [
        "",
        "req/s: median over rounds (min-max), measured with `@cN` connections in flight. Latencies: every "
        "request of the one-connection runs of all rounds pooled (nearest rank), client-side from send to complete "
        "response; n = requests behind them (treat p99 with n < 100 as indicative). service/ceiling: median of the "
        "per-round throughput ratios (each round runs both apps back to back). Peak RSS: the kernel's VmHWM of the "
        "worker, reset before each size. CPU ms/req: the server's CPU time per request during the sequential warm-up "
        "calls (/proc utime+stime, 10 ms ticks).",
        "",
    ]
    bg = ", ".join(
        f"{r['data']} {r['size']:,}: {r['background_mean'] * 100:.0f}% (max {r['background_max'] * 100:.0f}%)"
        for r in rows
    )
    noisy = [r for r in rows if r["background_max"] > 0.10]
    out += [
        f"Background CPU (processes other than the two servers and the load generator, share of all "
        f"{env['cpus']} CPUs during the runs), per size: {bg}."
        + (
            " **Other jobs were running: treat these figures with care and re-run on a quiet machine "
            "(or with --wait-quiet 120).**"
            if noisy
            else ""
        ),
        "",
    ]
    out += ["## Targets", "", "| data | target | measured | |", "|---|---|---:|---|"]
    for data in dict.fromkeys(r["data"] for r in rows):
        for size, text, check in TARGETS:
            row = next((r for r in rows if r["size"] == size and r["data"] == data), None)
            if row is None:
                out.append(f"| {data} | {text} | not measured | |")
                continue
            value, ok = check(row)
            out.append(f"| {data} | {text} | {value} | {'PASS' if ok else 'FAIL'} |")
    out.append("")
    out.append(
        f"Load average at the end (`uptime`): {os.getloadavg()[0]:.2f}, {os.getloadavg()[1]:.2f}, "
        f"{os.getloadavg()[2]:.2f}."
    )
    cards = {f"{r['data']} {r['size']}": r["cards"] for r in rows}
    out += ["", f"Service answers (card indicators per size): {cards}.", ""]
    if profile_md:
        out += [profile_md, ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
