"""Replay protection: each (iss, jti) is accepted once while its token could still be valid.

`ReplayCache` is the seam; `InMemoryReplayCache` is per process (with several workers or instances
a shared store is needed so a token replayed to another worker is also refused).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("cds_service.security")


class ReplayStoreUnavailable(RuntimeError):
    """The shared replay store cannot be used (not open, unreachable, or too slow): the call can be
    neither accepted nor refused as a client fault, so it is answered 503 (security/dependency.py)."""


class ReplayCache(Protocol):
    async def first_use(self, jti: str, iss: str, expires_at: float) -> bool:
        """Record (iss, jti) until `expires_at` (epoch seconds); True only the first time it is seen."""
        ...


class InMemoryReplayCache:
    """A bounded in-process cache. Expired entries are evicted on every call.

    When it is full of unexpired entries, the entry that expires soonest is dropped (and a warning
    logged): that keeps the service answering, and the replay window it opens is the shortest one.
    Entries are added only for tokens whose signature and claims were already verified.
    """

    def __init__(self, max_entries: int = 200_000, clock: Callable[[], float] = time.time):
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._clock = clock
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    async def first_use(self, jti: str, iss: str, expires_at: float) -> bool:
        # No await inside: atomic with respect to other coroutines on this event loop.
        now = self._clock()
        self._evict(lambda expires: expires <= now)
        key = (iss, jti)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self._max:
            log.warning(
                "replay cache full: dropping the entry that expires soonest",
                extra={"event": "replay_cache", "reason": "full", "count": self._max},
            )
            self._evict(lambda _: True, limit=len(self._expiry) - self._max + 1)
        self._expiry[key] = expires_at
        heapq.heappush(self._heap, (expires_at, key))
        return True

    def _evict(self, should_drop: Callable[[float], bool], limit: int | None = None) -> None:
        dropped = 0
        while self._heap and (limit is None or dropped < limit) and should_drop(self._heap[0][0]):
            expires, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires:
                del self._expiry[key]
                dropped += 1
