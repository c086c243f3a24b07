"""The README's "Try it in the CDS Hooks Sandbox" and "Connect Epic" settings, run as written.

Each recipe's `export` lines are read from the README itself, so the README cannot drift from what
works: a token made the way that client makes it (the Sandbox: ES256 with a `jku` header; Epic:
RS384 with a `jku`, `nbf` five minutes before `iat`, a 15-minute lifetime) gets the card, and the
Sandbox's origin passes the CORS preflight. The key sets at the `jku` URLs are served by respx.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from cds_service.app import create_app
from tests.conftest import NOW, SERVICE_URL, load_fixture

README = Path(__file__).resolve().parents[2] / "README.md"


def recipe_environment(heading: str) -> dict[str, str]:
    """The variables the first `sh` block under `heading` exports."""
    text = README.read_text("utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no sh block under {heading!r}"
    env: dict[str, str] = {}
    for line in block.group(1).splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0]
    assert env, f"no export lines under {heading!r}"
    return env


def _jwk(private_key: Any, kid: str) -> dict[str, Any]:
    algo = (
        jwt.algorithms.ECAlgorithm
        if isinstance(private_key, ec.EllipticCurvePrivateKey)
        else jwt.algorithms.RSAAlgorithm
    )
    jwk: dict[str, Any] = algo.to_jwk(private_key.public_key(), as_dict=True)
    jwk.update(kid=kid, use="sig")
    return jwk


def _app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> TestClient:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CDS_AUTH_MODE", raising=False)
    return TestClient(create_app(clock=lambda: NOW))


def _request_from(env: dict[str, str]) -> dict[str, Any]:
    """The urgent fixture as this client would send it: its FHIR server is the allow-listed one."""
    (fhir_server,) = json.loads(env["CDS_FHIR_SERVER_ALLOWLIST"])
    body = load_fixture("urgent-new-paraparesis")
    body["fhirServer"] = fhir_server
    return body


def _empty_searches(router: respx.MockRouter, env: dict[str, str]) -> None:
    """Whatever the prefetch lacks is searched on the allow-listed server: nothing more is there."""
    (fhir_server,) = json.loads(env["CDS_FHIR_SERVER_ALLOWLIST"])
    router.route(url__startswith=fhir_server).mock(
        return_value=httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    )


def _issuer(env: dict[str, str]) -> dict[str, Any]:
    issuers = json.loads(env["CDS_AUTH_TRUSTED_ISSUERS"])
    assert len(issuers) == 1
    return dict(issuers[0])


def test_the_sandbox_recipe_accepts_a_token_made_as_the_sandbox_makes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    env = recipe_environment("Try it in the CDS Hooks Sandbox")
    issuer = _issuer(env)
    (jku,) = issuer["jku_allowlist"]
    key = ec.generate_private_key(ec.SECP256R1())
    kid = "d9cd3c4f-eb08-4304-b973-44f352fd2ca2"
    audience = env["CDS_AUTH_PUBLIC_BASE_URL"] + SERVICE_URL
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": issuer["iss"],
            "sub": "sandbox-client",
            "aud": audience,
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
        },
        key,
        algorithm="ES256",
        headers={"kid": kid, "jku": jku, "typ": "JWT"},
    )
    with contextlib.ExitStack() as stack, respx.mock(assert_all_called=False) as router:
        _empty_searches(router, env)
        router.get(jku).mock(return_value=httpx.Response(200, json={"keys": [_jwk(key, kid)]}))
        client = _app(env, monkeypatch)
        stack.enter_context(client)
        origin = "https://sandbox.cds-hooks.org"
        preflight = client.options(
            SERVICE_URL,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        answer = client.post(
            SERVICE_URL,
            json=_request_from(env),
            headers={"Authorization": f"Bearer {token}", "Origin": origin},
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == origin
    assert [card["indicator"] for card in answer.json()["cards"]] == ["critical"]


def test_the_epic_recipe_accepts_a_token_shaped_as_epics(monkeypatch: pytest.MonkeyPatch) -> None:
    env = recipe_environment("Connect Epic")
    issuer = _issuer(env)
    (jku,) = issuer["jku_allowlist"]
    assert env["CDS_FHIR_SERVER_ALLOWLIST"].count(issuer["iss"]) == 1  # the issuer is the FHIR endpoint
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = "d3bmo5HzW61TUgikHZH+A8Tx4UOXz2iOs4KvVU4eLY0="
    audience = env["CDS_AUTH_PUBLIC_BASE_URL"] + SERVICE_URL
    now = int(time.time())
    claims = {
        "iss": issuer["iss"],
        "sub": "epic-cds-client",
        "aud": audience,
        "iat": now,
        "nbf": now - 300,
        "exp": now + 900,
        "jti": str(uuid.uuid4()),
    }
    token = jwt.encode(claims, key, algorithm="RS384", headers={"kid": kid, "jku": jku, "typ": "JWT"})
    es256 = jwt.encode(
        {**claims, "jti": str(uuid.uuid4())},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": kid, "jku": jku},
    )
    with contextlib.ExitStack() as stack, respx.mock(assert_all_called=False) as router:
        _empty_searches(router, env)
        router.get(jku).mock(return_value=httpx.Response(200, json={"keys": [_jwk(key, kid)]}))
        client = _app(env, monkeypatch)
        stack.enter_context(client)
        answer = client.post(SERVICE_URL, json=_request_from(env), headers={"Authorization": f"Bearer {token}"})
        other_algorithm = client.post(
            SERVICE_URL, json=_request_from(env), headers={"Authorization": f"Bearer {es256}"}
        )
    assert answer.status_code == 200, answer.text
    assert [card["indicator"] for card in answer.json()["cards"]] == ["critical"]
    assert other_algorithm.status_code == 401  # the recipe accepts RS384 only
