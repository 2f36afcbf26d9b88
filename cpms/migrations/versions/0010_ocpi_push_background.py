"""OCPI pushes of a full sync go in the background: a partner's live pushes are sent first

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 04:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ocpi_push",
        sa.Column("background", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index(
        "ix_ocpi_push_partner_id_background_done_at_id",
        "ocpi_push",
        ["partner_id", "background", "done_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_ocpi_push_partner_id_background_done_at_id", table_name="ocpi_push")
    with op.batch_alter_table("ocpi_push") as batch:
        batch.drop_column("background")
