"""A station's OCPP 2.0.1 device model as it reported it: variables and monitors.

A 2.0.1 station describes itself as components (``EVSE`` 1, ``Connector`` 1 of EVSE 1,
``OCPPCommCtrlr``...) holding variables, each with up to four attributes (Actual, Target,
MinSet, MaxSet). It reports them in NotifyReport parts answering GetBaseReport or GetReport,
and its monitors (thresholds and periodic reports on variables) in NotifyMonitoringReport
parts. One row is one reported attribute, or one monitor; a later report replaces the row.

The parts of a key that a station may leave out (component and variable instance, EVSE,
connector) are stored as ``""`` and ``0`` rather than NULL, so that the key is one plain
unique constraint on both engines (NULLs are never equal in a unique constraint). OCPP
numbers EVSEs and connectors from 1, so ``0`` means none; the views turn both back into null.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, BigId, utcnow

__all__ = ["DeviceMonitor", "DeviceVariable"]


class DeviceVariable(Base):
    """One attribute of one variable of one component, as the station last reported it."""

    __tablename__ = "device_variable"
    __table_args__ = (
        # Named here: the convention's name (every column) is longer than PostgreSQL's 63.
        UniqueConstraint(
            "station_id",
            "component",
            "component_instance",
            "evse_id",
            "connector_id",
            "variable",
            "variable_instance",
            "attribute_type",
            name="uq_device_variable_key",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("charging_station.id"))
    # The key: OCPP 2.0.1 ComponentType, VariableType and AttributeEnumType.
    component: Mapped[str] = mapped_column(String(50))
    component_instance: Mapped[str] = mapped_column(String(50), default="")
    evse_id: Mapped[int] = mapped_column(default=0)
    connector_id: Mapped[int] = mapped_column(default=0)
    variable: Mapped[str] = mapped_column(String(50))
    variable_instance: Mapped[str] = mapped_column(String(50), default="")
    attribute_type: Mapped[str] = mapped_column(String(16), default="Actual")
    # VariableAttributeType: the value is text of up to 2500 characters, absent when the
    # variable is WriteOnly; Text, so that what leniency lets through is kept whole.
    value: Mapped[str | None] = mapped_column(Text)
    mutability: Mapped[str] = mapped_column(String(16), default="ReadWrite")
    persistent: Mapped[bool] = mapped_column(default=False)
    constant: Mapped[bool] = mapped_column(default=False)
    # VariableCharacteristicsType, shared by the variable's attributes; all None when the
    # station never described the variable (``data_type`` is required when it does).
    data_type: Mapped[str | None] = mapped_column(String(16))
    unit: Mapped[str | None] = mapped_column(String(16))
    min_limit: Mapped[float | None]
    max_limit: Mapped[float | None]
    values_list: Mapped[str | None] = mapped_column(String(1000))
    supports_monitoring: Mapped[bool | None]
    # Which report said so last, and when we received it (our clock).
    request_id: Mapped[int | None]
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeviceMonitor(Base):
    """One monitor a station reported, by its id (unique per station, as OCPP gives it)."""

    __tablename__ = "device_monitor"
    __table_args__ = (UniqueConstraint("station_id", "monitor_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("charging_station.id"))
    monitor_id: Mapped[int]
    # What it watches, keyed as in DeviceVariable ("" and 0 for absent parts).
    component: Mapped[str] = mapped_column(String(50))
    component_instance: Mapped[str] = mapped_column(String(50), default="")
    evse_id: Mapped[int] = mapped_column(default=0)
    connector_id: Mapped[int] = mapped_column(default=0)
    variable: Mapped[str] = mapped_column(String(50))
    variable_instance: Mapped[str] = mapped_column(String(50), default="")
    # VariableMonitoringType: UpperThreshold, LowerThreshold, Delta, Periodic,
    # PeriodicClockAligned; the threshold, delta or interval; severity 0 (worst) to 9.
    type: Mapped[str] = mapped_column(String(32))
    value: Mapped[float]
    severity: Mapped[int]
    transaction_only: Mapped[bool] = mapped_column(default=False)
    """OCPP ``transaction``: the monitor is active only while a transaction runs."""
    request_id: Mapped[int | None]
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)
