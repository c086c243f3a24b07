"""Public keys of trusted CDS Clients: one cached JWK Set per source (a file or an https URL).

- A set is loaded on first use and kept `cache_seconds`; after that the next call reloads it.
- A `kid` not in the set triggers one reload, at most once per `min_refresh_seconds` per source, so
  a key rotation is picked up at once and random `kid`s cannot make us hammer the client's server.
- If a reload fails the previous set stays in use for up to `max_stale_seconds` past its expiry.
- A token's `jku` header is followed only when it equals an entry of its issuer's `jku_allowlist`
  (or the issuer's configured `jwks_url`, which is the same trusted URL); otherwise nothing is fetched.
- Only signature keys of type EC or RSA are kept; private key material, `oct` (HMAC) keys, keys
  without a `kid` and duplicated `kid`s are dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from cds_service.security.settings import TrustedIssuer

log = logging.getLogger("cds_service.security")

MAX_JWKS_BYTES = 512 * 1024
MAX_KEYS = 100
FETCH_TIMEOUT_SECONDS = 5.0
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

Jwk = Mapping[str, Any]


class KeySetUnavailable(Exception):
    """No usable JWK Set for this source (never loaded, or too stale)."""


class JkuNotAllowed(Exception):
    """The token names a `jku` that is not on its issuer's allowlist."""


def parse_jwks(raw: bytes, label: str) -> dict[str, Jwk]:
    """JWK Set bytes -> {kid: public signature JWK}. Raises ValueError if it is not a JWK Set."""
    document = json.loads(raw)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: dict[str, Jwk] = {}
    duplicated: set[str] = set()
    for jwk in document["keys"][:MAX_KEYS]:
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or jwk.get("kty") not in ("EC", "RSA"):
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        ops = jwk.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        if _PRIVATE_MEMBERS & jwk.keys():
            log.warning(
                "JWK Set publishes private key material (kid ignored); tell the client",
                extra={"event": "jwks", "jwks": label, "reason": "private_key_material"},
            )
            continue
        if kid in keys or kid in duplicated:
            duplicated.add(kid)
            keys.pop(kid, None)
            continue
        keys[kid] = dict(jwk)
    if duplicated:
        log.warning(
            "JWK Set has duplicated kids; those keys are not used",
            extra={"event": "jwks", "jwks": label, "reason": "duplicated_kid", "count": len(duplicated)},
        )
    return keys


class JwksSource:
    """One JWK Set location with its cache, reload rules and a lock against concurrent reloads."""

    def __init__(
        self,
        location: str | Path,
        http: httpx.AsyncClient | None,
        cache_seconds: float,
        clock: Callable[[], float] = time.time,
        min_refresh_seconds: float = 10.0,
        max_stale_seconds: float = 3600.0,
    ):
        if isinstance(location, str) and http is None:
            raise ValueError("an httpx.AsyncClient is needed to read a JWKS URL")
        self.location = location
        self._http = http
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._min_refresh = min_refresh_seconds
        self._max_stale = max_stale_seconds
        self._keys: dict[str, Jwk] | None = None
        self._fetched_at = -math.inf
        self._last_attempt = -math.inf
        self._lock = asyncio.Lock()
        self.loads = 0  # successful loads, for tests and metrics

    @property
    def label(self) -> str:
        return str(self.location)

    async def key(self, kid: str) -> Jwk | None:
        """The key with this `kid`, reloading the set when expired or (once) when the kid is unknown."""
        if self._expired():
            async with self._lock:
                if self._expired() and self._may_attempt():
                    await self._reload("expired" if self._keys is not None else "first use")
        keys = self._usable()
        if kid in keys:
            return keys[kid]
        async with self._lock:
            keys = self._usable()
            if kid not in keys and self._may_attempt():
                await self._reload("unknown kid")
                keys = self._usable()
        return keys.get(kid)

    def _expired(self) -> bool:
        return self._keys is None or self._clock() - self._fetched_at >= self._cache_seconds

    def _may_attempt(self) -> bool:
        return self._clock() - self._last_attempt >= self._min_refresh

    def _usable(self) -> dict[str, Jwk]:
        if self._keys is None or self._clock() - self._fetched_at > self._cache_seconds + self._max_stale:
            raise KeySetUnavailable(self.label)
        return self._keys

    async def _reload(self, why: str) -> None:
        self._last_attempt = self._clock()
        try:
            keys = parse_jwks(await self._read(), self.label)
        except (httpx.HTTPError, OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning(
                "JWK Set could not be loaded",
                extra={"event": "jwks", "jwks": self.label, "reason": why, "error_type": type(exc).__name__},
            )
            return
        self._keys, self._fetched_at = keys, self._clock()
        self.loads += 1
        log.info("JWK Set loaded", extra={"event": "jwks", "jwks": self.label, "reason": why, "count": len(keys)})

    async def _read(self) -> bytes:
        if isinstance(self.location, Path):
            return await asyncio.to_thread(_read_file, self.location)
        assert self._http is not None
        async with self._http.stream(
            "GET",
            self.location,
            headers={"Accept": "application/jwk-set+json, application/json"},
            timeout=FETCH_TIMEOUT_SECONDS,
            follow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_JWKS_BYTES:
                    raise ValueError("JWKS too large")
                chunks.append(chunk)
            return b"".join(chunks)


def _read_file(path: Path) -> bytes:
    with path.open("rb") as f:
        raw = f.read(MAX_JWKS_BYTES + 1)
    if len(raw) > MAX_JWKS_BYTES:
        raise ValueError("JWKS too large")
    return raw


class IssuerKeys:
    """The key sources of one trusted issuer: its agreed JWK Set, and the `jku` URLs it may name."""

    def __init__(self, issuer: TrustedIssuer, make_source: Callable[[str | Path], JwksSource]):
        self.issuer = issuer
        location = issuer.jwks_url or issuer.jwks_file
        self.default = make_source(location) if location is not None else None
        self.by_jku: dict[str, JwksSource] = {url: make_source(url) for url in issuer.jku_allowlist}
        if issuer.jwks_url and self.default is not None:
            self.by_jku.setdefault(issuer.jwks_url, self.default)

    async def key(self, kid: str, jku: str | None) -> Jwk | None:
        if jku is None:
            if self.default is None:
                raise JkuNotAllowed("issuer has no agreed JWK Set: a jku on its allowlist is required")
            return await self.default.key(kid)
        source = self.by_jku.get(jku)  # exact string match, no normalisation
        if source is None:
            raise JkuNotAllowed("jku not on the issuer's allowlist")
        return await source.key(kid)


class JwksKeyStore:
    """Key sources for every trusted issuer (exact `iss` match)."""

    def __init__(
        self,
        issuers: Iterable[TrustedIssuer],
        http: httpx.AsyncClient | None,
        cache_seconds: float,
        clock: Callable[[], float] = time.time,
        min_refresh_seconds: float = 10.0,
    ):
        def make_source(location: str | Path) -> JwksSource:
            return JwksSource(location, http, cache_seconds, clock, min_refresh_seconds)

        self._issuers = {i.iss: IssuerKeys(i, make_source) for i in issuers}

    def for_issuer(self, iss: str) -> IssuerKeys | None:
        return self._issuers.get(iss)
