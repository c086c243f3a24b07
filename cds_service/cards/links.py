"""What every card carries besides its text: the source, the links (the full guidance first, then the
article's references) and the override reasons."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

from cds_service.cards.content import CardContent, Reference
from cds_service.protocol.models import Coding, Link, Source

GUIDANCE_PATH = "/guidance/ms-back-pain"
PUBMED_SEARCH = "https://pubmed.ncbi.nlm.nih.gov/?term="


def guidance_url(base_url: str) -> str:
    """The guidance page under the service's public base URL (as clients reach the service)."""
    return base_url.rstrip("/") + GUIDANCE_PATH


def card_source(content: CardContent) -> Source:
    return Source(label=content.source.label, topic=Coding(**content.source.topic.model_dump()))


def override_reasons(content: CardContent) -> list[Coding]:
    system = content.override_reason_system.uri
    return [Coding(system=system, code=r.code, display=r.display) for r in content.override_reasons]


def override_reason_display(content: CardContent, reason: Mapping[str, Any] | None) -> str | None:
    """The reason a clinician gave for an override, as a clinician reads it: our display for one of our
    codes, else the display the client sent; never a bare code."""
    if not reason:
        return None
    code = reason.get("code")
    ours = {r.code: r.display for r in content.override_reasons}
    if isinstance(code, str) and code in ours:
        return ours[code]
    display = reason.get("display")
    return display if isinstance(display, str) and display.strip() else None


def reference_link(reference: Reference, content: CardContent) -> Link | None:
    """A direct link for a VERIFIED reference, a PubMed search by its exact title otherwise."""
    if reference.link == "direct" and reference.url and reference.label:
        return Link(label=reference.label, url=reference.url, type="absolute")
    if reference.link == "title-search":
        return Link(
            label=content.references.search_label.format(title=reference.title),
            url=PUBMED_SEARCH + quote_plus(reference.title),
            type="absolute",
        )
    return None


# The reference links of a content, built once: the same on every card (nothing changes a Link once built).
_REFERENCE_LINKS: dict[int, tuple[CardContent, tuple[Link, ...]]] = {}


def reference_links(content: CardContent) -> tuple[Link, ...]:
    cached = _REFERENCE_LINKS.get(id(content))
    if cached is None or cached[0] is not content:
        ordered = sorted(content.references.items, key=lambda r: r.link != "direct")  # direct links first
        links = tuple(link for ref in ordered if (link := reference_link(ref, content)) is not None)
        cached = _REFERENCE_LINKS[id(content)] = (content, links)
    return cached[1]


def card_links(content: CardContent, guidance: str | None, smart_app: tuple[str, str] | None) -> list[Link]:
    links = [Link(label=content.guidance.link_label, url=guidance, type="absolute")] if guidance else []
    links += reference_links(content)
    if smart_app is not None:
        label, url = smart_app
        links.append(Link(label=label, url=url, type="smart"))
    return links
