"""Meter samples are indexed by session only: no query read the index by station

Every meter reading wrote into ``ix_meter_sample_station_id_received_at`` at its station's
place, one more page per reading for the write-ahead log and the checkpoint, and nothing
read it (samples are read by session: a replay's check, a CDR's signed values).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 12:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_meter_sample_station_id_received_at", table_name="meter_sample")


def downgrade() -> None:
    op.create_index(
        "ix_meter_sample_station_id_received_at", "meter_sample", ["station_id", "received_at"]
    )
