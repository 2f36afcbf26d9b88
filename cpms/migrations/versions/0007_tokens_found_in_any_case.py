"""Tokens: an index on lower(uid), so an idTag is found in any case

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 18:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_token_lower_uid", "token", [sa.text("lower(uid)")], unique=False)


def downgrade() -> None:
    op.drop_index("ix_token_lower_uid", table_name="token")
