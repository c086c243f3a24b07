#!/usr/bin/env python3
"""How fast is the governance report on a real history? 1,000,000 issued cards and 200,000 feedback
rows in PostgreSQL, then the report built several times; prints each build and the median.

    .venv/bin/python bench/report_history.py                 # ~1-2 minutes (most of it loading)
    .venv/bin/python bench/report_history.py --cards 100000 --feedback 20000 --builds 3

The history lives in a fresh database (`cds_bench_report_<random>`, created on the server of
CDS_BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test) that is dropped at the
end, even on failure. It is migrated with the service's own Alembic revisions (so it has exactly
the production indexes), loaded with COPY, then VACUUM ANALYZEd, as autovacuum would have done to a
table that grew over a year. Deterministic: the same --seed gives the same history.

History (one year up to now): three services (patient-view 70 %, order-select 15 %, order-sign
15 %), levels urgent 10 % / cord-features 30 % / baseline 60 %, 20,000 patients (zipf-like: some
charts are opened far more often), 8 % of patient-view cards downgraded after an override and 1 %
back at full level; 70 % of cards carry one suggestion. Feedback on 200,000 distinct cards: 35 %
accepted (that suggestion), 65 % overridden (the four offered reasons, or none, or an unlisted
one), from seconds to days after the card (log-normal, median ~ 10 minutes); 2 % of the cards get a
second, later answer.

A build is what GET /admin/report does: the SQL aggregates, the suppression and the HTML page.
Each build is timed with the machine's load average (`uptime`): the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from cds_service.cards.content import load_card_content  # noqa: E402
from cds_service.report import build_report, parse_period, publish, render_html  # noqa: E402
from cds_service.report.publish import offered_reasons  # noqa: E402
from cds_service.storage import StorageSettings, open_storage, upgrade_database  # noqa: E402

ADMIN_URL = os.environ.get("CDS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SERVICES = [("ms-back-pain-patient-view", 0.70), ("ms-back-pain-order-select", 0.15), ("ms-back-pain-order-sign", 0.15)]
LEVELS = [("urgent", 0.10), ("cord-features", 0.30), ("baseline", 0.60)]
INDICATOR = {"urgent": "critical", "cord-features": "warning", "baseline": "info"}
REASON_SYSTEM = "urn:ms-back-pain-cds:override-reason"
REASONS = [
    ("already-evaluated", "Already evaluated", 0.40),
    ("not-clinically-relevant", "Not clinically relevant", 0.30),
    ("patient-declined", "Patient declined", 0.10),
    ("mri-contraindicated", "MRI contraindicated", 0.05),
    (None, None, 0.13),  # no reason given
    ("local-other", "Other (local code)", 0.02),  # not offered on the card
]
LABEL = "Order MRI cervical and thoracic spine without and with contrast"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


def _stamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _copy_text(value: str | None) -> str:
    if value is None:
        return "\\N"
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def generate(conninfo: str, cards: int, feedback: int, now: dt.datetime, seed: int) -> None:
    rng = random.Random(seed)
    patients = [f"{rng.getrandbits(256):064x}" for _ in range(20_000)]
    weights = [1 / (i + 1) ** 0.6 for i in range(len(patients))]  # some charts are opened far more often
    chosen_patients = rng.choices(patients, weights, k=cards)
    year = 365 * 86400
    card_rows: list[tuple[str, str, str, dt.datetime, str | None]] = []  # uuid, service, patient, issued, suggestion
    buffer = io.StringIO()
    started = time.perf_counter()
    for i in range(cards):
        card_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        service = _pick(rng, SERVICES)
        level = _pick(rng, LEVELS)
        issued = now - dt.timedelta(seconds=rng.random() * year)
        fatigue = None
        if service.endswith("patient-view"):
            roll = rng.random()
            fatigue = "downgraded" if roll < 0.08 else "raised-again" if roll < 0.09 else None
        suggestion = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng.random() < 0.7 else None
        suggestions = json.dumps([{"id": suggestion, "label": LABEL}] if suggestion else [])
        indicator = "info" if fatigue == "downgraded" else INDICATOR[level]
        buffer.write(
            "\t".join(
                (
                    card_uuid,
                    service,
                    str(uuid.UUID(int=rng.getrandbits(128))),
                    chosen_patients[i],
                    indicator,
                    level,
                    "[]",
                    _stamp(issued),
                    _copy_text(fatigue),
                    _copy_text(suggestions),
                )
            )
            + "\n"
        )
        card_rows.append((card_uuid, service, chosen_patients[i], issued, suggestion))
    answered = rng.sample(range(cards), feedback)
    feedback_buffer = io.StringIO()
    rows = 0
    for n, index in enumerate(answered):
        card_uuid, service, patient, issued, suggestion = card_rows[index]
        answers = 2 if n < feedback * 0.02 else 1
        at = issued
        for _ in range(answers):
            if rows >= feedback:
                break
            at = at + dt.timedelta(seconds=min(rng.lognormvariate(6.4, 1.8), 20 * 86400))
            accepted = suggestion is not None and rng.random() < 0.35 / 0.7
            reason = None
            if not accepted:
                code, display, _ = rng.choices(REASONS, [r[2] for r in REASONS])[0]
                reason = json.dumps({"system": REASON_SYSTEM, "code": code, "display": display}) if code else None
            feedback_buffer.write(
                "\t".join(
                    (
                        card_uuid,
                        service,
                        "accepted" if accepted else "overridden",
                        _copy_text(json.dumps([{"id": suggestion}]) if accepted else None),
                        _copy_text(reason),
                        "\\N",
                        _stamp(at),
                        _stamp(at + dt.timedelta(seconds=2)),
                        patient,
                    )
                )
                + "\n"
            )
            rows += 1
    print(f"generated {cards:,} cards and {rows:,} feedback rows in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as connection:
        with connection.cursor() as cursor:
            with cursor.copy(
                "COPY issued_cards (card_uuid, service_id, hook_instance, patient_hash, indicator, level,"
                " red_flag_refs, issued_at, fatigue_action, suggestions) FROM STDIN"
            ) as copy:
                copy.write(buffer.getvalue())
            with cursor.copy(
                "COPY feedback (card_uuid, service_id, outcome, accepted_suggestions, override_reason, user_comment,"
                " outcome_timestamp, received_at, patient_hash) FROM STDIN"
            ) as copy:
                copy.write(feedback_buffer.getvalue())
        print(f"COPY done in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        connection.execute("VACUUM ANALYZE issued_cards")
        connection.execute("VACUUM ANALYZE feedback")
        print(f"VACUUM ANALYZE done in {time.perf_counter() - started:.1f} s")


async def time_builds(url: str, since: str, builds: int, now: dt.datetime) -> list[float]:
    storage = await open_storage(StorageSettings(database_url=url, migrate_on_startup=False))
    reasons = offered_reasons(load_card_content())
    period = parse_period(since, None, now)
    seconds = []
    try:
        for _ in range(builds + 1):  # the first warms the connection pool and the caches: not counted
            started = time.perf_counter()
            page = render_html(publish(await build_report(storage, period, now), reasons))
            seconds.append(time.perf_counter() - started)
    finally:
        await storage.close()
    assert "<svg" in page
    return seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--feedback", type=int, default=200_000)
    parser.add_argument("--builds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--since", nargs="+", default=["30d", "365d"], help="periods to time (default 30d 365d)")
    parser.add_argument("--reuse", metavar="DB", help="time an existing bench database (kept; for query work)")
    parser.add_argument("--keep", action="store_true", help="do not drop the new database (prints its name)")
    args = parser.parse_args()

    name = args.reuse or f"cds_bench_report_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(ADMIN_URL, autocommit=True)
    conninfo = psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name)
    url = "postgresql+psycopg://" + ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}"
    keep = bool(args.reuse or args.keep)
    try:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        if args.reuse:
            with psycopg.connect(conninfo) as connection:
                now = connection.execute("SELECT max(issued_at) FROM issued_cards").fetchone()[0]
        else:
            admin.execute(f'CREATE DATABASE "{name}"')
            upgrade_database(url)
            generate(conninfo, args.cards, args.feedback, now, args.seed)
        for since in args.since:
            print(f"before: {uptime()}")
            seconds = asyncio.run(time_builds(url, since, args.builds, now))
            print(
                f"report --since {since}: median {statistics.median(seconds):.3f} s over {len(seconds)} builds "
                f"({', '.join(f'{s:.3f}' for s in seconds)})"
            )
            print(f"after:  {uptime()}")
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
