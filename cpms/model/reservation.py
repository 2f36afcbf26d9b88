"""Reservations of an EVSE (or of any EVSE of a location) for a token.

``id`` is the charger-side reservation id (OCPP wants an integer), unique across all eMSPs;
the eMSP's own ``reservation_id`` is kept beside it and never sent to a station.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, BigId, utcnow

__all__ = ["Reservation"]


class Reservation(Base):
    """A reservation requested by the operator or an eMSP."""

    __tablename__ = "reservation"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("ocpi_partner.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(36))
    location_id: Mapped[str] = mapped_column(ForeignKey("location.id"))
    evse_uid: Mapped[str | None] = mapped_column(ForeignKey("evse.uid"))
    station_id: Mapped[str | None] = mapped_column(ForeignKey("charging_station.id"), index=True)
    connector_id: Mapped[str | None] = mapped_column(String(36))
    token: Mapped[dict[str, Any]]
    authorization_reference: Mapped[str | None] = mapped_column(String(36))
    expiry_date: Mapped[datetime]
    # REQUESTED, ACCEPTED, REJECTED, CANCELLED, EXPIRED, USED
    status: Mapped[str] = mapped_column(String(16), default="REQUESTED")
    response_url: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
