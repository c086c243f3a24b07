"""What-if variants of the two apps, for experiments with `bench/run.py --service-app/--ceiling-app`.

They wrap the unchanged apps; nothing in cds_service/ is modified.

* `service_gc_frozen` / `ceiling_gc_frozen`: after start-up, `gc.collect(); gc.freeze()`: the
  objects that exist once the app is up (modules, models, value sets, ...) leave the cyclic garbage
  collector's generations, so a full collection triggered by a request's allocations no longer
  walks them. The one-line change this measures would go at the end of the app's start-up.

    .venv/bin/python bench/run.py --quick --sizes 100 1000 \
        --service-app bench.variants:service_gc_frozen --ceiling-app bench.variants:ceiling_gc_frozen \
        --out bench/results/gc-frozen.md
"""

from __future__ import annotations

import gc
from typing import Any


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
    raise AttributeError(name)
