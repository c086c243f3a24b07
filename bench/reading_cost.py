#!/usr/bin/env python3
"""CPU time of the reading path alone, in-process: what the service spends on a request's data,
against what the ceiling spends parsing the same body. CPU time (`time.process_time`), not wall time,
so the figures hold on a busy shared machine better than the load bench's latencies do.

Per data set and size, the median over `--calls` calls of:
* envelope: the body's JSON envelope, the prefetch left undecoded (protocol/body.py);
* read: every prefetch key decoded into typed Structs, relevance-filtered, conformance-checked
  (fhir/prefetch.py read_prefetch, as the service calls it);
* rules: the facts (clinical/extract.py);
* orjson: `orjson.loads` of the whole body, which the ceiling app does.

    .venv/bin/python bench/reading_cost.py [--sizes 100 1000 10000] [--data real generated] [--calls 15]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import generate  # noqa: E402
import orjson  # noqa: E402
import real_shaped  # noqa: E402

from cds_service.clinical import valuesets  # noqa: E402
from cds_service.clinical.extract import extract_facts  # noqa: E402
from cds_service.clinical.relevance import RelevanceFilter  # noqa: E402
from cds_service.fhir.prefetch import read_prefetch  # noqa: E402
from cds_service.protocol.body import parse_json_object  # noqa: E402
from cds_service.services.patient_data import WANTED_TYPES, prefetch_templates  # noqa: E402


def cpu_ms(step: Callable[[], Any], calls: int) -> tuple[float, Any]:
    result = step()  # warm
    times = []
    for _ in range(calls):
        t0 = time.process_time()
        result = step()
        times.append((time.process_time() - t0) * 1000)
    return statistics.median(times), result


def measure(body: bytes, now: dt.date, calls: int) -> dict[str, Any]:
    keys = tuple(prefetch_templates())
    relevance = RelevanceFilter.from_value_sets()
    envelope_ms, envelope = cpu_ms(lambda: parse_json_object(body, 64, frozenset({("prefetch",)})), calls)
    patient = envelope["context"]["patientId"]
    read_ms, data = cpu_ms(
        lambda: read_prefetch(envelope["prefetch"], keys, patient, WANTED_TYPES, relevance.selector(now, 90)), calls
    )
    resources = data.all_resources(keys)
    rules_ms, facts = cpu_ms(lambda: extract_facts(resources, now), calls)
    orjson_ms, _ = cpu_ms(lambda: orjson.loads(body), calls)
    return {
        "envelope": envelope_ms,
        "read": read_ms,
        "rules": rules_ms,
        "orjson": orjson_ms,
        "kept": len(resources),
        "new_red_flags": len(facts.new_red_flags),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--data", choices=("real", "generated"), nargs="+", default=["real", "generated"])
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--anchor", type=dt.date.fromisoformat, default=None)
    args = parser.parse_args(argv)
    anchor = args.anchor or dt.datetime.now(dt.UTC).date()
    valuesets.warm_up()
    if "real" in args.data:
        real_shaped.write(args.sizes, anchor)
    if "generated" in args.data:
        generate.generate(args.sizes, generate.DEFAULT_SEED, anchor, quiet=True)
    print("| data | resources | MB | envelope ms | read ms | rules ms | total ms | kept | orjson.loads ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for data in args.data:
        for n in args.sizes:
            body = (real_shaped.file_for(n) if data == "real" else generate.file_for(n)).read_bytes()
            m = measure(body, anchor, args.calls if n < 10000 else max(3, args.calls // 3))
            total = m["envelope"] + m["read"] + m["rules"]
            print(
                f"| {data} | {n:,} | {len(body) / 1e6:.2f} | {m['envelope']:.2f} | {m['read']:.2f} | "
                f"{m['rules']:.2f} | {total:.2f} | {m['kept']} | {m['orjson']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
