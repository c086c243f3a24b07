"""Verifying the JWT a CDS Client sends with each call (CDS Hooks 2.0, "Trusting CDS Clients").

Signature and audience checks use PyJWT; the key is chosen by us, never by the token: the issuer
must be trusted, the key comes from that issuer's agreed JWK Set (or an allow-listed `jku`), and the
header `alg` must be on the allowlist *and* fit the key (EC curve / RSA), so `none`, HMAC-with-a-
public-key and algorithm-confusion tokens cannot verify. Time claims are checked here, with one
clock shared with the replay cache.

Every refusal raises `AuthenticationFailed(reason)`: `reason` is a fixed code for the logs; it never
holds token content, and it is never sent to the caller.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK

from cds_service.security.jwks import JkuNotAllowed, JwksKeyStore, KeySetUnavailable
from cds_service.security.replay import ReplayCache, ReplayStoreUnavailable
from cds_service.security.settings import AuthSettings

log = logging.getLogger("cds_service.security")

MAX_TOKEN_CHARS = 16 * 1024
MAX_ID_CHARS = 256
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")  # empty signature: refused by alg
_EC_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]


class AuthenticationFailed(Exception):
    """The client is not authenticated. `reason` is for logs only."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ClientIdentity:
    """Who called, as established by a verified token."""

    iss: str
    kid: str
    alg: str
    jti: str
    expires_at: float
    tenant: str | None = None
    sub: str | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _key_fits(jwk: Mapping[str, Any], alg: str) -> bool:
    """The header `alg` must be one this key is for: never an HMAC or another key type's algorithm."""
    declared = jwk.get("alg")
    if declared is not None and declared != alg:
        return False
    if alg in _EC_CURVE:
        return jwk.get("kty") == "EC" and jwk.get("crv") == _EC_CURVE[alg]
    if alg[:2] in ("RS", "PS"):
        return jwk.get("kty") == "RSA"
    return False


class ClientAuthenticator:
    def __init__(
        self,
        settings: AuthSettings,
        keys: JwksKeyStore,
        replay: ReplayCache,
        clock: Callable[[], float] = time.time,
    ):
        self._algorithms = frozenset(settings.algorithms)
        self._skew = settings.clock_skew_seconds
        self._max_lifetime = settings.max_token_lifetime_seconds
        self._keys = keys
        self._replay = replay
        self._clock = clock

    async def verify(self, authorization_header: str | None, audience: str | Sequence[str]) -> ClientIdentity:
        """Verify `Authorization: Bearer <jwt>` for a call whose URL is `audience` (or any of several)."""
        audiences = [audience] if isinstance(audience, str) else list(audience)
        try:
            return await self._verify(authorization_header, audiences)
        except (AuthenticationFailed, ReplayStoreUnavailable):
            raise  # ReplayStoreUnavailable: neither accepted nor refused (the caller answers 503)
        except Exception as exc:  # fail closed, whatever broke
            log.error("client authentication error", extra={"event": "client_auth", "error_type": type(exc).__name__})
            raise AuthenticationFailed("internal_error") from None

    async def _verify(self, authorization_header: str | None, audiences: list[str]) -> ClientIdentity:
        token = _bearer_token(authorization_header)

        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthenticationFailed("malformed_token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthenticationFailed("alg_not_allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthenticationFailed("bad_typ")
        if "crit" in header:
            raise AuthenticationFailed("crit_not_supported")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_ID_CHARS:
            raise AuthenticationFailed("missing_kid")
        jku = header.get("jku")
        if jku is not None and not isinstance(jku, str):
            raise AuthenticationFailed("jku_not_allowed")

        iss = unverified.get("iss")
        if not isinstance(iss, str):
            raise AuthenticationFailed("untrusted_issuer")
        issuer_keys = self._keys.for_issuer(iss)
        if issuer_keys is None:
            raise AuthenticationFailed("untrusted_issuer")
        try:
            jwk = await issuer_keys.key(kid, jku)
        except JkuNotAllowed:
            raise AuthenticationFailed("jku_not_allowed") from None
        except KeySetUnavailable:
            raise AuthenticationFailed("jwks_unavailable") from None
        if jwk is None:
            raise AuthenticationFailed("unknown_kid")
        if not _key_fits(jwk, alg):
            raise AuthenticationFailed("alg_does_not_fit_key")
        try:
            key = PyJWK(dict(jwk), algorithm=alg)
        except jwt.PyJWTError:
            raise AuthenticationFailed("unusable_key") from None

        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audiences,
                issuer=iss,
                options={
                    "require": _REQUIRED_CLAIMS,
                    "verify_exp": False,  # time claims: checked below with our clock
                    "verify_iat": False,
                    "verify_nbf": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("bad_signature") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed("wrong_audience") from None
        except jwt.MissingRequiredClaimError:
            raise AuthenticationFailed("missing_claim") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed("untrusted_issuer") from None
        except jwt.InvalidKeyError:
            raise AuthenticationFailed("unusable_key") from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("invalid_token") from None

        exp = self._check_times(claims)
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > MAX_ID_CHARS:
            raise AuthenticationFailed("bad_jti")
        # Last, so only verified tokens take a place in the replay cache.
        if not await self._replay.first_use(jti, iss, exp + self._skew):
            raise AuthenticationFailed("replayed_jti")
        tenant, sub = claims.get("tenant"), claims.get("sub")
        return ClientIdentity(
            iss=iss,
            kid=kid,
            alg=alg,
            jti=jti,
            expires_at=exp,
            tenant=tenant if isinstance(tenant, str) else None,
            sub=sub if isinstance(sub, str) else None,
        )

    def _check_times(self, claims: Mapping[str, Any]) -> float:
        now = self._clock()
        exp, iat = _number(claims["exp"]), _number(claims["iat"])
        if exp is None or iat is None:
            raise AuthenticationFailed("bad_time_claim")
        if exp <= now - self._skew:
            raise AuthenticationFailed("expired")
        if iat > now + self._skew:
            raise AuthenticationFailed("iat_in_future")
        if "nbf" in claims:
            nbf = _number(claims["nbf"])
            if nbf is None:
                raise AuthenticationFailed("bad_time_claim")
            if nbf > now + self._skew:
                raise AuthenticationFailed("not_yet_valid")
        if exp <= iat or exp - iat > self._max_lifetime:
            raise AuthenticationFailed("lifetime_too_long")
        return exp


def _bearer_token(authorization_header: str | None) -> str:
    if not authorization_header:
        raise AuthenticationFailed("missing_authorization")
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationFailed("not_bearer")
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthenticationFailed("token_too_large")
    if not _COMPACT_JWS.fullmatch(token):
        raise AuthenticationFailed("malformed_token")
    return token
