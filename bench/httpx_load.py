#!/usr/bin/env python3
"""Fallback load generator for bench/run.py when `wrk` is not installed: an asyncio + httpx client
that keeps `--connections` requests in flight (closed loop, one keep-alive connection each) for
`--duration` seconds, then prints the same `BENCH_RESULT {json}` line as bench/wrk_post.lua and,
with --samples, every latency in microseconds, one a line.

It runs in its own process (bench/run.py starts it), but it is Python: on a small machine it takes
CPU from the server under test, so wrk is preferred (apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import httpx


async def _worker(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    stop_at: float,
    samples: list[int],
    counters: dict[str, int],
) -> None:
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            response = await client.post(url, content=body, headers=headers)
            await response.aread()
        except httpx.TimeoutException:
            counters["timeout"] += 1
            continue
        except httpx.HTTPError:
            counters["read"] += 1
            await asyncio.sleep(0.01)
            continue
        finished = time.perf_counter()
        if finished > stop_at + 0.0:  # like wrk: a response after the end of the run is not counted
            break
        samples.append(int((finished - started) * 1e6))
        counters["bytes"] += len(response.content)
        if response.status_code != 200:
            counters["non_200"] += 1
            if response.status_code > 399:
                counters["status"] += 1


async def run(
    url: str, body: bytes, connections: int, duration: float, timeout: float, headers: dict[str, str]
) -> tuple[dict, list[int]]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    samples: list[int] = []
    counters = {"timeout": 0, "read": 0, "status": 0, "non_200": 0, "bytes": 0}
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        started = time.perf_counter()
        stop_at = started + duration
        await asyncio.gather(
            *(_worker(client, url, body, headers, stop_at, samples, counters) for _ in range(connections))
        )
        elapsed = time.perf_counter() - started
    ordered = sorted(samples)

    def pct(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0

    result = {
        "requests": len(samples),
        "duration_us": int(elapsed * 1e6),
        "bytes": counters["bytes"],
        "errors": {
            "connect": 0,
            "read": counters["read"],
            "write": 0,
            "status": counters["status"],
            "timeout": counters["timeout"],
        },
        "non_200": counters["non_200"],
        "latency_us": {
            "min": ordered[0] if ordered else 0,
            "mean": sum(ordered) / len(ordered) if ordered else 0,
            "max": ordered[-1] if ordered else 0,
            "p50": pct(50),
            "p90": pct(90),
            "p95": pct(95),
            "p99": pct(99),
        },
    }
    return result, samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--body", required=True, help="JSON body file to POST")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    parser.add_argument("--samples", default=None, help="write latencies (microseconds) here, one a line")
    parser.add_argument("--header", action="append", default=[], help="extra header 'Name: value'")
    args = parser.parse_args(argv)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    with open(args.body, "rb") as f:
        body = f.read()
    result, samples = asyncio.run(run(args.url, body, args.connections, args.duration, args.timeout, headers))
    if args.samples:
        with open(args.samples, "w") as f:
            f.writelines(f"{s}\n" for s in samples)
    sys.stdout.write("BENCH_RESULT " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
