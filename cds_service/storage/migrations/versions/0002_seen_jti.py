"""seen_jti: client-token ids already accepted (replay protection shared across replicas)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Frozen copies of the column types of cds_service/storage/replay_model.py.
    op.create_table(
        "seen_jti",
        sa.Column("iss", sa.Text(), nullable=False),
        sa.Column("jti", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("iss", "jti", name=op.f("pk_seen_jti")),
    )
    op.create_index(op.f("ix_seen_jti_expires_at"), "seen_jti", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_seen_jti_expires_at"), table_name="seen_jti")
    op.drop_table("seen_jti")
