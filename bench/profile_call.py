#!/usr/bin/env python3
"""Where does a service call spend its time? In-process profile of patient-view calls (cProfile).

The whole ASGI app (`create_app()`: middleware, routing, body reading, JSON parsing, request
validation, prefetch reading, rules, card, response) is called directly with the bench request of a
given size, the way uvicorn would call it (body in 64 KiB chunks), without sockets. Reports:

* wall time per call without the profiler, and how much of it is the cyclic garbage collector;
* self time grouped by package (where the CPU actually burns);
* the service's own functions by cumulative time (which layer the time belongs to);
* the top functions by self time;
* with --memory: the peak of Python allocations during one call (tracemalloc), by package.

    .venv/bin/python bench/profile_call.py                  # 1,000 and 10,000 resources
    .venv/bin/python bench/profile_call.py --sizes 100 --calls 20 --top 25
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import os
import pstats
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))
SERVICE_PATH = "/cds-services/ms-back-pain-patient-view"


def build_app() -> Any:
    os.environ.setdefault("CDS_AUTH_MODE", "disabled")  # no client JWT in a bench call (see README)
    if "CDS_DATABASE_URL" not in os.environ:  # a fresh SQLite file of our own (the default is ./cds-service.db)
        (BENCH / "results").mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            (BENCH / "results" / f"profile-cds.db{suffix}").unlink(missing_ok=True)
        os.environ["CDS_DATABASE_URL"] = f"sqlite+aiosqlite:///{BENCH / 'results' / 'profile-cds.db'}"
    logging.getLogger("cds_service.storage").setLevel(logging.ERROR)  # the "development hash key" warning
    logging.getLogger("cds_service.security").setLevel(logging.ERROR)  # the "auth disabled" warning
    from cds_service.app import create_app

    app = create_app()
    devnull = open(os.devnull, "w")
    for handler in logging.getLogger("cds_service").handlers:  # keep formatting the call log, drop the output
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    return app


async def asgi_call(app: Any, body: bytes, path: str = SERVICE_PATH) -> tuple[int, bytes]:
    """One HTTP request straight into the ASGI app, as uvicorn delivers it."""
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]
    state = {"i": 0, "status": 0}
    done = asyncio.Event()
    out: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if state["i"] < len(chunks):
            state["i"] += 1
            return {"type": "http.request", "body": chunks[state["i"] - 1], "more_body": state["i"] < len(chunks)}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    await app(scope, receive, send)
    return state["status"], b"".join(out)


class GcTimer:
    """Time spent in the cyclic garbage collector (gc.callbacks)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.collections = [0, 0, 0]
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._t
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        gc.callbacks.remove(self)


# Coarse stages of a call, timed by wrapping these functions wherever cds_service modules refer to them
# (found by identity, so it follows the code when a function moves or is imported elsewhere). A stage
# that no longer exists is reported as "not found". (module, attribute, label, top-level stage?)
STAGES: list[tuple[str, str, str, bool]] = [
    ("cds_service.protocol.body", "read_limited_body", "read the request body", True),
    ("cds_service.protocol.body", "parse_json_object", "parse the JSON envelope (prefetch left undecoded)", True),
    (
        "cds_service.jsonlimits",
        "nested_deeper_than",
        "nesting-depth checks, wherever made (body and/or each resource)",
        False,
    ),
    ("cds_service.protocol.models", "CdsRequest.model_validate", "validate the CDS Hooks request (pydantic)", True),
    ("cds_service.fhir.prefetch", "read_prefetch", "prefetch -> typed resources (read_prefetch)", True),
    ("cds_service.fhir.decode", "typed_value", "of which typed decoding of each prefetch value", False),
    ("cds_service.clinical.relevance", "RelevanceFilter.keep", "of which the relevance filter", False),
    ("cds_service.fhir.schema", "conforms", "of which the conformance check of the resources kept", False),
    (
        "cds_service.fhir.parse",
        "parse_resource",
        "of which validation into fhir.resources models (parse_resource)",
        False,
    ),
    ("cds_service.clinical.extract", "extract_facts", "clinical rules (extract_facts)", True),
    ("cds_service.clinical.red_flags", "red_flag_findings", "of which red flags", False),
    ("cds_service.clinical.cord_features", "cord_feature_findings", "of which cord features", False),
    ("cds_service.clinical.back_pain", "back_pain_findings", "of which back pain", False),
    ("cds_service.clinical.analgesic_response", "poor_response_findings", "of which analgesic response", False),
    ("cds_service.clinical.multiple_sclerosis", "ms_findings", "ms_findings (MS check in loading + rules)", False),
    ("cds_service.clinical.decision", "decide", "decision", True),
    (
        "cds_service.services.card_memory",
        "CardMemory.last_override",
        "card memory: override look-up (database read)",
        True,
    ),
    (
        "cds_service.services.card_memory",
        "CardMemory._write",
        "card memory: record issued cards (a batched database write after the answer, off the call's path; wall "
        "time including waits)",
        False,
    ),
    ("cds_service.cards.builder", "build_card", "card", True),
    ("cds_service.protocol.models", "CdsResponse.model_dump", "serialise the response model", True),
]
_stage_acc: dict[str, float] = {}
_stages_found: dict[str, bool] = {}
_stage_depth: dict[str, int] = {}  # only the outermost call of a (re-entered) stage is timed


