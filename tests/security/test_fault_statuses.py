"""Right status when authentication cannot be completed: a replay store that cannot answer is a 503
with Retry-After (never a 401 for a valid client), readiness says so, and every 401 is counted in
/metrics by its reason code (no token, no patient data)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.runtime import runtime_of
from cds_service.security import AuthSettings, TrustedIssuer
from cds_service.security.replay_shared import RedisReplayCache
from cds_service.settings import Settings
from cds_service.storage.settings import StorageSettings
from tests.conftest import NOW, SERVICE_URL, load_fixture

BASE = "https://cds.example.org"
ISS = "https://ehr-faults.example.com/"
KEY = ec.generate_private_key(ec.SECP384R1())
BODY = load_fixture("urgent-new-paraparesis")


def signed_token(aud: str = BASE + SERVICE_URL) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "sub": ISS, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, KEY, algorithm="ES384", headers={"kid": "faults-1", "typ": "JWT"})


def auth_settings(tmp_path: Path) -> AuthSettings:
    jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
    jwk.update(kid="faults-1", use="sig", alg="ES384")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return AuthSettings(trusted_issuers=[TrustedIssuer(iss=ISS, jwks_file=path)], public_base_url=BASE)


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_401_is_counted_by_reason_without_the_token(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(), clock=lambda: NOW, auth=auth_settings(tmp_path)))
    before = client.get("/metrics").text
    assert client.post(SERVICE_URL, json=BODY).status_code == 401
    wrong = signed_token(aud="https://elsewhere.example.org" + SERVICE_URL)
    assert client.post(SERVICE_URL, json=BODY, headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    after = client.get("/metrics").text
    for reason in ("missing_authorization", "wrong_audience"):
        assert _sample(after, "cds_auth_refusals_total", status="401", reason=reason) == (
            _sample(before, "cds_auth_refusals_total", status="401", reason=reason) + 1
        )
    assert wrong not in after and wrong.split(".")[1] not in after


def test_redis_unreachable_is_503_with_retry_after_not_401_and_readiness_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_seconds=0.3)
    storage = StorageSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/r.db", patient_hash_key="k" * 40)
    app = create_app(settings, clock=lambda: NOW, auth=auth_settings(tmp_path), storage=storage)
    assert isinstance(runtime_of(app).replay_cache, RedisReplayCache)
    with TestClient(app) as client:
        started = time.perf_counter()
        answer = client.post(SERVICE_URL, json=BODY, headers={"Authorization": f"Bearer {signed_token()}"})
        elapsed = time.perf_counter() - started
        assert answer.status_code == 503, answer.text
        assert answer.json() == {
            "error": "replay_store_unavailable",
            "message": "Client authentication cannot be completed at the moment; send the call again shortly.",
        }
        assert answer.headers["retry-after"] == "1"
        assert "www-authenticate" not in answer.headers
        assert elapsed < 2.0
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"
        assert ready.json()["checks"]["replayCache"].startswith("unreachable")
        assert ready.json()["checks"]["database"] == "ok"
        metrics = client.get("/metrics").text
        assert _sample(metrics, "cds_auth_refusals_total", status="503", reason="replay_store_unavailable") >= 1
        # Still a 401 for a client that is at fault: the replay store is asked last.
        assert client.post(SERVICE_URL, json=BODY).status_code == 401


def test_the_database_replay_cache_before_start_up_is_503_not_401(tmp_path: Path) -> None:
    app = create_app(Settings(), clock=lambda: NOW, auth=auth_settings(tmp_path))
    client = TestClient(app)  # not started: the database (the replay store here) is not open
    answer = client.post(SERVICE_URL, json=BODY, headers={"Authorization": f"Bearer {signed_token()}"})
    assert answer.status_code == 503 and answer.json()["error"] == "replay_store_unavailable"
    with TestClient(app) as started:
        answer = started.post(SERVICE_URL, json=BODY, headers={"Authorization": f"Bearer {signed_token()}"})
        assert answer.status_code == 200
        ready = started.get("/readyz").json()
        assert ready["status"] == "ready" and ready["checks"]["replayCache"] == "ok"
