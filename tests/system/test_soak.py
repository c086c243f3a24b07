"""Soak: thousands of real-shaped calls to the real service (uvicorn in its own process), with its
resident memory read from outside (/proc/<pid>/status). Memory must be flat after warm-up.

The calls are built by bench/soak.py from the Synthea R4 patients of ../shared/data/synthea-r4/, each
given multiple sclerosis, current low back pain, a new red flag whose Condition has a `note` with an
`authorReference`, and Synthea-style `dosageInstruction: [{"sequence": 1, "asNeededBoolean": true}]`:
the shapes that once leaked 66 KB to 1.4 MB per call (a shared exception instance kept every
request's frames alive). Every call must be answered 200 with one card.

The bound: growth from the end of the 2nd quarter (after warm-up: SQLite's page caches fill during
the first few thousand calls, ~4-6 MB) to the end stays under 4 MiB over 2,000 calls, i.e. < 2 KB per
call, where the old leak would have grown by 130 MB or more. `bench/soak.py` prints the curve.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import SYNTHEA, Sample, Service, soak, soak_requests

pytestmark = pytest.mark.slow

CALLS = 4000
EVERY = 250
MAX_GROWTH_AFTER_WARM_UP_KIB = 4 * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_memory_is_flat_over_thousands_of_real_shaped_calls(tmp_path: Path) -> None:
    if not SYNTHEA.is_dir():
        pytest.fail(f"the Synthea patients are missing: {SYNTHEA}")
    requests = soak_requests(SYNTHEA)
    assert len(requests) >= 30
    service = Service.start(tmp_path)
    samples: list[Sample] = []
    failures: list[str] = []
    try:
        for item in soak(service, requests, CALLS, EVERY, connections=2, deadline_s=900):
            (samples if isinstance(item, Sample) else failures).append(item)  # type: ignore[arg-type]
    finally:
        service.stop()
    assert not failures, failures[:5]
    assert samples[-1].calls == CALLS
    mid = next(s for s in samples if s.calls >= CALLS // 2)
    curve = ", ".join(f"{s.calls}: {s.rss_kib / 1024:.1f}" for s in samples)
    growth = samples[-1].rss_kib - mid.rss_kib
    assert growth < MAX_GROWTH_AFTER_WARM_UP_KIB, f"RSS grew {growth} KiB after warm-up (calls: MiB) {curve}"
    log = service.log_path.read_text()
    assert "Traceback" not in log and '"level":"ERROR"' not in log, log[-3000:]
