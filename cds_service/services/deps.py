"""What every CDS service of this server is built from: one typed bundle, made once by `create_app()`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cds_service.clinical.facts import RuleSettings
from cds_service.fhir.source import MissingDataFetcher
from cds_service.services.card_memory import CardMemory


@dataclass(frozen=True)
class ServiceDeps:
    fetcher: MissingDataFetcher  # reads prefetch keys the EHR did not send
    clock: Callable[[], dt.datetime]  # "now" (tests pin it)
    card_content: dict[str, Any]  # the reviewed card wording (cards/*.toml)
    rules: RuleSettings = RuleSettings()
    smart_app: tuple[str, str] | None = None  # (label, url) of an optional SMART app link
    memory: CardMemory | None = None  # issued cards and overrides (None: nothing remembered)
