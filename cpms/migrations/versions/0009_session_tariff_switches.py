"""Session tariff switches: a charging preference accepted mid-session changes the tariff

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21 23:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("session", sa.Column("tariff_switches", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("session") as batch:
        batch.drop_column("tariff_switches")
