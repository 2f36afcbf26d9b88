"""The transactional outbox and the operator's credentials.

An ``OutboxEntry`` is a domain event written in the same database transaction as the change
it reports, so nothing is lost between "saved" and "sent". Pushers claim entries (on
PostgreSQL with ``FOR UPDATE SKIP LOCKED``) and mark them processed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, BigId, utcnow

__all__ = ["AdminToken", "OutboxEntry"]


class OutboxEntry(Base):
    """A domain event waiting to be delivered to whoever must hear of it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_processed_at_id", "processed_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    aggregate_type: Mapped[str] = mapped_column(String(32))
    aggregate_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    processed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class AdminToken(Base):
    """A bearer token for the operator API, stored as its SHA-256 only."""

    __tablename__ = "admin_token"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
