"""Hub clients: the parties a roaming hub says it connects us to, and how they are connected.

A hub tells us about its clients through OCPI HubClientInfo (CHECKLIST 9): it PUTs a
ClientInfo when a client's connection changes, and we may pull its whole list. We keep what
each hub said, per hub (the partner that told us), keyed by the client's country code and
party id, upper-cased (they are CiStrings).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, BigId, utcnow

__all__ = ["HubClient"]


class HubClient(Base):
    """One client of a hub as the hub last described it (an OCPI ClientInfo)."""

    __tablename__ = "hub_client"
    __table_args__ = (UniqueConstraint("partner_id", "country_code", "party_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The hub that told us (an OCPI partner); its unique key above serves lookups by hub.
    partner_id: Mapped[int] = mapped_column(ForeignKey("ocpi_partner.id"))
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    # OCPI Role: CPO, EMSP, HUB, NAP, NSP, OTHER, SCSP.
    role: Mapped[str] = mapped_column(String(8))
    # OCPI ConnectionStatus: CONNECTED, OFFLINE, PLANNED, SUSPENDED.
    status: Mapped[str] = mapped_column(String(16))
    # The hub's own last_updated of the ClientInfo; an older one never replaces a newer one.
    last_updated: Mapped[datetime]
    # When we stored it.
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
