"""The governance report for the CDS committee: per service and card level, how often the cards
fired, how clinicians answered them and why they overrode them, week by week; aggregates only.

    stats = await build_report(storage, parse_period("30d", None, now))   # SQL aggregates
    public = publish(stats, card_content)                                  # small counts suppressed
    html = render_html(public); data = public.to_json()

Served by `routes.router` (GET /admin/report, /admin/report.json; CDS_ADMIN_TOKEN) and written by
`cds-service report --since 30d --out report.html`.
"""

from __future__ import annotations

from cds_service.report.build import build_report
from cds_service.report.html import render_html
from cds_service.report.period import Period, PeriodError, parse_period
from cds_service.report.publish import PublicReport, publish

__all__ = ["Period", "PeriodError", "PublicReport", "build_report", "parse_period", "publish", "render_html"]
