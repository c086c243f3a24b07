"""What-if variants of the two apps, for experiments with `bench/run.py --service-app/--ceiling-app`.

They wrap the unchanged apps; nothing in cds_service/ is modified.

* `service_gc_frozen` / `ceiling_gc_frozen`: after start-up, `gc.collect(); gc.freeze()`: the
  objects that exist once the app is up (modules, models, value sets, ...) leave the cyclic garbage
  collector's generations, so a full collection triggered by a request's allocations no longer
  walks them. (The service has no such freeze of its own: bench/README.md says why.)

    .venv/bin/python bench/run.py --quick --sizes 100 1000 \
        --service-app bench.variants:service_gc_frozen --ceiling-app bench.variants:ceiling_gc_frozen \
        --out bench/results/gc-frozen.md

* `service_free_rules`, `service_free_reading`, `service_free_both`: bounds, not optimisations.
  The bench posts one request over and over; these variants compute the clinical facts
  (`extract_facts`) and/or the patient data (prefetch reading: typed decoding, relevance filter,
  conformance check) for the first call and hand the same result to every later call, so that stage
  costs nothing. What is left is what no speed-up of that stage can remove. Only for the bench:
  every patient would get the first patient's facts.

    .venv/bin/python bench/run.py --quick --sizes 100 --service-app bench.variants:service_free_both
"""

from __future__ import annotations

import gc
from typing import Any

_FREE_STAGES = {
    "service_free_rules": ("rules",),
    "service_free_reading": ("reading",),
    "service_free_both": ("rules", "reading"),
}


def _freeze_after_startup(app: Any) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_and_freeze(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        await app(scope, receive, send_and_freeze)

    return wrapped


def __getattr__(name: str) -> Any:  # import the wrapped app only when uvicorn asks for it
    if name == "service_gc_frozen":
        from cds_service.app import app

        return _freeze_after_startup(app)
    if name == "ceiling_gc_frozen":
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from ceiling_app import app

        return _freeze_after_startup(app)
    if name in _FREE_STAGES:
        return _with_free_stages(_FREE_STAGES[name])
    raise AttributeError(name)


def _with_free_stages(stages: tuple[str, ...]) -> Any:
    from cds_service.app import app
    from cds_service.services import ms_back_pain

    first: dict[str, Any] = {}
    if "rules" in stages:
        extract = ms_back_pain.extract_facts

        def extract_once(*args: Any, **kwargs: Any) -> Any:
            if "facts" not in first:
                first["facts"] = extract(*args, **kwargs)
            return first["facts"]

        ms_back_pain.extract_facts = extract_once  # type: ignore[assignment]
    if "reading" in stages:
        load = ms_back_pain.PatientDataLoader.load

        async def load_once(self: Any, *args: Any, **kwargs: Any) -> Any:
            if "data" not in first:
                first["data"] = await load(self, *args, **kwargs)
            return first["data"]

        ms_back_pain.PatientDataLoader.load = load_once  # type: ignore[method-assign]
    return app
