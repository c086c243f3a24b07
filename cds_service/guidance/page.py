"""The guidance page as one self-contained HTML document: no PHI (the same page for every patient), no
external assets (inline CSS only, allowed by its hash in the Content-Security-Policy), readable on a
phone (viewport meta; the comparison table becomes one block per feature on narrow screens)."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from html import escape

from cds_service.cards.content import CardContent, GuidanceContent, Reference
from cds_service.cards.links import reference_link

CSS = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;background:#fff}
main{max-width:60rem;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;line-height:1.25;margin:.5rem 0 1rem}
h2{font-size:1.2rem;margin:1.75rem 0 .5rem}
p,li,td,th,caption{overflow-wrap:anywhere}
.urgent{border-left:.4rem solid #b00020;background:#fdecee;padding:.75rem 1rem;margin:1rem 0}
.urgent h2{margin-top:0;color:#b00020}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{border:1px solid #c8c8c8;padding:.5rem;vertical-align:top;text-align:left}
thead th{background:#eef2f7}
tbody th{background:#f7f7f7;width:16%}
ul,ol{padding-left:1.25rem}
a{color:#0b57d0}
footer{margin-top:2rem;font-size:.9rem;color:#444}
@media (max-width:40rem){
  table,caption,thead,tbody,tr,th,td{display:block;width:100%}
  thead{position:absolute;left:-9999px;top:auto;width:1px;height:1px;overflow:hidden}
  tbody tr{border:1px solid #c8c8c8;margin:0 0 1rem}
  tbody th{border:0;border-bottom:1px solid #c8c8c8;width:100%}
  td{border:0;border-bottom:1px solid #eee}
  td::before{content:attr(data-label);display:block;font-weight:600;font-size:.85rem;color:#444}
}
""".strip()

_BOLD = re.compile(r"\*\*(.+?)\*\*")


@dataclass(frozen=True)
class GuidancePage:
    html: bytes
    content_security_policy: str


def _text(value: str) -> str:
    """Reviewed plain text as HTML: escaped; **bold** is the only markup."""
    return _BOLD.sub(r"<strong>\1</strong>", escape(value, quote=False))


def _style_hash(css: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()


def _reference_item(reference: Reference, content: CardContent) -> str:
    numbers = ", ".join(str(n) for n in reference.numbers)
    link = reference_link(reference, content)
    if link is None:
        body = f"{escape(reference.title)} <em>(no verified link)</em>"
    else:
        body = f'<a href="{escape(link.url)}" rel="noopener noreferrer">{escape(link.label)}</a>'
    return f"<li>[{numbers}] {body}</li>"


def _comparison(guidance: GuidanceContent) -> str:
    table = guidance.comparison
    head = "".join(f'<th scope="col">{escape(c)}</th>' for c in table.columns)
    rows = "".join(
        f'<tr><th scope="row">{escape(row.feature)}</th>'
        + "".join(
            f'<td data-label="{escape(column)}">{_text(cell)}</td>'
            for column, cell in zip(table.columns, row.cells, strict=True)
        )
        + "</tr>"
        for row in table.rows
    )
    return (
        f'<section><h2 id="comparison">{escape(table.heading)}</h2>'
        f'<table id="comparison-table"><caption>{escape(table.caption)}</caption>'
        f'<thead><tr><th scope="col">{escape(table.feature_header)}</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _list(heading: str, anchor: str, items: list[str], lead: str | None = None) -> str:
    lead_html = f"<p>{_text(lead)}</p>" if lead else ""
    entries = "".join(f"<li>{_text(item)}</li>" for item in items)
    return f'<section><h2 id="{anchor}">{escape(heading)}</h2>{lead_html}<ul>{entries}</ul></section>'


def render_guidance(guidance: GuidanceContent, content: CardContent) -> GuidancePage:
    management = guidance.management
    body = "".join(
        [
            f"<h1>{escape(guidance.title)}</h1>",
            f"<p>{_text(guidance.intro)}</p>",
            f'<section class="urgent" id="urgent"><h2>{escape(guidance.urgent.heading)}</h2>'
            f"<p>{_text(guidance.urgent.text)}</p></section>",
            _comparison(guidance),
            _list(guidance.red_flags.heading, "red-flags", guidance.red_flags.items, guidance.red_flags.lead),
            _list(guidance.evaluation.heading, "evaluation", guidance.evaluation.items, guidance.evaluation.lead),
            _list(
                management.heading,
                "management",
                [f"**{item.mechanism}:** {item.text}" for item in management.items],
                management.lead,
            ),
            f"<p>{_text(guidance.management_note.text)}</p>",
            f'<footer><h2 id="source">{escape(guidance.source.heading)}</h2><p>{_text(guidance.source.text)}</p>'
            f"<h2>{escape(guidance.source.references_heading)}</h2><ul>"
            + "".join(_reference_item(r, content) for r in sorted(content.references.items, key=lambda r: r.numbers))
            + "</ul></footer>",
        ]
    )
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(guidance.title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    policy = (
        f"default-src 'none'; style-src '{_style_hash(CSS)}'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return GuidancePage(html=html.encode(), content_security_policy=policy)
