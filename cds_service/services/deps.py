"""What every CDS service of this server is built from: one typed bundle, made once by `create_app()`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cds_service.cards.content import CardContent
from cds_service.clinical.facts import RuleSettings
from cds_service.fhir.source import MissingDataFetcher
from cds_service.services.card_memory import CardMemory


@dataclass(frozen=True)
class ServiceDeps:
    fetcher: MissingDataFetcher  # reads prefetch keys the EHR did not send
    clock: Callable[[], dt.datetime]  # "now" (tests pin it)
    card_content: CardContent  # the reviewed card wording (cards/*.toml), checked at start-up
    rules: RuleSettings = RuleSettings()
    smart_app: tuple[str, str] | None = None  # (label, url) of an optional SMART app link
    memory: CardMemory | None = None  # issued cards and overrides (None: nothing remembered)
    # The base URL clients reach this service at (CDS_AUTH_PUBLIC_BASE_URL): the cards' link to the
    # guidance page. None: the base URL of each call.
    public_base_url: str | None = None
