"""The report's aggregate queries: every count is made by the database (GROUP BY), none by Python.

Four statements, each over the cards issued in the period (`issued_at` range: the leading column of
`ix_issued_cards_issued_at_report`, which also holds every
column the card counts group by, so they read the index only):

- CARDS: per service, level and week of issue: cards, downgraded, raised again.
- PATIENTS: distinct patients per service and level, and per service (one pass).
- BURDEN: per service and month, patients and cards, and patients by how many cards they had.
- ANSWERS: from the cards' answers (a card's latest feedback), found once: per service, level, week
  and answer, cards, with the override reason (system, code, display); per service and level, the
  accepted suggestions' labels, and the median seconds from the card to its first feedback.

A card's answer is its latest feedback (a correction supersedes); the delay is to its first. The
SQL differs between SQLite and PostgreSQL only in date arithmetic and JSON access (`Dialect`).
Values are always bound, never formatted into the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import TextClause, bindparam, text

from cds_service.storage.models import FATIGUE_DOWNGRADED, FATIGUE_RAISED_AGAIN, UtcDateTime


@dataclass(frozen=True)
class Dialect:
    """The SQL fragments that differ between the two databases."""

    week: str  # {col} -> the Monday of its week, as a date / "YYYY-MM-DD"
    month: str  # {col} -> "YYYY-MM"
    seconds: str  # {a}, {b} -> seconds from b to a
    json_text: str  # {col}, {key} -> the text of a top-level key
    elements: str  # {col}, {alias} -> a table of the array's elements, column `value`
    element_text: str  # {alias}, {key} -> the text of a key of one element


POSTGRESQL = Dialect(
    week="CAST(date_trunc('week', {col} AT TIME ZONE 'UTC') AS date)",
    month="to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM')",
    seconds="EXTRACT(EPOCH FROM ({a} - {b}))",
    json_text="({col} ->> '{key}')",
    elements="jsonb_array_elements(CASE WHEN jsonb_typeof({col}) = 'array' THEN {col} END) AS {alias}(value)",
    element_text="({alias}.value ->> '{key}')",
)
SQLITE = Dialect(
    week="date({col}, 'weekday 0', '-6 days')",
    month="strftime('%Y-%m', {col})",
    seconds="((julianday({a}) - julianday({b})) * 86400.0)",
    json_text="json_extract({col}, '$.{key}')",
    elements="json_each(CASE WHEN json_type({col}) = 'array' THEN {col} END) AS {alias}",
    element_text="json_extract({alias}.value, '$.{key}')",
)
DIALECTS = {"postgresql": POSTGRESQL, "sqlite": SQLITE}

_IN_PERIOD = "{c}.issued_at >= :since AND {c}.issued_at < :until"


def _bound(sql: str) -> TextClause:
    return text(sql).bindparams(bindparam("since", type_=UtcDateTime()), bindparam("until", type_=UtcDateTime()))


@dataclass(frozen=True)
class Statements:
    cards: TextClause
    patients: TextClause
    burden: TextClause
    answers: TextClause
    unmatched_feedback: TextClause


def _answers_cte(d: Dialect) -> str:
    """The cards of the period that have feedback, one row each: the latest answer, the first time."""
    return f"""
WITH answered AS (
    SELECT c.card_uuid, c.service_id, c.level, c.issued_at, f.outcome, f.override_reason,
           f.accepted_suggestions,
           MIN(f.outcome_timestamp) OVER (PARTITION BY f.card_uuid, f.service_id) AS first_at,
           ROW_NUMBER() OVER (
               PARTITION BY f.card_uuid, f.service_id ORDER BY f.outcome_timestamp DESC, f.id DESC
           ) AS latest
    FROM issued_cards c
    JOIN feedback f ON f.card_uuid = c.card_uuid AND f.service_id = c.service_id
    WHERE {_IN_PERIOD.format(c="c")}
), answers AS (
    SELECT * FROM answered WHERE latest = 1
)"""


@cache
def statements(dialect_name: str) -> Statements:
    d = DIALECTS[dialect_name]
    week = d.week.format(col="issued_at")
    month = d.month.format(col="issued_at")
    cards = f"""
SELECT service_id, level, {week} AS week, COUNT(*) AS issued,
       SUM(CASE WHEN fatigue_action = '{FATIGUE_DOWNGRADED}' THEN 1 ELSE 0 END) AS downgraded,
       SUM(CASE WHEN fatigue_action = '{FATIGUE_RAISED_AGAIN}' THEN 1 ELSE 0 END) AS raised_again
