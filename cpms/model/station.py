"""Charging stations: the OCPP side of the infrastructure.

A station is identified by the id it uses in its websocket URL (``/ocpp/{id}``). It belongs
to a location; its EVSEs are ``Evse`` rows pointing back at it. What it reports at boot is
kept here, as are its connection state and its credentials (the password hash only).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cpms.model.base import Base, utcnow

if TYPE_CHECKING:
    from cpms.model.location import Location

__all__ = ["ChargingStation"]


class ChargingStation(Base):
    """An OCPP charging station (OCPP 1.6 "charge point")."""

    __tablename__ = "charging_station"

    # OCPP 1.6 chargeBoxIdentity is CiString(48) in practice; 2.0.1 identity is string(48).
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("location.id"), index=True)
    # pbkdf2-sha256 of the Security Profile 1 password; None means no password is set.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # "operator" (created through the API or CLI) or "admission" (registered on connect).
    registered_by: Mapped[str] = mapped_column(String(16), default="operator")
    # Accept what strict schemas would refuse from this station (FIELD-NOTES 12).
    lenient: Mapped[bool] = mapped_column(default=False)
    # Whether its BootNotification is Accepted; a station registered on connect under the
    # "pending" admission policy waits (Pending) until an operator approves it.
    approved: Mapped[bool] = mapped_column(default=True)

    # What the station said at boot.
    ocpp_version: Mapped[str | None] = mapped_column(String(16))
    vendor: Mapped[str | None] = mapped_column(String(50))
    model: Mapped[str | None] = mapped_column(String(50))
    serial_number: Mapped[str | None] = mapped_column(String(50))
    firmware_version: Mapped[str | None] = mapped_column(String(50))
    iccid: Mapped[str | None] = mapped_column(String(20))
    imsi: Mapped[str | None] = mapped_column(String(20))
    meter_type: Mapped[str | None] = mapped_column(String(25))
    meter_serial_number: Mapped[str | None] = mapped_column(String(25))
    boot_status: Mapped[str | None] = mapped_column(String(16))
    last_boot_at: Mapped[datetime | None]

    # Connection state.
    online: Mapped[bool] = mapped_column(default=False)
    connected_node: Mapped[str | None] = mapped_column(String(64))
    connected_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    retired_at: Mapped[datetime | None]

    location: Mapped[Location] = relationship(back_populates="stations")

    @property
    def retired(self) -> bool:
        """Whether the operator has retired this station (it may no longer connect)."""
        return self.retired_at is not None
