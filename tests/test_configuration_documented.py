"""Every setting is documented where an operator looks: README's Configuration table and `.env.example`,
and the defaults `.env.example` gives are the service's own."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from cds_service.security.settings import AuthSettings
from cds_service.settings import Settings
from cds_service.storage.settings import StorageSettings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (Settings, StorageSettings, AuthSettings)


def environment_names() -> list[str]:
    return [
        (str(cls.model_config.get("env_prefix", "")) + name).upper()
        for cls in SETTINGS_CLASSES
        for name in cls.model_fields
    ]


def env_example() -> dict[str, str | None]:
    """NAME -> value for `NAME=value` lines, NAME -> None for commented `# NAME=` lines."""
    found: dict[str, str | None] = {}
    for line in (ROOT / ".env.example").read_text("utf-8").splitlines():
        match = re.match(r"^(#\s*)?(CDS_[A-Z0-9_]+)=(.*)$", line)
        if match:
            value = match.group(3)
            found[match.group(2)] = None if match.group(1) else (shlex.split(value)[0] if value else "")
    return found


@pytest.mark.parametrize("name", environment_names())
def test_every_setting_has_a_row_in_the_readme_configuration_table(name: str) -> None:
    table = (ROOT / "README.md").read_text("utf-8").split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    assert f"| `{name}` |" in table or f"`{name}` /" in table or f"/ `{name}` |" in table


@pytest.mark.parametrize("name", environment_names())
def test_every_setting_is_in_env_example(name: str) -> None:
    assert name in env_example()


def test_the_values_env_example_sets_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment_names():
        monkeypatch.delenv(name, raising=False)
    defaults = [cls() for cls in SETTINGS_CLASSES]
    for name, value in env_example().items():
        if value is not None:
            monkeypatch.setenv(name, value)
    assert [cls() for cls in SETTINGS_CLASSES] == defaults
