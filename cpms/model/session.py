"""Charging sessions, their charging periods and the meter samples behind them.

A session is OCPP-version independent: the OCPP transaction id is one attribute of it, and
the OCPI Session fields are all here. Energy is kept in Wh (kWh only on OCPI); samples keep
both the station's timestamp and the time we received them, because station clocks lie.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cpms.model.base import Base, BigId, utcnow

__all__ = ["BilledReading", "ChargingPeriod", "MeterSample", "Session"]


class Session(Base):
    """A charging session, as OCPI 2.2.1 Session plus its OCPP transaction."""

    __tablename__ = "session"
    __table_args__ = (
        Index("ix_session_station_id_status", "station_id", "status"),
        UniqueConstraint("station_id", "start_key"),
        UniqueConstraint("station_id", "transaction_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    # The OCPP transaction id: ours for 1.6 (an integer unique across the whole system), the
    # station's for 2.0.1 (unique per station only, so the pair is the key).
    transaction_id: Mapped[str | None] = mapped_column(String(36))
    # What identifies the station's start request, so a replayed start finds this session.
    start_key: Mapped[str | None] = mapped_column(String(64))
    station_id: Mapped[str] = mapped_column(ForeignKey("charging_station.id"))
    location_id: Mapped[str] = mapped_column(ForeignKey("location.id"))
    evse_uid: Mapped[str | None] = mapped_column(ForeignKey("evse.uid"), index=True)
    connector_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    start_date_time: Mapped[datetime]
    end_date_time: Mapped[datetime | None]
    # OCPI CdrToken, sealed at start.
    cdr_token: Mapped[dict[str, Any]]
    auth_method: Mapped[str] = mapped_column(String(16))
    authorization_reference: Mapped[str | None] = mapped_column(String(36))
    meter_id: Mapped[str | None] = mapped_column(String(255))
    meter_start_wh: Mapped[Decimal | None]
    meter_stop_wh: Mapped[Decimal | None]
    energy_wh: Mapped[Decimal] = mapped_column(default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3))
    total_cost_excl_vat: Mapped[Decimal | None]
    total_cost_incl_vat: Mapped[Decimal | None]
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    reservation_id: Mapped[int | None] = mapped_column(ForeignKey("reservation.id"))
    # The eMSP that owns the token, when it is not a local token.
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("ocpi_partner.id"), index=True)
    # What was doubtful about this session: "station_clock", "meter_backwards", ...
    flags: Mapped[list[str]] = mapped_column(default=list)
    # Newest energy register reading accepted for billing (Wh), and when it was taken.
    last_meter_wh: Mapped[Decimal | None]
    last_meter_at: Mapped[datetime | None]
    # Receive time of the newest message about this session: stuck sessions are judged by it.
    heard_at: Mapped[datetime | None] = mapped_column(index=True)
    # Sealed at start (OCPI: a CDR carries them as they were then): the tariff chosen, the
    # OCPI Tariff documents valid at start, the CdrLocation, and what pricing needs from the
    # location and connector.
    tariff_id: Mapped[str | None] = mapped_column(String(36))
    tariffs: Mapped[list[dict[str, Any]] | None]
    cdr_location: Mapped[dict[str, Any] | None]
    time_zone: Mapped[str | None] = mapped_column(String(255))
    voltage_v: Mapped[Decimal | None]
    # The driver's OCPI ChargingPreferences, as the eMSP last set them.
    charging_preferences: Mapped[dict[str, Any] | None]
    # Tariffs switched to mid-session (an accepted preference calling for another tariff
    # type), in time order: {"from": OCPI DateTime, "tariff_id": id}, each tariff's document
    # sealed in ``tariffs``. ``tariff_id`` stays the tariff the session started with.
    tariff_switches: Mapped[list[dict[str, Any]] | None]
    # The CDR currently standing for this session (a correction replaces it).
    cdr_id: Mapped[str | None] = mapped_column(String(39))
    last_updated: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    charging_periods: Mapped[list[ChargingPeriod]] = relationship(
        order_by="ChargingPeriod.start_date_time", cascade="all, delete-orphan"
    )


class ChargingPeriod(Base):
    """A stretch of a session during which nothing tariff-relevant changed."""

    __tablename__ = "charging_period"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("session.id"), index=True)
    start_date_time: Mapped[datetime]
    # OCPI CdrDimension list, volumes in OCPI units (kWh, hours, A, kW).
    dimensions: Mapped[list[dict[str, Any]]]
    tariff_id: Mapped[str | None] = mapped_column(String(36))


class BilledReading(Base):
    """A point of a session's billing timeline: energy billed so far, at a reading's time.

    One per energy reading the session accepted or refused (a refused step leaves the
    energy where it was), so pricing reads one short indexed list instead of re-deriving
    billed energy from raw samples.
    """

    __tablename__ = "billed_reading"
    __table_args__ = (Index("ix_billed_reading_session_id_at", "session_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("session.id"))
    at: Mapped[datetime]
    energy_wh: Mapped[Decimal]
    # Current summed over phases, when the station measured it (current restrictions).
    current_a: Mapped[Decimal | None]


class MeterSample(Base):
    """One sampled value a station reported, normalised to SI units."""

    __tablename__ = "meter_sample"
    # Only the index its readers use (a replay's check, a CDR's signed values: both by
    # session). Every reading writes into each index of this table at its session's or its
    # station's own place, a page of its own; an index by station that no query read cost
    # a third of the pages a batch's samples wrote (migration 0011).
    __table_args__ = (Index("ix_meter_sample_session_id_sampled_at", "session_id", "sampled_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("session.id"))
    station_id: Mapped[str] = mapped_column(ForeignKey("charging_station.id"))
    ocpp_evse_id: Mapped[int | None]
    # When it was measured: the station's clock when believable, else our receive time; the
    # station's own claim is kept beside it when it was not (flag "station_clock").
    sampled_at: Mapped[datetime]
    station_time: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    measurand: Mapped[str] = mapped_column(String(48))
    phase: Mapped[str | None] = mapped_column(String(8))
    location: Mapped[str | None] = mapped_column(String(8))
    context: Mapped[str | None] = mapped_column(String(24))
    # As reported (OCPP 2.0.1 allows 20 characters), and normalised (Wh, W, A, V, %...).
    unit: Mapped[str | None] = mapped_column(String(20))
    value: Mapped[Decimal]
    value_si: Mapped[Decimal]
    # Signed meter value (OCMF, EDL...) exactly as the station sent it.
    signed_data: Mapped[dict[str, Any] | None]
    # Why this sample must not be billed or trusted: "meter_backwards", "meter_jump", ...
    flags: Mapped[list[str] | None]
