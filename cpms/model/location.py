"""Locations, EVSEs and connectors: the charging infrastructure, shaped like OCPI 2.2.1.

Every OCPI 2.2.1 field has a home here, so the OCPI documents in ``cpms.documents`` are
mappings and not guesses. Nested OCPI values nobody queries by (opening hours, images,
energy mix, business details...) are kept as JSON in their OCPI form.

Identity (DESIGN.md): an OCPP 1.6 connector is one EVSE with one connector; an OCPP 2.0.1
EVSE is one EVSE with its connectors. ``Evse.uid`` is stable and never reused; EVSEs are never
deleted, only set to ``REMOVED``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cpms.model.base import Base, utcnow

if TYPE_CHECKING:
    from cpms.model.station import ChargingStation

__all__ = ["Connector", "Evse", "Location"]


class Location(Base):
    """A site with EVSEs, as OCPI 2.2.1 Location."""

    __tablename__ = "location"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    publish: Mapped[bool] = mapped_column(default=True)
    publish_allowed_to: Mapped[list[dict[str, Any]] | None]
    name: Mapped[str | None] = mapped_column(String(255))
    address: Mapped[str] = mapped_column(String(255))
    city: Mapped[str] = mapped_column(String(45))
    postal_code: Mapped[str | None] = mapped_column(String(10))
    state: Mapped[str | None] = mapped_column(String(45))
    country: Mapped[str] = mapped_column(String(3))
    latitude: Mapped[str] = mapped_column(String(10))
    longitude: Mapped[str] = mapped_column(String(11))
    related_locations: Mapped[list[dict[str, Any]] | None]
    parking_type: Mapped[str | None] = mapped_column(String(32))
    directions: Mapped[list[dict[str, Any]] | None]
    operator: Mapped[dict[str, Any] | None]
    suboperator: Mapped[dict[str, Any] | None]
    owner: Mapped[dict[str, Any] | None]
    facilities: Mapped[list[str] | None]
    time_zone: Mapped[str] = mapped_column(String(255))
    opening_times: Mapped[dict[str, Any] | None]
    charging_when_closed: Mapped[bool | None]
    images: Mapped[list[dict[str, Any]] | None]
    energy_mix: Mapped[dict[str, Any] | None]
    last_updated: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]

    evses: Mapped[list[Evse]] = relationship(
        back_populates="location", order_by="Evse.position", cascade="all, delete-orphan"
    )
    stations: Mapped[list[ChargingStation]] = relationship(back_populates="location")

    def touch(self, at: datetime) -> None:
        """Record a change at ``at`` (never moving ``last_updated`` backwards)."""
        if self.last_updated is None or at > self.last_updated:
            self.last_updated = at


class Evse(Base):
    """One EVSE: what OCPI calls an EVSE and OCPP 2.0.1 calls an EVSE."""

    __tablename__ = "evse"
    __table_args__ = (
        UniqueConstraint("station_id", "ocpp_evse_id"),
        Index("ix_evse_location_id_position", "location_id", "position"),
    )

    uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("location.id"))
    position: Mapped[int] = mapped_column(default=0)
    # The OCPP side: which station serves this EVSE and under which number
    # (OCPP 1.6 connectorId, OCPP 2.0.1 evseId). Null for an EVSE not yet wired to a station.
    station_id: Mapped[str | None] = mapped_column(ForeignKey("charging_station.id"), index=True)
    ocpp_evse_id: Mapped[int | None]
    evse_id: Mapped[str | None] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(16), default="UNKNOWN")
    status_schedule: Mapped[list[dict[str, Any]] | None]
    capabilities: Mapped[list[str] | None]
    floor_level: Mapped[str | None] = mapped_column(String(4))
    latitude: Mapped[str | None] = mapped_column(String(10))
    longitude: Mapped[str | None] = mapped_column(String(11))
    physical_reference: Mapped[str | None] = mapped_column(String(16))
    directions: Mapped[list[dict[str, Any]] | None]
    parking_restrictions: Mapped[list[str] | None]
    images: Mapped[list[dict[str, Any]] | None]
    last_updated: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    location: Mapped[Location] = relationship(back_populates="evses")
    connectors: Mapped[list[Connector]] = relationship(
        back_populates="evse", order_by="Connector.position", cascade="all, delete-orphan"
    )

    def touch(self, at: datetime) -> None:
        """Record a change here and, as OCPI requires, on the location above."""
        if self.last_updated is None or at > self.last_updated:
            self.last_updated = at
        self.location.touch(at)


class Connector(Base):
    """One connector of an EVSE, as OCPI 2.2.1 Connector."""

    __tablename__ = "connector"

    evse_uid: Mapped[str] = mapped_column(ForeignKey("evse.uid"), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)
    # OCPP 2.0.1 connectorId within its EVSE (OCPP 1.6: always 1).
    ocpp_connector_id: Mapped[int | None]
    standard: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(8))
    power_type: Mapped[str] = mapped_column(String(20))
    max_voltage: Mapped[int]
    max_amperage: Mapped[int]
    max_electric_power: Mapped[int | None]
    # Ordered OCPI tariff ids. Kept as a list because OCPI allows ids of tariffs another
    # system publishes; assignment through the operator API checks they exist here.
    tariff_ids: Mapped[list[str] | None]
    terms_and_conditions: Mapped[str | None] = mapped_column(String(255))
    last_updated: Mapped[datetime] = mapped_column(default=utcnow)

    evse: Mapped[Evse] = relationship(back_populates="connectors")

    def touch(self, at: datetime) -> None:
        """Record a change here and up the tree (EVSE, location)."""
        if self.last_updated is None or at > self.last_updated:
            self.last_updated = at
        self.evse.touch(at)