def _timed(original: Any, label: str) -> Any:
    import functools
    import inspect

    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            _stage_depth[label] = _stage_depth.get(label, 0) + 1
            try:
                return await original(*args, **kwargs)
            finally:
                _stage_depth[label] -= 1
                if not _stage_depth[label]:
                    _stage_acc[label] = _stage_acc.get(label, 0.0) + time.perf_counter() - t

        return async_wrapper

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        _stage_depth[label] = _stage_depth.get(label, 0) + 1
        try:
            return original(*args, **kwargs)
        finally:
            _stage_depth[label] -= 1
            if not _stage_depth[label]:
                _stage_acc[label] = _stage_acc.get(label, 0.0) + time.perf_counter() - t

    return wrapper


def install_stage_timers() -> list[tuple[Any, str, Any]]:
    """Wrap each STAGES function; returns what to put back (see restore_stage_timers)."""
    import importlib

    undo: list[tuple[Any, str, Any]] = []
    for module_name, attr, label, _top in STAGES:
        _stages_found[label] = False
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if "." in attr:
            cls_name, method = attr.split(".", 1)
            cls = getattr(module, cls_name, None)
            bound = getattr(cls, method, None) if cls is not None else None
            if bound is None:
                continue
            undo.append((cls, method, cls.__dict__.get(method, _MISSING)))
            if isinstance(cls.__dict__.get(method), classmethod) or method == "model_validate":
                setattr(cls, method, staticmethod(_timed(bound, label)))
            else:
                setattr(cls, method, _timed(cls.__dict__.get(method, bound), label))
            _stages_found[label] = True
            continue
        original = getattr(module, attr, None)
        if original is None:
            continue
        wrapped = _timed(original, label)
        for mod in list(sys.modules.values()):
            if mod is not None and getattr(mod, "__name__", "").startswith("cds_service"):
                for name, value in list(vars(mod).items()):
                    if value is original:
                        undo.append((mod, name, original))
                        setattr(mod, name, wrapped)
        _stages_found[label] = True
    return undo


_MISSING = object()


def restore_stage_timers(undo: list[tuple[Any, str, Any]]) -> None:
    for owner, name, original in reversed(undo):
        if original is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, original)


def stage_times(app: Any, loop: Any, body: bytes, calls: int) -> dict[str, Any]:
    undo = install_stage_timers()
    per_call: list[dict[str, float]] = []
    walls: list[float] = []
    try:
        for _ in range(calls):
            _stage_acc.clear()
            t = time.perf_counter()
            loop.run_until_complete(asgi_call(app, body))
            walls.append(time.perf_counter() - t)
            per_call.append(dict(_stage_acc))
    finally:
        restore_stage_timers(undo)
    wall = statistics.median(walls)
    rows = []
    top_sum = 0.0
    for _module, _attr, label, is_top in STAGES:
        if not _stages_found.get(label):
            rows.append((label, None, is_top))
            continue
        value = statistics.median(c.get(label, 0.0) for c in per_call)
        rows.append((label, value, is_top))
        if is_top:
            top_sum += value
    return {"wall": wall, "rows": rows, "other": max(0.0, wall - top_sum), "calls": calls}


