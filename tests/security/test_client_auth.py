"""CDS Hooks client authentication over HTTP: signed JWTs from trusted CDS Clients only.

Two issuers with keys made here: an ES384 client whose JWK Set is a file, and an RS384 client whose
JWK Set is at a URL (respx stub) and which may also name one allow-listed `jku`. Every refusal is the
same 401 JSON answer with `WWW-Authenticate: Bearer` and never echoes the token; the log says why,
and each test checks that the reason logged is the one it meant to provoke.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cds_service.app import create_app
from cds_service.runtime import runtime_of
from cds_service.security import AuthSettings, InMemoryReplayCache, TrustedIssuer, install_client_auth
from cds_service.security.jwks import parse_jwks
from cds_service.settings import Settings
from tests.conftest import NOW, SERVICE_URL, load_fixture

BASE = "https://cds.example.org"
AUD = BASE + SERVICE_URL
FEEDBACK_URL = SERVICE_URL + "/feedback"

ISS_A = "https://ehr-a.example.com/"  # ES384, JWK Set in a file
ISS_B = "https://ehr-b.example.org"  # RS384, JWK Set at a URL, plus one allow-listed jku
JWKS_B = "https://ehr-b.example.org/.well-known/jwks.json"
JKU_B = "https://keys.ehr-b.example.org/cds/jwks.json"
JKU_EVIL = "https://attacker.example.net/jwks.json"

UNAUTHORIZED = {"error": "unauthorized", "message": "Client authentication failed."}
BODY = load_fixture("urgent-new-paraparesis")


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _jwk(private_key: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    algo = (
        jwt.algorithms.ECAlgorithm
        if isinstance(private_key, ec.EllipticCurvePrivateKey)
        else jwt.algorithms.RSAAlgorithm
    )
    jwk = algo.to_jwk(private_key.public_key(), as_dict=True)
    jwk.update(kid=kid, use="sig")
    if alg:
        jwk["alg"] = alg
    return jwk


# Keys are made once per test session (RSA generation is the slow part).
KEY_A = _ec_key()
KEY_B = _rsa_key()
KEY_B2 = _rsa_key()  # rotated-in key of issuer B
KEY_B_JKU = _rsa_key()  # the key issuer B publishes at its allow-listed jku
KEY_EVIL = _rsa_key()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Env:
    """The app under test, its clock, and the stubbed key servers."""

    def __init__(self, client: TestClient, router: respx.MockRouter, jwks_b: dict[str, Any], clock_offset: list[float]):
        self.client, self.router, self.jwks_b, self._offset = client, router, jwks_b, clock_offset
        self.jwks_b_route = router.get(JWKS_B).mock(side_effect=lambda request: httpx.Response(200, json=self.jwks_b))
        self.jku_route = router.get(JKU_B).mock(
            return_value=httpx.Response(200, json={"keys": [_jwk(KEY_B_JKU, "b-jku", "RS384")]})
        )
        self.evil_route = router.get(JKU_EVIL).mock(
            return_value=httpx.Response(200, json={"keys": [_jwk(KEY_EVIL, "b-1")]})
        )

    def now(self) -> float:
        return time.time() + self._offset[0]

    def advance(self, seconds: float) -> None:
        self._offset[0] += seconds

    def token(
        self,
        key: Any = KEY_A,
        alg: str = "ES384",
        kid: str = "a-1",
        iss: str = ISS_A,
        aud: Any = AUD,
        *,
        iat_offset: float = 0,
        lifetime: float = 300,
        headers: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        iat = int(self.now() + iat_offset)
        payload = {
            "iss": iss,
            "aud": aud,
            "iat": iat,
            "exp": iat + int(lifetime),
            "jti": str(uuid.uuid4()),
            "tenant": "org-1",
            **claims,
        }
        for name in drop:
            payload.pop(name)
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "JWT", **(headers or {})})

    def call(self, token: str | None, path: str = SERVICE_URL, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.post(path, json=BODY, headers=headers, **kwargs)


def _settings(**changes: Any) -> AuthSettings:
    return AuthSettings(**{"public_base_url": BASE, **changes})


def _issuers(tmp_path: Path) -> list[TrustedIssuer]:
    jwks_a = tmp_path / "ehr-a-jwks.json"
    jwks_a.write_text(json.dumps({"keys": [_jwk(KEY_A, "a-1")]}))
    return [
        TrustedIssuer(iss=ISS_A, jwks_file=jwks_a),
        TrustedIssuer(iss=ISS_B, jwks_url=JWKS_B, jku_allowlist=[JKU_B]),
    ]


@pytest.fixture()
def env(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Env]:
    caplog.set_level(logging.INFO, logger="cds_service.security")
    offset = [0.0]
    jwks_b = {"keys": [_jwk(KEY_B, "b-1", "RS384")]}
    app = create_app(clock=lambda: NOW, install_auth=False)
    http = httpx.AsyncClient()
    install_client_auth(app, _settings(trusted_issuers=_issuers(tmp_path)), http, clock=lambda: time.time() + offset[0])
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router, TestClient(app) as client:
        yield Env(client, router, jwks_b, offset)


def _refused(response: httpx.Response, token: str | None, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == UNAUTHORIZED
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/json")
    if token:
        everything = response.text + json.dumps(dict(response.headers))
        assert token not in everything
        assert all(part not in everything for part in token.split(".") if len(part) > 8)
    logged = [r.__dict__.get("reason") for r in caplog.records if r.name == "cds_service.security"]
    assert reason in logged, logged
    if token:
        assert not any(token in m or token.split(".")[1] in m for m in (r.getMessage() for r in caplog.records))
    caplog.clear()


def _ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["cards"][0]["indicator"] == "critical"


# --- accepted -----------------------------------------------------------------------------------


def test_valid_es384_token_from_a_file_jwks_is_accepted(env: Env) -> None:
    _ok(env.call(env.token()))


def test_valid_rs384_token_from_a_jwks_url_is_accepted(env: Env) -> None:
    _ok(env.call(env.token(KEY_B, "RS384", "b-1", ISS_B)))
    assert env.jwks_b_route.call_count == 1
    _ok(env.call(env.token(KEY_B, "RS384", "b-1", ISS_B)))
    assert env.jwks_b_route.call_count == 1  # cached


def test_aud_may_be_a_list_containing_the_service_url(env: Env) -> None:
    _ok(env.call(env.token(aud=["https://other.example.org/x", AUD])))


def test_discovery_needs_no_token(env: Env) -> None:
    response = env.client.get("/cds-services")
    assert response.status_code == 200 and response.json()["services"]


def test_feedback_accepts_the_service_url_or_the_feedback_url_as_aud(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    # No feedback route exists yet: getting past authentication means any answer but 401.
    for aud in (AUD, BASE + FEEDBACK_URL):
        assert env.call(env.token(aud=aud), FEEDBACK_URL).status_code != 401
    _refused(env.call(None, FEEDBACK_URL), None, caplog, "missing_authorization")
    token = env.token(aud=BASE + "/cds-services/another-service")
    _refused(env.call(token, FEEDBACK_URL), token, caplog, "wrong_audience")


def test_jku_on_the_allowlist_is_used(env: Env) -> None:
    _ok(env.call(env.token(KEY_B_JKU, "RS384", "b-jku", ISS_B, headers={"jku": JKU_B})))
    assert env.jku_route.call_count == 1 and env.evil_route.call_count == 0


def test_identity_is_available_to_the_app(env: Env) -> None:
    authenticator = runtime_of(env.client.app).client_authenticator
    identity = asyncio.run(authenticator.verify(f"Bearer {env.token()}", AUD))
    assert (identity.iss, identity.kid, identity.alg, identity.tenant) == (ISS_A, "a-1", "ES384", "org-1")


# --- refused ------------------------------------------------------------------------------------


def test_missing_or_non_bearer_authorization_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    _refused(env.call(None), None, caplog, "missing_authorization")
    token = env.token()
    _refused(
        env.client.post(SERVICE_URL, json=BODY, headers={"Authorization": f"Basic {token}"}),
        token,
        caplog,
        "not_bearer",
    )
    _refused(
        env.client.post(SERVICE_URL, json=BODY, headers={"Authorization": "Bearer not-a-jwt"}),
        None,
        caplog,
        "malformed_token",
    )
    both = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {env.token()}")]
    _refused(env.client.post(SERVICE_URL, json=BODY, headers=both), token, caplog, "several_authorization_headers")


def test_forged_signature_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    header, payload, signature = env.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["tenant"] = "another-org"
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    _refused(env.call(forged), forged, caplog, "bad_signature")


def test_wrong_key_with_the_right_kid_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    token = env.token(_ec_key(), "ES384", "a-1")
    _refused(env.call(token), token, caplog, "bad_signature")
    token = env.token(KEY_EVIL, "RS384", "b-1", ISS_B)
    _refused(env.call(token), token, caplog, "bad_signature")


def test_alg_none_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    good = env.token()
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "a-1"}).encode())
    token = f"{header}.{good.split('.')[1]}."
    _refused(env.call(token), token, caplog, "alg_not_allowed")


def test_hs256_signed_with_the_public_key_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    pem = KEY_B.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    payload = json.loads(base64.urlsafe_b64decode(env.token(KEY_B, "RS384", "b-1", ISS_B).split(".")[1] + "=="))
    for secret in (pem, json.dumps(_jwk(KEY_B, "b-1")).encode()):
        signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'b-1'}).encode())}.{_b64(json.dumps(payload).encode())}"
        token = f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
        _refused(env.call(token), token, caplog, "alg_not_allowed")


def test_alg_that_does_not_fit_the_key_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    # Allowed algorithms, wrong key: an ES256 header on the P-384 key, an RS256 header on a key published as RS384.
    token = env.token(ec.generate_private_key(ec.SECP256R1()), "ES256", "a-1")
    _refused(env.call(token), token, caplog, "alg_does_not_fit_key")
    token = env.token(KEY_B, "RS256", "b-1", ISS_B)
    _refused(env.call(token), token, caplog, "alg_does_not_fit_key")
    token = env.token(KEY_B, "RS384", "a-1")  # RSA signature naming the EC key
    _refused(env.call(token), token, caplog, "alg_does_not_fit_key")


def test_expired_token_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    token = env.token(iat_offset=-400, lifetime=300)  # expired 100 s ago, beyond the 60 s skew
    _refused(env.call(token), token, caplog, "expired")
    _ok(env.call(env.token(iat_offset=-330, lifetime=300)))  # expired 30 s ago: inside the skew


def test_iat_or_nbf_in_the_future_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    token = env.token(iat_offset=120)
    _refused(env.call(token), token, caplog, "iat_in_future")
    token = env.token(nbf=int(env.now()) + 120)
    _refused(env.call(token), token, caplog, "not_yet_valid")


def test_lifetime_over_the_cap_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    token = env.token(lifetime=3601)
    _refused(env.call(token), token, caplog, "lifetime_too_long")


def test_wrong_audience_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    for aud in (
        "https://cds.example.org/cds-services/another-service",
        "https://evil.example.net" + SERVICE_URL,
        AUD + "/",
        ["x", "y"],
    ):
        token = env.token(aud=aud)
        _refused(env.call(token), token, caplog, "wrong_audience")


def test_missing_claims_are_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    for claim in ("jti", "exp", "iat", "aud"):
        token = env.token(drop=(claim,))
        _refused(env.call(token), token, caplog, "missing_claim")
    token = env.token(kid="")
    _refused(env.call(token), token, caplog, "missing_kid")


def test_untrusted_issuer_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    token = env.token(KEY_EVIL, "RS384", "b-1", "https://evil.example.net/")
    _refused(env.call(token), token, caplog, "untrusted_issuer")
    token = env.token(iss=ISS_A.rstrip("/"))  # issuers match exactly
    _refused(env.call(token), token, caplog, "untrusted_issuer")
    # A trusted issuer's name with another trusted issuer's key and kid: the kid is not in A's set.
    token = env.token(KEY_B, "RS384", "b-1", ISS_A)
    _refused(env.call(token), token, caplog, "unknown_kid")


def test_jku_not_on_the_allowlist_is_refused_and_never_fetched(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    for jku in (JKU_EVIL, JKU_B + "?x=1", JKU_B.upper()):
        token = env.token(KEY_EVIL, "RS384", "b-1", ISS_B, headers={"jku": jku})
        _refused(env.call(token), token, caplog, "jku_not_allowed")
    token = env.token(headers={"jku": JKU_B})  # issuer A has no jku allowlist at all
    _refused(env.call(token), token, caplog, "jku_not_allowed")
    assert env.evil_route.call_count == 0 and env.jku_route.call_count == 0


def test_replayed_jti_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    token = env.token()
    _ok(env.call(token))
    _refused(env.call(token), token, caplog, "replayed_jti")
    # The same jti signed again as a new token is still a replay.
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    token = env.token(jti=jti)
    _refused(env.call(token), token, caplog, "replayed_jti")


def test_refused_tokens_do_not_burn_their_jti(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    bad = env.token(aud="https://elsewhere.example.org/")
    _refused(env.call(bad), bad, caplog, "wrong_audience")
    jti = jwt.decode(bad, options={"verify_signature": False})["jti"]
    _ok(env.call(env.token(jti=jti)))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # signing with it, in the test
def test_weak_rsa_key_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    weak = _rsa_key(1024)
    env.jwks_b["keys"] = [_jwk(weak, "weak")]
    token = env.token(weak, "RS384", "weak", ISS_B)
    _refused(env.call(token), token, caplog, "unusable_key")


def test_unauthenticated_call_is_refused_before_the_body_is_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(max_body_bytes=100), clock=lambda: NOW, install_auth=False)
    install_client_auth(app, _settings(trusted_issuers=_issuers(tmp_path)[:1]))
    with TestClient(app) as client:
        response = client.post(SERVICE_URL, json=BODY)
    _refused(response, None, caplog, "missing_authorization")  # 401, not 413


# --- keys: rotation, caching, availability ------------------------------------------------------


def test_unknown_kid_triggers_one_refresh_then_succeeds_after_rotation(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    _ok(env.call(env.token(KEY_B, "RS384", "b-1", ISS_B)))
    assert env.jwks_b_route.call_count == 1
    env.jwks_b["keys"] = [_jwk(KEY_B, "b-1", "RS384"), _jwk(KEY_B2, "b-2", "RS384")]  # the client rotates

    # Within 10 s of the last fetch an unknown kid does not refetch.
    token = env.token(KEY_B2, "RS384", "b-2", ISS_B)
    _refused(env.call(token), token, caplog, "unknown_kid")
    assert env.jwks_b_route.call_count == 1

    env.advance(11)
    _ok(env.call(env.token(KEY_B2, "RS384", "b-2", ISS_B)))
    assert env.jwks_b_route.call_count == 2
    _ok(env.call(env.token(KEY_B, "RS384", "b-1", ISS_B)))
    # A kid the client never published: refused, and no refetch storm.
    for _ in range(5):
        token = env.token(KEY_EVIL, "RS384", f"random-{uuid.uuid4()}", ISS_B)
        _refused(env.call(token), token, caplog, "unknown_kid")
    assert env.jwks_b_route.call_count == 2


def test_jwks_is_reloaded_after_the_cache_time(env: Env) -> None:
    _ok(env.call(env.token(KEY_B, "RS384", "b-1", ISS_B)))
    env.advance(301)
    _ok(env.call(env.token(KEY_B, "RS384", "b-1", ISS_B)))
    assert env.jwks_b_route.call_count == 2


def test_a_removed_key_stops_working_after_reload(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    _ok(env.call(env.token(KEY_B, "RS384", "b-1", ISS_B)))
    env.jwks_b["keys"] = [_jwk(KEY_B2, "b-2", "RS384")]
    env.advance(301)
    token = env.token(KEY_B, "RS384", "b-1", ISS_B)
    _refused(env.call(token), token, caplog, "unknown_kid")


def test_jwks_server_failure_refuses_first_and_keeps_a_loaded_set(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.jwks_b_route.mock(side_effect=httpx.ConnectError("down"))
    token = env.token(KEY_B, "RS384", "b-1", ISS_B)
    _refused(env.call(token), token, caplog, "jwks_unavailable")

    env.jwks_b_route.mock(side_effect=lambda request: httpx.Response(200, json=env.jwks_b))
    env.advance(11)
    _ok(env.call(env.token(KEY_B, "RS384", "b-1", ISS_B)))
    env.jwks_b_route.mock(return_value=httpx.Response(500))
    env.advance(301)  # expired, reload fails: the loaded set is still used for a while
    _ok(env.call(env.token(KEY_B, "RS384", "b-1", ISS_B)))
    env.advance(3600)  # too stale
    token = env.token(KEY_B, "RS384", "b-1", ISS_B)
    _refused(env.call(token), token, caplog, "jwks_unavailable")


def test_jwks_parsing_drops_unsafe_keys() -> None:
    private = _jwk(KEY_A, "with-d")
    private["d"] = "AAAA"
    keys = [
        _jwk(KEY_A, "ok"),
        private,
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {**_jwk(KEY_B, "enc"), "use": "enc"},
        {k: v for k, v in _jwk(KEY_B, "x").items() if k != "kid"},
        _jwk(KEY_B, "dup"),
        _jwk(KEY_B2, "dup"),
    ]
    assert list(parse_jwks(json.dumps({"keys": keys}).encode(), "test")) == ["ok"]
    with pytest.raises(ValueError):
        parse_jwks(b'{"not": "a jwks"}', "test")


# --- audience from the request, disabled mode, configuration ---------------------------------------


def test_without_public_base_url_the_aud_is_the_request_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cds_service.security")
    app = create_app(clock=lambda: NOW, install_auth=False)
    install_client_auth(app, AuthSettings(trusted_issuers=_issuers(tmp_path)[:1]))
    assert any("PUBLIC_BASE_URL is not set" in r.getMessage() for r in caplog.records)
    with respx.mock(assert_all_called=False) as router, TestClient(app) as client:
        env = Env(client, router, {"keys": []}, [0.0])
        _ok(env.call(env.token(aud="http://testserver" + SERVICE_URL)))
        token = env.token(aud=AUD)
        _refused(env.call(token), token, caplog, "wrong_audience")


def test_disabled_mode_warns_and_lets_calls_through(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(clock=lambda: NOW, install_auth=False)
    with caplog.at_level(logging.WARNING, logger="cds_service.security"):
        assert install_client_auth(app, AuthSettings(mode="disabled")) is None
    assert any(
        r.levelno == logging.WARNING and "client authentication is DISABLED: development only" in r.getMessage()
        for r in caplog.records
    )
    with TestClient(app) as client:
        _ok(client.post(SERVICE_URL, json=BODY))


def test_installing_twice_is_an_error(tmp_path: Path) -> None:
    app = create_app(clock=lambda: NOW, install_auth=False)
    install_client_auth(app, _settings(trusted_issuers=_issuers(tmp_path)[:1]))
    with pytest.raises(RuntimeError):
        install_client_auth(app, _settings(trusted_issuers=_issuers(tmp_path)[:1]))


@pytest.mark.parametrize("algorithms", [["none"], ["None"], ["HS256"], ["RS384", "HS512"], ["hs384"], ["EdDSA2"], []])
def test_settings_refuse_none_hmac_and_unknown_algorithms(algorithms: list[str]) -> None:
    with pytest.raises(ValidationError):
        AuthSettings(algorithms=algorithms)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CDS_AUTH_TRUSTED_ISSUERS", json.dumps([{"iss": ISS_B, "jwks_url": JWKS_B, "jku_allowlist": [JKU_B]}])
    )
    monkeypatch.setenv("CDS_AUTH_PUBLIC_BASE_URL", BASE + "/")
    settings = AuthSettings()
    assert settings.mode == "required" and settings.trusted_issuers[0].jku_allowlist == [JKU_B]
    assert settings.public_base_url == BASE
    assert settings.algorithms == ["ES384", "RS384", "ES256", "RS256", "ES512", "RS512"]
    monkeypatch.setenv("CDS_AUTH_ALGORITHMS", '["HS256"]')
    with pytest.raises(ValidationError):
        AuthSettings()


@pytest.mark.parametrize(
    "issuer",
    [
        {"iss": ISS_B},  # no key source
        {"iss": ISS_B, "jwks_url": "http://ehr-b.example.org/jwks"},  # plain http
        {"iss": ISS_B, "jwks_url": JWKS_B, "jwks_file": "/tmp/x.json"},  # two sources
        {"iss": ISS_B, "jwks_url": JWKS_B, "jku_allowlist": ["ftp://x.example.org/k"]},
    ],
)
def test_settings_refuse_bad_issuers(issuer: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AuthSettings(trusted_issuers=[issuer])


# --- replay cache ---------------------------------------------------------------------------------


def test_replay_cache_remembers_until_expiry_and_stays_bounded() -> None:
    now = [1000.0]
    cache = InMemoryReplayCache(max_entries=3, clock=lambda: now[0])

    async def scenario() -> None:
        assert await cache.first_use("j1", "iss", 1100)
        assert not await cache.first_use("j1", "iss", 1100)
        assert await cache.first_use("j1", "other-iss", 1100)  # jti is per issuer
        now[0] = 1101
        assert await cache.first_use("j1", "iss", 1200)  # expired entries are evicted
        assert len(cache) == 1
        for i in range(10):
            assert await cache.first_use(f"k{i}", "iss", 1300 + i)
        assert len(cache) == 3
        assert not await cache.first_use("k9", "iss", 1309)

    asyncio.run(scenario())
