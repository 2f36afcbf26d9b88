"""The transaction events of OCPP 2.0.1 stations, one row per (station, transaction, seqNo).

A 2.0.1 station reports a transaction as a numbered series of events (Started, Updated...,
Ended). Keeping each event's number is what makes a replayed event recognisable and an
out-of-order one harmless (FIELD-NOTES 8 and 9); keeping its trigger, charging state and
stopped reason is what an operator reads to learn why a session went the way it did.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, BigId, utcnow

__all__ = ["TransactionEvent"]


class TransactionEvent(Base):
    """One TransactionEvent a station sent, as far as the session needs to remember it."""

    __tablename__ = "transaction_event"
    __table_args__ = (UniqueConstraint("station_id", "transaction_id", "seq_no"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("charging_station.id"))
    transaction_id: Mapped[str] = mapped_column(String(36))
    seq_no: Mapped[int]
    session_id: Mapped[str | None] = mapped_column(ForeignKey("session.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(16))
    """Started, Updated or Ended."""
    trigger_reason: Mapped[str] = mapped_column(String(32))
    charging_state: Mapped[str | None] = mapped_column(String(16))
    stopped_reason: Mapped[str | None] = mapped_column(String(32))
    offline: Mapped[bool] = mapped_column(default=False)
    """Queued while the station was offline and sent on reconnect."""
    id_token: Mapped[str | None] = mapped_column(String(36))
    # The station's clock (may lie) and ours.
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
