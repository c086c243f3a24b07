"""feedback.patient_hash: find a patient's overrides without reading every card issued to them

The override look-up ran from the patient's issued cards (one per chart opening with a card) to
their feedback: its cost grew with how often the chart had been opened. It now runs from the
patient's overrides, which are few, through this column and its index. Existing rows are filled
from issued_cards.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_feedback_service_id_patient_hash_outcome_outcome_timestamp"


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:  # SQLite: ALTER through a table copy where needed
        batch.add_column(sa.Column("patient_hash", sa.String(64), nullable=True))
    op.create_index(INDEX, "feedback", ["service_id", "patient_hash", "outcome", "outcome_timestamp"])
    op.execute(
        "UPDATE feedback SET patient_hash = (SELECT c.patient_hash FROM issued_cards c"
        " WHERE c.card_uuid = feedback.card_uuid AND c.service_id = feedback.service_id)"
        " WHERE patient_hash IS NULL"
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="feedback")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("patient_hash")
