"""The reviewed wording is checked against its schema when the app is built: a missing key, an unknown
key, a placeholder a text may not use, a summary of 140 characters or a direct link to an unverified
reference stops the start-up, instead of failing the first card of that level."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from cds_service.app import create_app
from cds_service.cards.content import (
    CONTENT_FILE,
    GUIDANCE_FILE,
    CardContentError,
    default_cards_dir,
    load_card_content,
    load_guidance_content,
)
from cds_service.settings import Settings
from tests.conftest import NO_AUTH, NOW


def _cards_dir(tmp_path: Path, replace: tuple[str, str] | None = None, file: str = CONTENT_FILE) -> Path:
    folder = tmp_path / "cards"
    shutil.copytree(default_cards_dir(), folder)
    if replace is not None:
        path = folder / file
        text = path.read_text()
        old, new = replace
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
    return folder


def _start(cards_dir: Path) -> None:
    create_app(settings=Settings(cards_dir=cards_dir), clock=lambda: NOW, auth=NO_AUTH)


def test_the_shipped_wording_loads() -> None:
    content = load_card_content()
    assert {r.code for r in content.override_reasons} == {
        "already-evaluated",
        "mri-contraindicated",
        "patient-declined",
        "not-clinically-relevant",
    }
    assert load_guidance_content().comparison.columns[0] == "MS-related back pain"


def test_a_copy_of_the_shipped_wording_starts(tmp_path: Path) -> None:
    _start(_cards_dir(tmp_path))  # the control for the failures below


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (  # the critical card's "what to do now" removed: no critical card could be built
            (
                'now = "**Evaluate now / same day:** immediate',
                'later = "**Evaluate now / same day:** immediate',
            ),
            "levels.urgent.now: Field required",
        ),
        (('quieted = "', 'quiet = "'), "detail.quieted: Field required"),
        (("{date}{reason}", "{day}{reason}"), "unknown placeholder(s) ['day']"),
        (('lead = "The order ({what})', 'lead = "The order ({order})'), "unknown placeholder(s) ['order']"),
        (
            (
                'summary = "Back pain in a patient with MS: consider MS-related mechanisms"',
                'summary = "' + "x" * 140 + '"',
            ),
            "levels.baseline.summary: String should have at most 139 characters",
        ),
        (('status = "AMBIGUOUS"\nlink = "title-search"', 'status = "AMBIGUOUS"\nlink = "direct"'), "VERIFIED"),
        (('when = ["spasticity", "spasm"]', 'when = ["spasticity", "spasms"]'), "unknown feature(s) ['spasms']"),
        (('lhermitte = "Lhermitte', 'lhermite = "Lhermitte'), "features must be exactly"),
        (('indicator = "critical"', 'indicator = "urgent"'), "levels.urgent.indicator"),
    ],
)
def test_a_mistake_in_the_wording_stops_the_start(tmp_path: Path, replace: tuple[str, str], message: str) -> None:
    with pytest.raises(CardContentError) as failure:
        _start(_cards_dir(tmp_path, replace))
    assert message in str(failure.value)


def test_a_mistake_in_the_guidance_page_stops_the_start(tmp_path: Path) -> None:
    broken = ('columns = ["MS-related back pain", ', "columns = [")
    with pytest.raises(CardContentError, match="comparison.columns"):
        _start(_cards_dir(tmp_path, broken, GUIDANCE_FILE))


def test_every_text_is_plain_toml_a_clinician_can_review() -> None:
    for name in (CONTENT_FILE, GUIDANCE_FILE):
        with (default_cards_dir() / name).open("rb") as handle:
            assert tomllib.load(handle)