def package_of(filename: str, funcname: str) -> str:
    """A readable bucket for a pstats entry."""
    if filename == "~":  # builtins / C functions: name them by what they are
        name = funcname.strip("<>{}")
        for key, label in (
            ("orjson", "orjson (C)"),
            ("pydantic_core", "pydantic-core validation (Rust)"),
            ("re.Pattern", "re (C)"),
            ("regex", "re (C)"),
            ("deepcopy", "copy"),
            ("isinstance", "builtins"),
            ("method 'append'", "builtins"),
        ):
            if key in name:
                return label
        if "pydantic_core" in funcname or "SchemaValidator" in funcname or "SchemaSerializer" in funcname:
            return "pydantic-core validation (Rust)"
        return "builtins / C"
    path = filename.replace("\\", "/")
    if "/cds_service/" in path:
        rel = path.split("/cds_service/", 1)[1]
        parts = rel.split("/")
        return "cds_service/" + (parts[0] if len(parts) > 1 else rel)
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/lib/python3" in path:
        return "stdlib " + path.rsplit("/", 1)[-1]
    return path.rsplit("/", 1)[-1]


def _is_async(func: tuple[str, int, str]) -> bool:
    """Is the pstats entry an `async def` (read from its source line)?"""
    import linecache

    return linecache.getline(func[0], func[1]).lstrip().startswith("async def")


