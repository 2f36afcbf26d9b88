"""Tokens: the identifiers drivers authorize with, shaped like OCPI 2.2.1 Token.

Local tokens are created by the operator; eMSP tokens arrive over OCPI and carry the partner
they came from. Both are read by the one authorization service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, BigId, utcnow

__all__ = ["Token"]


class Token(Base):
    """An RFID card, app user or other identifier a session can be authorized with."""

    __tablename__ = "token"
    __table_args__ = (UniqueConstraint("country_code", "party_id", "uid", "type"),)

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    # OCPP idTag / idToken is looked up by uid alone, hence its own index.
    uid: Mapped[str] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(16), default="RFID")
    contract_id: Mapped[str] = mapped_column(String(36))
    visual_number: Mapped[str | None] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(64))
    group_id: Mapped[str | None] = mapped_column(String(36))
    valid: Mapped[bool] = mapped_column(default=True)
    whitelist: Mapped[str] = mapped_column(String(16), default="ALLOWED")
    language: Mapped[str | None] = mapped_column(String(2))
    default_profile_type: Mapped[str | None] = mapped_column(String(8))
    energy_contract: Mapped[dict[str, Any] | None]
    last_updated: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # "local" (operator) or "ocpi" (pushed by the partner below).
    source: Mapped[str] = mapped_column(String(8), default="local")
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("ocpi_partner.id"), index=True)


# OCPP idTags are case-insensitive (CiString): an idTag is found in any case with this index.
Index("ix_token_lower_uid", func.lower(Token.uid))