FROM issued_cards
WHERE {_IN_PERIOD.format(c="issued_cards")}
GROUP BY service_id, level, {week}"""
    # One pass over the cards: (service, level, patient) once each; the per-service count reads that.
    patients = f"""
WITH per_patient AS (
    SELECT service_id, level, patient_hash FROM issued_cards
    WHERE {_IN_PERIOD.format(c="issued_cards")}
    GROUP BY service_id, level, patient_hash
)
SELECT service_id, level, COUNT(*) AS patients FROM per_patient GROUP BY service_id, level
UNION ALL
SELECT service_id, NULL, COUNT(DISTINCT patient_hash) FROM per_patient GROUP BY service_id"""
    burden = f"""
SELECT service_id, month, COUNT(*) AS patients, SUM(cards) AS cards,
       SUM(CASE WHEN cards = 1 THEN 1 ELSE 0 END) AS with_1,
       SUM(CASE WHEN cards BETWEEN 2 AND 3 THEN 1 ELSE 0 END) AS with_2_3,
       SUM(CASE WHEN cards BETWEEN 4 AND 9 THEN 1 ELSE 0 END) AS with_4_9,
       SUM(CASE WHEN cards >= 10 THEN 1 ELSE 0 END) AS with_10_more
FROM (SELECT service_id, {month} AS month, patient_hash, COUNT(*) AS cards
      FROM issued_cards WHERE {_IN_PERIOD.format(c="issued_cards")}
      GROUP BY service_id, {month}, patient_hash) AS per_patient_month
GROUP BY service_id, month"""
    reason = {key: d.json_text.format(col="override_reason", key=key) for key in ("system", "code", "display")}
    label = (
        f"(SELECT {d.element_text.format(alias='offered', key='label')}"
        f" FROM {d.elements.format(col='card.suggestions', alias='offered')}"
        f" WHERE {d.element_text.format(alias='offered', key='id')} = {d.element_text.format(alias='picked', key='id')}"
        " LIMIT 1)"
    )
    delay = d.seconds.format(a="first_at", b="issued_at")
    # One statement, so the answers are found once: three aggregates of them, told apart by `kind`.
    answers = f"""{_answers_cte(d)}, picked_labels AS (
    SELECT answers.service_id, answers.level, {label} AS label
    FROM answers
    JOIN issued_cards card ON card.card_uuid = answers.card_uuid
    CROSS JOIN {d.elements.format(col="answers.accepted_suggestions", alias="picked")}
    WHERE answers.outcome = 'accepted'
), ranked AS (
    SELECT service_id, level, seconds,
           ROW_NUMBER() OVER (PARTITION BY service_id, level ORDER BY seconds) AS position,
           COUNT(*) OVER (PARTITION BY service_id, level) AS n_answered
    FROM (SELECT service_id, level, CASE WHEN {delay} < 0 THEN 0 ELSE {delay} END AS seconds FROM answers) AS delays
)
SELECT 'outcome' AS kind, service_id, level, {week} AS week, outcome,
       {reason["system"]} AS reason_system, {reason["code"]} AS reason_code,
       {reason["display"]} AS reason_display, COUNT(*) AS cards, CAST(NULL AS DOUBLE PRECISION) AS median_seconds
FROM answers
GROUP BY service_id, level, {week}, outcome, {reason["system"]}, {reason["code"]}, {reason["display"]}
UNION ALL
SELECT 'suggestion', service_id, level, NULL, NULL, NULL, NULL, label, COUNT(*), NULL
FROM picked_labels
GROUP BY service_id, level, label
UNION ALL
SELECT 'delay', service_id, level, NULL, NULL, NULL, NULL, NULL, n_answered, CAST(AVG(seconds) AS DOUBLE PRECISION)
FROM ranked
WHERE position IN ((n_answered + 1) / 2, (n_answered + 2) / 2)
GROUP BY service_id, level, n_answered"""
    # Feedback stamped in the period on a card this database has no record of (its patient_hash
    # stays NULL until the card is known): a data-quality figure, not attributable to a level.
    unmatched = """
SELECT COUNT(*) FROM feedback
WHERE patient_hash IS NULL AND outcome_timestamp >= :since AND outcome_timestamp < :until"""
    return Statements(
        cards=_bound(cards),
        patients=_bound(patients),
        burden=_bound(burden),
        answers=_bound(answers),
        unmatched_feedback=_bound(unmatched),
    )