def short(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    path = filename.replace("\\", "/")
    for marker in ("/cds_service/", "site-packages/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/cds_service/":
                path = "cds_service/" + path
            break
    else:
        path = path.rsplit("/", 1)[-1]
    return f"{path}:{line} {name}"


DATA = os.environ.get("CDS_BENCH_DATA", "generated")  # or "real": bench/real_shaped.py (--data)


def profile_size(n: int, calls: int, top: int, memory: bool) -> dict[str, Any]:
    import generate
    import real_shaped

    body = (real_shaped.file_for(n) if DATA == "real" else generate.file_for(n)).read_bytes()
    app = build_app()
    loop = asyncio.new_event_loop()
    lifespan = app.router.lifespan_context(app)  # start-up as under uvicorn (opens the database, clients)
    loop.run_until_complete(lifespan.__aenter__())
    status, response = loop.run_until_complete(asgi_call(app, body))  # warm-up (imports, caches)
    if status != 200:
        raise SystemExit(f"{n} resources: HTTP {status}: {response[:300]!r}")

    walls, gc_share, gc_counts = [], [], [0, 0, 0]
    for _ in range(calls):
        with GcTimer() as g:
            t = time.perf_counter()
            loop.run_until_complete(asgi_call(app, body))
            wall = time.perf_counter() - t
        walls.append(wall)
        gc_share.append(g.total)
        gc_counts = [a + b for a, b in zip(gc_counts, g.collections)]

    stages = None  # timed after the cProfile pass (the wrappers stay installed in this process)

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        loop.run_until_complete(asgi_call(app, body))
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # profiled seconds (all calls)
    entries = stats.stats  # func -> (cc, nc, tt, ct, callers)

    by_package: dict[str, float] = {}
    for func, (_cc, _nc, tt, _ct, _callers) in entries.items():
        key = package_of(func[0], func[2])
        by_package[key] = by_package.get(key, 0.0) + tt
    self_top = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    # Coroutines are counted once per resumption by cProfile, so their cumulative time can exceed the
    # total: leave those out (the stage table above has the wall-clock split).
    service_cum = sorted(
        ((f, v) for f, v in entries.items() if "/cds_service/" in f[0].replace("\\", "/") and not _is_async(f)),
        key=lambda kv: kv[1][3],
        reverse=True,
    )[:top]

    stages = stage_times(app, loop, body, max(calls, 3 if n >= 10000 else 10))
    mem = None
    if memory:
        gc.collect()
        tracemalloc.start(1)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        loop.run_until_complete(asgi_call(app, body))
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        mem = {"peak_mb": (peak - before) / 1e6, "retained_mb": (current - before) / 1e6}
    loop.run_until_complete(lifespan.__aexit__(None, None, None))
    loop.close()
    return {
        "size": n,
        "calls": calls,
        "bytes": len(body),
        "wall_ms": [w * 1000 for w in walls],
        "gc_ms": [x * 1000 for x in gc_share],
        "gc_collections": gc_counts,
        "profiled_s": total,
        "by_package": sorted(by_package.items(), key=lambda kv: kv[1], reverse=True),
        "self_top": [(short(f), v[1], v[2], v[3]) for f, v in self_top],
        "service_cum": [(short(f), v[1], v[2], v[3]) for f, v in service_cum],
        "memory": mem,
        "stages": stages,
    }


def render(result: dict[str, Any], top: int) -> str:
    n, calls, total = result["size"], result["calls"], result["profiled_s"]
    wall = statistics.median(result["wall_ms"])
    gc_ms = statistics.median(result["gc_ms"])
    g = result["gc_collections"]
    lines = [
        f"### {n:,} resources ({result['bytes'] / 1e6:.2f} MB body), {calls} in-process calls",
        "",
        f"Wall time per call without profiler: median **{wall:.0f} ms** (min {min(result['wall_ms']):.0f}, "
        f"max {max(result['wall_ms']):.0f}); of it in the cyclic GC: median **{gc_ms:.0f} ms** "
        f"({gc_ms / wall * 100:.0f}%; collections over {calls} calls: gen0 {g[0]}, gen1 {g[1]}, gen2 {g[2]}).  ",
        f"Under cProfile: {total / calls * 1000:.0f} ms per call (instrumentation inflates Python-heavy code).",
        "",
    ]
    if result["memory"]:
        m = result["memory"]
        lines += [
            f"tracemalloc, one call: peak of Python allocations **{m['peak_mb']:.0f} MB** above the idle app "
            f"(retained after the call: {m['retained_mb']:.1f} MB).",
            "",
        ]
    st = result["stages"]
    lines += [
        f"Stages, wall clock without profiler (median of {st['calls']} calls, {st['wall'] * 1000:.0f} ms per call; "
        "indented rows are part of the row above them):",
        "",
        "| stage | ms per call | share |",
        "|---|---:|---:|",
    ]
    for label, value, is_top in st["rows"]:
        name = label if is_top else f"&nbsp;&nbsp;{label}"
        if value is None:
            lines.append(f"| {name} | not found | |")
        else:
            lines.append(f"| {name} | {value * 1000:.1f} | {value / st['wall'] * 100:.0f}% |")
    lines.append(
        f"| framework, middleware, routing, call log, response rendering (the rest) | "
        f"{st['other'] * 1000:.1f} | {st['other'] / st['wall'] * 100:.0f}% |"
    )
    lines += ["", "Self time by package (cProfile):", "", "| package | self time | share |", "|---|---:|---:|"]
    for pkg, tt in result["by_package"][:12]:
        lines.append(f"| {pkg} | {tt / calls * 1000:.1f} ms | {tt / total * 100:.1f}% |")
    lines += [
        "",
        "Service functions by cumulative time (a function's time includes what it calls; `async def` "
        "functions left out, cProfile cannot attribute their time across awaits):",
        "",
        "| function | calls/call | cumulative | share |",
        "|---|---:|---:|---:|",
    ]
    for name, nc, _tt, ct in result["service_cum"][:top]:
        lines.append(f"| `{name}` | {nc // calls:,} | {ct / calls * 1000:.1f} ms | {ct / total * 100:.1f}% |")
    lines += ["", "Top functions by self time:", "", "| function | calls/call | self | share |", "|---|---:|---:|---:|"]
    for name, nc, tt, _ct in result["self_top"][:top]:
        lines.append(f"| `{name}` | {nc // calls:,} | {tt / calls * 1000:.1f} ms | {tt / total * 100:.1f}% |")
    return "\n".join(lines)


def report(sizes: list[int], calls: dict[int, int] | None = None, top: int = 15, memory: bool = True) -> str:
    calls = calls or {}
    parts = ["## Profile (in-process, cProfile)", ""]
    for n in sizes:
        c = calls.get(n) or (20 if n <= 100 else 5 if n <= 1000 else 2)
        parts += [render(profile_size(n, c, top, memory), top), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--calls", type=int, default=None, help="profiled calls per size (default 20/5/2 by size)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--data", choices=("generated", "real"), default="generated")
    args = parser.parse_args(argv)
    global DATA
    DATA = args.data
    import generate
    import real_shaped

    if args.data == "real":
        import datetime as dt

        real_shaped.write(args.sizes, dt.datetime.now(dt.UTC).date())

    missing = [n for n in args.sizes if not generate.file_for(n).exists()]
    if missing:
        import datetime as dt

        generate.generate(
            sorted(set(missing) | set(generate.DEFAULT_SIZES)),
            generate.DEFAULT_SEED,
            dt.datetime.now(dt.UTC).date(),
            quiet=True,
        )
    md = report(args.sizes, {n: args.calls for n in args.sizes} if args.calls else None, args.top, not args.no_memory)
    print(md)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
