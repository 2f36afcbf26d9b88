"""The station log: what a station told us, or we asked of it, that is worth keeping.

Security events, firmware and diagnostics progress, vendor data transfers, stops for
transactions nobody knows, what leniency tolerated, and every command sent with its outcome.
Operators read it per station (newest first); nothing in it drives state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, BigId, utcnow

__all__ = ["StationEvent"]


class StationEvent(Base):
    """One entry of a station's log."""

    __tablename__ = "station_event"
    __table_args__ = (Index("ix_station_event_station_id_id", "station_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("charging_station.id"))
    # security, firmware, diagnostics, data_transfer, unknown_transaction, tolerated, command,
    # boot, clock, meter; from 2.0.1 stations also report, event, reservation, smart_charging,
    # customer_information, display_message
    kind: Mapped[str] = mapped_column(String(32))
    # What the station says happened when (its clock, may lie); when we heard of it (ours).
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    summary: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any] | None]
