"""System-wide integer transaction numbers.

OCPP 1.6 wants an integer transaction id from the central system; it must be unique across
every station and node, so it comes from one table's autoincrement (a sequence on PostgreSQL)
rather than from any per-station counter.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, BigId, utcnow

__all__ = ["TransactionNumber"]


class TransactionNumber(Base):
    """One issued transaction number and the session it was issued for."""

    __tablename__ = "transaction_number"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(36), unique=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
