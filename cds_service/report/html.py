"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no script, no font,
no link to anything. Its Content-Security-Policy (served as a header and repeated in a meta tag, so
a saved copy keeps it) allows nothing but this page's own stylesheet."""

from __future__ import annotations

import base64
import hashlib
from html import escape

from cds_service.report.publish import Item, Level, PublicReport, Service, Shown
from cds_service.report.stats import BURDEN_BUCKETS
from cds_service.report.svg import Series, rate_chart

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1d2329;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:2px solid #d0d7de}
h3{font-size:15px;margin:18px 0 6px}p.meta{color:#57606a;margin:0 0 12px}
table{border-collapse:collapse;margin:6px 0 14px}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right}
th{background:#f3f5f7;font-weight:600}td.l,th.l{text-align:left}
.level{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;margin:12px 0}
.cols{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.chart .grid{stroke:#e4e8ec;stroke-width:1}.chart .axis{font-size:11px;fill:#57606a}
.chart .line{fill:none;stroke-width:2}.chart .dot{stroke:none}.chart .empty{font-size:13px;fill:#57606a}
.chart .line.accepted{stroke:#1a7f37}.chart .dot.accepted{fill:#1a7f37}
.chart .line.overridden{stroke:#bc4c00;stroke-dasharray:6 4}.chart .dot.overridden{fill:#bc4c00}
.note{color:#57606a;font-size:12.5px}
"""
CSS_HASH = "sha256-" + base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")
# In the page itself (a saved copy keeps it; browsers ignore frame-ancestors in a meta tag) ...
META_CONTENT_SECURITY_POLICY = f"default-src 'none'; style-src '{CSS_HASH}'; form-action 'none'"
# ... and as the header of GET /admin/report.
CONTENT_SECURITY_POLICY = f"{META_CONTENT_SECURITY_POLICY}; frame-ancestors 'none'"

LEVEL_NAMES = {"urgent": "Urgent", "cord-features": "Cord features", "baseline": "Baseline"}


def _count(value: Shown) -> str:
    return escape(value) if isinstance(value, str) else f"{value:,}"  # "<5", "≥5", or the count


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _with_rate(count: Shown, value: float | None) -> str:
    return f"{_count(count)} <span class=note>({_rate(value)})</span>" if value is not None else _count(count)


def _duration(minutes: float | None) -> str:
    if minutes is None:
        return "—"
    if minutes < 90:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} d"


def _level_name(level: str) -> str:
    return LEVEL_NAMES.get(level, level)


def _items_table(caption: str, items: list[Item], what: str) -> str:
    if not items:
        return f"<h3>{escape(caption)}</h3><p class=note>none</p>"
    rows = "".join(
        f"<tr><td class=l>{escape(i.label)}</td><td class=l>{escape(i.code or '')}</td><td>{_count(i.count)}</td></tr>"
        for i in items
    )
    return (
        f"<div><h3>{escape(caption)}</h3><table><tr><th class=l>{escape(what)}</th><th class=l>code</th>"
        f"<th>cards</th></tr>{rows}</table></div>"
    )


def _summary_table(service: Service) -> str:
    head = (
        "<tr><th class=l>level</th><th>cards issued</th><th>patients reached</th><th>accepted</th>"
        "<th>overridden</th><th>no feedback</th><th>median time to feedback</th>"
        "<th>downgraded after an override</th><th>back at full level (new red flag)</th></tr>"
    )
    rows = "".join(
        f"<tr><td class=l>{escape(_level_name(lv.level))}</td>"
        f"<td>{_count(lv.issued)}</td><td>{_count(lv.patients)}</td>"
        f"<td>{_with_rate(lv.accepted, lv.acceptance_rate)}</td><td>{_with_rate(lv.overridden, lv.override_rate)}</td>"
        f"<td>{_with_rate(lv.no_feedback, lv.no_feedback_rate)}</td>"
        f"<td>{_duration(lv.median_minutes_to_feedback)}</td><td>{_count(lv.downgraded)}</td>"
        f"<td>{_count(lv.raised_again)}</td></tr>"
        for lv in service.levels
    )
    return f"<table class=summary>{head}{rows}</table>"


def _level_section(service: Service, level: Level) -> str:
    weeks = [w.week_start for w in level.weeks]
    chart = rate_chart(
        f"{service.service_id}, {_level_name(level.level)}: acceptance and override rate by week",
        weeks,
        [
            Series("accepted", "accepted", [w.acceptance_rate for w in level.weeks]),
            Series("overridden", "overridden", [w.override_rate for w in level.weeks]),
        ],
    )
    issued = "".join(f"<td>{_count(w.issued)}</td>" for w in level.weeks)
    week_heads = "".join(f"<th>{escape(w[5:])}</th>" for w in weeks)
    return (
        f'<section class="level" data-level="{escape(level.level)}"><h3>{escape(_level_name(level.level))}</h3>'
        f'<div class="cols"><div>{chart}</div>'
        f"{_items_table('Accepted: which suggestion', level.accepted_suggestions, 'suggestion')}"
        f"{_items_table('Overridden: why', level.override_reasons, 'reason')}</div>"
        f"<table class=weeks><tr><th class=l>week of</th>{week_heads}</tr>"
        f"<tr><td class=l>cards issued</td>{issued}</tr></table></section>"
    )


def _burden_table(service: Service) -> str:
    head = "".join(f"<th>{escape(b)} cards</th>" for b in BURDEN_BUCKETS)
    rows = "".join(
        f"<tr><td class=l>{escape(m.month)}</td><td>{_count(m.cards)}</td><td>{_count(m.patients)}</td>"
        f"<td>{'—' if m.cards_per_patient is None else f'{m.cards_per_patient:.2f}'}</td>"
        + "".join(f"<td>{_count(m.patients_by_cards[b])}</td>" for b in BURDEN_BUCKETS)
        + "</tr>"
        for m in service.months
    )
    return (
        "<h3>Alert burden: cards per patient per month</h3>"
        f"<table class=burden><tr><th class=l>month</th><th>cards</th><th>patients</th><th>cards per patient</th>"
        f"{head}</tr>{rows}</table>"
        "<p class=note>The last four columns count patients by how many cards of this service they had that month.</p>"
    )


def _service_section(service: Service) -> str:
    levels = "".join(_level_section(service, level) for level in service.levels)
    return (
        f'<section class="service" data-service="{escape(service.service_id)}">'
        f"<h2>{escape(service.service_id)}</h2>"
        f"<p class=meta>{_count(service.issued)} cards issued to {_count(service.patients)} patients.</p>"
        f"{_summary_table(service)}{levels}{_burden_table(service)}</section>"
    )


def render_html(report: PublicReport) -> str:
    services = "".join(_service_section(s) for s in report.services) or "<p>No card was issued in this period.</p>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{META_CONTENT_SECURITY_POLICY}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<title>CDS governance report</title>"
        f"<style>{CSS}</style></head><body>"
        "<h1>CDS governance report: how the cards perform</h1>"
        f"<p class=meta>Cards issued from {escape(report.since)} to {escape(report.until)} (UTC; end excluded). "
        f"Generated {escape(report.generated_at)}.</p>"
        f"<p class=note>Aggregates only. Every count under {report.suppression_threshold} (zero included) is shown as "
        "&lt;5, and a rate, mean or median only when the counts behind it are shown (else —); where counts add up to "
        "a shown total, another one is hidden too (≥5) so that no subtraction gives a small one back. "
        "A card's answer is its latest feedback; the time to feedback runs from the card to its first feedback. "
        "Weeks start on Monday; the first and last may be partial. Rates are of the cards issued.</p>"
        f"{services}"
        f"<p class=note>Feedback in this period on cards this service has no record of: "
        f"{_count(report.unmatched_feedback)}.</p>"
        "</body></html>"
    )
