"""Replay caches shared by every replica: a client token's (iss, jti) is accepted once across processes.

Two implementations of `ReplayCache`, both atomic "first use wins" in the shared store, never a
read-then-write race:

- `RedisReplayCache(redis_url, key_prefix)`: one `SET <key> <nonce> NX PX <ms>` per token, expiring
  when the token can no longer be valid (its `exp` plus the clock skew, as passed by the
  authenticator). The expiry is sent relative (PX), computed from the same clock that checked `exp`,
  so the Redis server's clock does not matter.
- `DatabaseReplayCache(storage)`: one `INSERT INTO seen_jti ... ON CONFLICT (iss, jti) DO UPDATE ...
  WHERE seen_jti.expires_at <= now RETURNING` per token (the row comes back only when it is new,
  or replaces a row that had already expired); expired rows are deleted at most once a minute per
  process. The storage is looked up at call time: it is opened by the app's lifespan.

`replay_cache_from_settings(redis_url, storage_provider)` picks Redis when a URL is configured,
else the database, else the per-process in-memory cache.

Any failure of the shared store, or no answer within its bound (Redis: connect and read timeouts of
`socket_timeout` each, one retry, the whole check within twice that; database: 5 s at most),
raises `ReplayStoreUnavailable`: the call is then answered 503 with Retry-After (never accepted,
and never a 401, which would tell a valid client its token is wrong). `check()` tells readiness.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cds_service.security.replay import InMemoryReplayCache, ReplayCache, ReplayStoreUnavailable
from cds_service.storage.db import bounded
from cds_service.storage.replay_model import SeenJti

if TYPE_CHECKING:
    from cds_service.storage.db import Storage

log = logging.getLogger("cds_service.security")

DEFAULT_KEY_PREFIX = "cds:replay:"
CLEANUP_INTERVAL_SECONDS = 60.0
# A token that expires in less than this is still kept this long (a Redis PX must be positive).
MIN_TTL_MS = 1000


__all__ = ["DatabaseReplayCache", "RedisReplayCache", "ReplayStoreUnavailable", "replay_cache_from_settings"]


def _key_digest(iss: str, jti: str) -> str:
    # Unambiguous for any (iss, jti) (JSON quoting, no separator that a value could contain), of
    # bounded length, and free of client-chosen text in the key name.
    return hashlib.sha256(json.dumps([iss, jti], ensure_ascii=False).encode("utf-8")).hexdigest()


class RedisReplayCache:
    """(iss, jti) -> a Redis key that exists until the token has expired. Shared by all replicas.

    The value is a random nonce of this call: if redis-py retries the SET after a lost answer (a
    dropped connection after Redis executed it), the retry finds the key, reads its own nonce back
    and still answers "first use", instead of refusing a legitimate token.
    """

    def __init__(
        self,
        redis_url: str,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        *,
        clock: Callable[[], float] = time.time,
        client: Any | None = None,
        socket_timeout: float = 1.0,
    ):
        if client is None:
            import redis.asyncio as aioredis  # imported here: only deployments with Redis need it
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client = aioredis.Redis.from_url(
                redis_url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                health_check_interval=30,
                retry=Retry(NoBackoff(), 1),  # one immediate retry (a dropped pooled connection), no backoff
            )
        self._redis = client
        self._prefix = key_prefix
        self._clock = clock
        self._bound = 2 * socket_timeout  # the whole first_use (SET, maybe GET, one retry)

    def key(self, iss: str, jti: str) -> str:
        return f"{self._prefix}{_key_digest(iss, jti)}"

    async def first_use(self, jti: str, iss: str, expires_at: float) -> bool:
        try:
            async with asyncio.timeout(self._bound):
                return await self._first_use(jti, iss, expires_at)
        except Exception as exc:  # redis errors, OSError, TimeoutError: the store cannot answer
            raise ReplayStoreUnavailable(f"Redis replay cache: {type(exc).__name__}") from None

    async def _first_use(self, jti: str, iss: str, expires_at: float) -> bool:
        ttl_ms = max(MIN_TTL_MS, math.ceil((expires_at - self._clock()) * 1000))
        key = self.key(iss, jti)
        nonce = secrets.token_hex(16)
        if await self._redis.set(key, nonce, nx=True, px=ttl_ms):
            return True
        # Seen before, unless the key holds our own nonce (our SET executed, its answer was lost).
        stored = await self._redis.get(key)
        return stored is not None and (stored.decode() if isinstance(stored, bytes) else stored) == nonce

    async def check(self) -> str:
        """For readiness: "ok", or why the store cannot be used (no secret, no URL)."""
        try:
            async with asyncio.timeout(self._bound):
                await self._redis.ping()
            return "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot be used"
            return f"unreachable ({type(exc).__name__})"

    async def aclose(self) -> None:
        await self._redis.aclose()


StorageProvider = Callable[[], "Storage | None"]


def _insert(dialect: str, table: Any) -> Any:
    if dialect == "postgresql":
        return postgresql_insert(table)
    if dialect == "sqlite":
        return sqlite_insert(table)
    raise NotImplementedError(dialect)  # pragma: no cover - storage.db accepts only these two


class DatabaseReplayCache:
    """(iss, jti) -> a row of `seen_jti` (migration 0002). Shared by all replicas on one database.

    `storage`: the `Storage`, or a function returning it (e.g. `runtime.current_storage`), called
    on every use because the storage only exists while the app runs.
    """

    def __init__(
        self,
        storage: Storage | StorageProvider,
        *,
        clock: Callable[[], float] = time.time,
        cleanup_interval_seconds: float = CLEANUP_INTERVAL_SECONDS,
        timeout_seconds: float | None = None,
    ):
        self._storage: StorageProvider = storage if callable(storage) else (lambda: storage)
        self._clock = clock
        self._cleanup_interval = cleanup_interval_seconds
        self._last_cleanup = -math.inf
        self._timeout = timeout_seconds  # None: CDS_DB_WRITE_TIMEOUT_SECONDS, at most 5 s (a hook call waits on it)

    def _bound(self, storage: Storage) -> float:
        return self._timeout if self._timeout is not None else min(storage.settings.db_write_timeout_seconds, 5.0)

    async def first_use(self, jti: str, iss: str, expires_at: float) -> bool:
        storage = self._storage()
        if storage is None:
            raise ReplayStoreUnavailable("the storage is not open (the app has not started, or has stopped)")
        now_seconds = self._clock()
        try:
            first = await bounded(
                lambda: self._first_use(storage, jti, iss, expires_at, now_seconds), self._bound(storage)
            )
        except Exception as exc:  # database errors and timeouts: the store cannot answer
            raise ReplayStoreUnavailable(f"database replay cache: {type(exc).__name__}") from None
        if now_seconds - self._last_cleanup >= self._cleanup_interval:
            self._last_cleanup = now_seconds
            await self._delete_expired(storage, dt.datetime.fromtimestamp(now_seconds, dt.UTC))
        return first

    async def check(self) -> str:
        """For readiness: "ok", or why the table cannot be used."""
        storage = self._storage()
        if storage is None:
            return "not open"

        async def select_one() -> None:
            async with storage.engine.connect() as connection:
                await connection.execute(text("SELECT 1 FROM seen_jti LIMIT 1"))

        try:
            await bounded(select_one, min(self._bound(storage), 1.0))
            return "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot be used"
            return f"unreachable ({type(exc).__name__})"

    async def _first_use(self, storage: Storage, jti: str, iss: str, expires_at: float, now_seconds: float) -> bool:
        now = dt.datetime.fromtimestamp(now_seconds, dt.UTC)
        table = SeenJti.__table__
        insert = _insert(storage.dialect, table).values(
            iss=iss, jti=jti, expires_at=dt.datetime.fromtimestamp(expires_at, dt.UTC)
        )
        # A conflicting row that has expired is a token that can no longer be replayed: it is
        # replaced (as the Redis key would have vanished). A live one is left alone: no row returned.
        statement = insert.on_conflict_do_update(
            index_elements=["iss", "jti"],
            set_={"expires_at": insert.excluded.expires_at},
            where=table.c.expires_at <= now,
        ).returning(table.c.jti)
        async with storage.sessions.begin() as session:
            return (await session.execute(statement)).first() is not None

    async def _delete_expired(self, storage: Storage, now: dt.datetime) -> None:
        """Best effort: a failure here is logged and never fails the call being authenticated."""
        table = SeenJti.__table__

        async def delete_expired() -> Any:
            async with storage.sessions.begin() as session:
                return await session.execute(delete(SeenJti).where(table.c.expires_at <= now))

        try:
            result = await bounded(delete_expired, self._bound(storage))
            deleted = getattr(result, "rowcount", 0)
            if deleted:
                log.debug("replay cache: expired token ids deleted", extra={"event": "replay_cache", "count": deleted})
        except Exception as exc:  # noqa: BLE001 - clean-up is opportunistic
            log.warning(
                "replay cache: deleting expired token ids failed",
                extra={"event": "replay_cache", "error_type": type(exc).__name__},
            )

    async def aclose(self) -> None:
        """Nothing to close: the storage belongs to the app."""


def replay_cache_from_settings(
    redis_url: str | None,
    storage_provider: StorageProvider | None,
    *,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    clock: Callable[[], float] = time.time,
    timeout_seconds: float = 1.0,
) -> ReplayCache:
    """Redis when `redis_url` is set; else the database (`storage_provider`, looked up at call time);
    else a per-process in-memory cache (right for one process only). `timeout_seconds`: Redis's
    connect and read timeouts."""
    if redis_url:
        log.info("replay cache: Redis (shared by every replica)", extra={"event": "replay_cache", "reason": "redis"})
        return RedisReplayCache(redis_url, key_prefix, clock=clock, socket_timeout=timeout_seconds)
    if storage_provider is not None:
        log.info(
            "replay cache: database table seen_jti (shared by every replica on the database)",
            extra={"event": "replay_cache", "reason": "database"},
        )
        return DatabaseReplayCache(storage_provider, clock=clock)
    log.warning(
        "replay cache: in-memory, per process: with several workers or replicas a token can be replayed to another one",
        extra={"event": "replay_cache", "reason": "in_memory"},
    )
    return InMemoryReplayCache(clock=clock)


async def close_replay_cache(cache: ReplayCache) -> None:
    """Release what the cache holds (the Redis connection pool); for the app's shutdown."""
    closer = getattr(cache, "aclose", None)
    if closer is not None:
        await closer()
