"""issued_cards.fatigue_action and .suggestions, and the indexes of the governance report

The report (cds_service/report) counts, per period, service and card level, the cards the
alert-fatigue rule downgraded or brought back at full level (`fatigue_action`), and names the
suggestion a clinician accepted (`suggestions`: the card's suggestion ids and labels; feedback
carries only the id). Both are NULL on cards issued before this revision.

Two indexes: the first leads with `issued_at` (the period) and holds every column the card counts
group by, and the card's id for the join to its feedback, so they read the index only; the second
gives the distinct patients per service and level in index order (no hashing, no sorting).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the column type (a revision must not change when models.py does).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
INDEX = "ix_issued_cards_issued_at_report"
PATIENTS_INDEX = "ix_issued_cards_service_id_level_patient_hash_issued_at"


def upgrade() -> None:
    with op.batch_alter_table("issued_cards") as batch:  # SQLite: ADD COLUMN needs no table copy
        batch.add_column(sa.Column("fatigue_action", sa.String(16), nullable=True))
        batch.add_column(sa.Column("suggestions", JSON, nullable=True))
    op.create_index(
        INDEX, "issued_cards", ["issued_at", "service_id", "level", "patient_hash", "fatigue_action", "card_uuid"]
    )
    op.create_index(PATIENTS_INDEX, "issued_cards", ["service_id", "level", "patient_hash", "issued_at"])


def downgrade() -> None:
    op.drop_index(PATIENTS_INDEX, table_name="issued_cards")
    op.drop_index(INDEX, table_name="issued_cards")
    with op.batch_alter_table("issued_cards") as batch:
        batch.drop_column("suggestions")
        batch.drop_column("fatigue_action")
