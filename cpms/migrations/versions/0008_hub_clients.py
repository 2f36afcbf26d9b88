"""Hub clients: what each roaming hub says of its clients (OCPI HubClientInfo)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21 20:39:20.653354
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cpms.model.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hub_client",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "partner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("party_id", sa.String(length=3), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_updated", cpms.model.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", cpms.model.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["ocpi_partner.id"], name=op.f("fk_hub_client_partner_id_ocpi_partner")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hub_client")),
        sa.UniqueConstraint(
            "partner_id",
            "country_code",
            "party_id",
            name=op.f("uq_hub_client_partner_id_country_code_party_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("hub_client")
