"""Loads the clinician-reviewed card wording (cards/*.toml) once, at start-up."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

CONTENT_FILE = "ms-back-pain.toml"


def default_cards_dir() -> Path:
    """The repository's cards/ folder in a checkout, or the copy packed into the wheel."""
    checkout = Path(__file__).resolve().parents[2] / "cards"
    if (checkout / CONTENT_FILE).is_file():
        return checkout
    return Path(str(resources.files("cds_service").joinpath("_content", "cards")))


@cache
def load_card_content(cards_dir: Path | None = None) -> dict[str, Any]:
    path = (cards_dir or default_cards_dir()) / CONTENT_FILE
    with path.open("rb") as handle:
        content = tomllib.load(handle)
    summaries = {f"levels.{level}": text["summary"] for level, text in content["levels"].items()}
    for kind, text in content.get("orders", {}).items():
        summaries.update({f"orders.{kind}.{key}": value for key, value in text.items() if key.startswith("summary")})
    for where, summary in summaries.items():
        if len(summary) >= 140:
            raise ValueError(f"card summary {where} is {len(summary)} characters; CDS Hooks wants < 140")
    return content
