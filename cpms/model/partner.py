"""OCPI partners: the eMSPs and hubs we exchange data with.

Tokens follow the credentials handshake (CHECKLIST 1.3): token A is issued for one pending
partner and works only for versions and credentials; afterwards the partner calls us with the
token we issued (kept hashed, we only compare it) and we call them with the token they gave us
(kept protected, since we must send it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, BigId, utcnow

__all__ = ["OcpiPartner"]


class OcpiPartner(Base):
    """A peer platform and the state of our registration with it."""

    __tablename__ = "ocpi_partner"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    # INVITED (token A issued), REGISTERED, UNREGISTERED
    state: Mapped[str] = mapped_column(String(16), default="INVITED")
    # Hashes of the tokens the partner may call us with.
    token_a_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    incoming_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The token we call the partner with, protected at rest.
    outgoing_token: Mapped[str | None] = mapped_column(String(512))
    auth_base64: Mapped[bool] = mapped_column(default=True)
    versions_url: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(8))
    # {module identifier: {role: url}} from their version details.
    endpoints: Mapped[dict[str, Any] | None]
    # Their CredentialsRole list (role, party_id, country_code, business_details).
    roles: Mapped[list[dict[str, Any]] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    registered_at: Mapped[datetime | None]
