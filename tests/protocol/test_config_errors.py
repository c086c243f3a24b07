"""Start-up configuration errors name the CDS_* environment variable, never its value (it may be a
secret) and never pydantic's field name."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cds_service.security.settings import AuthSettings
from cds_service.settings import ConfigurationError, Settings, load_settings
from cds_service.storage.settings import StorageSettings
from tests.conftest import ROOT

SECRET = "too-short-secret-4711"


def test_a_short_patient_hash_key_names_the_variable_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_PATIENT_HASH_KEY", SECRET)
    with pytest.raises(ConfigurationError) as raised:
        load_settings(StorageSettings)
    message = str(raised.value)
    assert message == "invalid configuration: CDS_PATIENT_HASH_KEY: must be at least 32 characters"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no pydantic error chained


@pytest.mark.parametrize(
    ("cls", "variable", "value", "expected"),
    [
        (Settings, "CDS_MAX_BODY_BYTES", "lots", "CDS_MAX_BODY_BYTES: Input should be a valid integer"),
        (
            Settings,
            "CDS_MAX_IN_FLIGHT_CALLS",
            "0",
            "CDS_MAX_IN_FLIGHT_CALLS: Input should be greater than or equal to 1",
        ),
        (AuthSettings, "CDS_AUTH_TRUSTED_ISSUERS", "{not json", "CDS_AUTH_TRUSTED_ISSUERS: not valid JSON"),
        (
            AuthSettings,
            "CDS_AUTH_TRUSTED_ISSUERS",
            '[{"iss": "https://ehr.example.com", "jwks_url": "ftp://keys.example.com/jwks"}]',
            "CDS_AUTH_TRUSTED_ISSUERS (at [0].jwks_url): must use https",
        ),
        (StorageSettings, "CDS_DATABASE_URL", "sqlite:///:memory:", "CDS_DATABASE_URL: an in-memory SQLite database"),
    ],
)
def test_errors_name_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, cls: type, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings(cls)
    message = str(raised.value)
    assert expected in message
    field = variable.removeprefix("CDS_AUTH_" if cls is AuthSettings else "CDS_").lower()
    assert field not in message.replace(variable, "")  # pydantic's name for it does not appear
    if len(value) > 4:
        assert value not in message


def test_cds_service_serve_refuses_to_start_with_one_line_naming_the_variable() -> None:
    env = {**os.environ, "CDS_PATIENT_HASH_KEY": SECRET, "CDS_AUTH_MODE": "disabled"}
    result = subprocess.run(
        [sys.executable, "-m", "cds_service.cli", "serve", "--port", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "cds-service: invalid configuration: CDS_PATIENT_HASH_KEY: must be at least 32 characters" in output
    assert SECRET not in output and "patient_hash_key" not in output and "Traceback" not in output
