"""Stations' device models (OCPP 2.0.1 block B): what they report of their variables and monitors.

A 2.0.1 station answers GetBaseReport and GetReport with NotifyReport parts, and
GetMonitoringReport with NotifyMonitoringReport parts; the gateway turns each part into the
reports below and calls ``store_report`` or ``store_monitoring_report``. Both take an entered
unit of work and do not commit (work for ``GroupCommitter``). Each reported attribute is upserted
by its key (component, its instance, EVSE and connector, variable, its instance, attribute
type); each monitor by its id. Nothing is deleted: a variable or monitor the station no longer
reports stays as last reported, with ``reported_at`` telling how old it is.

A later report replaces an attribute's value, mutability and flags; the variable's
characteristics (unit, data type, limits...) only when it gives them, since a report may leave
them out and they do not change by being left out. When the last part of a report arrives
(``tbc`` false) the station's log says so (kind ``report``), so an operator who asked for a
report knows when it is whole.

Operators read the result through ``list_variables`` and ``list_monitors`` (pages, filtered by
component and variable name, case-insensitively: OCPP compares those names without case), and
see each row through ``variable_view`` and ``monitor_view``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select

from cpms.documents import format_datetime
from cpms.model import ChargingStation, DeviceMonitor, DeviceVariable
from cpms.pages import Page, fetch_page
from cpms.station_lifecycle import log_station_event
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "Characteristics",
    "ComponentVariable",
    "ReportedAttribute",
    "ReportedMonitor",
    "ReportedVariable",
    "address_of",
    "list_monitors",
    "list_variables",
    "monitor_view",
    "store_monitoring_report",
    "store_report",
    "variable_view",
]

NAME_LENGTH = 50
"""Component and variable names and instances: OCPP's maxLength, and the columns'."""


@dataclass(frozen=True, slots=True)
class ComponentVariable:
    """Which variable of which component: the address of a value in the device model."""

    component: str
    variable: str
    component_instance: str | None = None
    evse_id: int | None = None
    """The EVSE the component belongs to; None for the station as a whole."""
    connector_id: int | None = None
    """The connector of that EVSE the component belongs to, if it is one connector's."""
    variable_instance: str | None = None

    @property
    def label(self) -> str:
        """``Connector.AvailabilityState (EVSE 1, connector 1)``, instances in brackets."""
        text = self.component + (f"[{self.component_instance}]" if self.component_instance else "")
        text += "." + self.variable
        text += f"[{self.variable_instance}]" if self.variable_instance else ""
        if self.evse_id is not None:
            text += f" (EVSE {self.evse_id}"
            text += f", connector {self.connector_id})" if self.connector_id is not None else ")"
        return text


@dataclass(frozen=True, slots=True)
class ReportedAttribute:
    """One attribute of a variable (OCPP VariableAttributeType, with its defaults)."""

    type: str = "Actual"
    """Actual, Target, MinSet or MaxSet."""
    value: str | None = None
    mutability: str = "ReadWrite"
    persistent: bool = False
    constant: bool = False


@dataclass(frozen=True, slots=True)
class Characteristics:
    """What a variable is (OCPP VariableCharacteristicsType)."""

    data_type: str
    """string, decimal, integer, dateTime, boolean, OptionList, SequenceList or MemberList."""
    supports_monitoring: bool
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: str | None = None
    """The allowed values of a list type, comma-separated, as the station wrote them."""


@dataclass(frozen=True, slots=True)
class ReportedVariable:
    """One variable of a report with its attributes (OCPP ReportDataType)."""

    where: ComponentVariable
    attributes: Sequence[ReportedAttribute] = field(default_factory=tuple)
    characteristics: Characteristics | None = None


@dataclass(frozen=True, slots=True)
class ReportedMonitor:
    """One monitor of a monitoring report (OCPP VariableMonitoringType and what it watches)."""

    monitor_id: int
    where: ComponentVariable
    type: str
    """UpperThreshold, LowerThreshold, Delta, Periodic or PeriodicClockAligned."""
    value: float
    severity: int
    transaction_only: bool = False


_Key = tuple[str, str, int, int, str, str]


def _clip(text: str, length: int = NAME_LENGTH) -> str:
    # Leniency may let over-long names through (FIELD-NOTES 12); the column keeps what fits.
    return text[:length]


def _key(where: ComponentVariable) -> _Key:
    """The stored form of an address: absent parts as "" and 0 (see ``cpms.model.device_model``)."""
    return (
        _clip(where.component),
        _clip(where.component_instance or ""),
        where.evse_id or 0,
        where.connector_id or 0,
        _clip(where.variable),
        _clip(where.variable_instance or ""),
    )


def _row_key(row: DeviceVariable | DeviceMonitor) -> _Key:
    return (
        row.component,
        row.component_instance,
        row.evse_id,
        row.connector_id,
        row.variable,
        row.variable_instance,
    )


async def store_report(
    uow: UnitOfWork,
    station_id: str,
    *,
    request_id: int,
    seq_no: int,
    tbc: bool,
    report_data: Sequence[ReportedVariable],
    received_at: datetime,
) -> int:
    """Upsert one NotifyReport part into the station's device model; return the rows written.

    No commit. The last part (``tbc`` false) adds an entry to the station's log.
    """
    components = {_clip(reported.where.component) for reported in report_data}
    stored: dict[tuple[_Key, str], DeviceVariable] = {}
    if components:
        # One query for the rows this part may replace, not one per attribute: a base
        # report holds hundreds of variables.
        found = await uow.session.scalars(
            select(DeviceVariable).where(
                DeviceVariable.station_id == station_id,
                DeviceVariable.component.in_(sorted(components)),
            )
        )
        stored = {(_row_key(row), row.attribute_type): row for row in found}
    written = 0
    for reported in report_data:
        key = _key(reported.where)
        for attribute in reported.attributes:
            attribute_type = attribute.type[:16]
            row = stored.get((key, attribute_type))
            if row is None:
                row = DeviceVariable(station_id=station_id, attribute_type=attribute_type)
                _set_key(row, key)
                uow.session.add(row)
                stored[key, attribute_type] = row
            row.value = attribute.value
            row.mutability = attribute.mutability[:16]
            row.persistent = attribute.persistent
            row.constant = attribute.constant
            if reported.characteristics is not None:
                _set_characteristics(row, reported.characteristics)
            row.request_id = request_id
            row.reported_at = received_at
            written += 1
    if not tbc:
        log_station_event(
            uow,
            station_id,
            "report",
            f"device model report {request_id} received whole ({seq_no + 1} part"
            f"{'' if seq_no == 0 else 's'})",
            received_at=received_at,
            details={"request_id": request_id, "parts": seq_no + 1},
        )
    return written


def _set_key(row: DeviceVariable | DeviceMonitor, key: _Key) -> None:
    (
        row.component,
        row.component_instance,
        row.evse_id,
        row.connector_id,
        row.variable,
        row.variable_instance,
    ) = key


def _set_characteristics(row: DeviceVariable, characteristics: Characteristics) -> None:
    row.data_type = characteristics.data_type[:16]
    row.supports_monitoring = characteristics.supports_monitoring
    row.unit = characteristics.unit[:16] if characteristics.unit is not None else None
    row.min_limit = characteristics.min_limit
    row.max_limit = characteristics.max_limit
    values = characteristics.values_list
    row.values_list = values[:1000] if values is not None else None


async def store_monitoring_report(
    uow: UnitOfWork,
    station_id: str,
    *,
    request_id: int,
    seq_no: int,
    tbc: bool,
    monitors: Sequence[ReportedMonitor],
    received_at: datetime,
) -> int:
    """Upsert one NotifyMonitoringReport part into the station's monitors; return how many.

    No commit. The last part (``tbc`` false) adds an entry to the station's log.
    """
    stored: dict[int, DeviceMonitor] = {}
    ids = sorted({monitor.monitor_id for monitor in monitors})
    if ids:
        found = await uow.session.scalars(
            select(DeviceMonitor).where(
                DeviceMonitor.station_id == station_id, DeviceMonitor.monitor_id.in_(ids)
            )
        )
        stored = {row.monitor_id: row for row in found}
    for monitor in monitors:
        row = stored.get(monitor.monitor_id)
        if row is None:
            row = DeviceMonitor(station_id=station_id, monitor_id=monitor.monitor_id)
            uow.session.add(row)
            stored[monitor.monitor_id] = row
        _set_key(row, _key(monitor.where))  # an id may be reused for another variable
        row.type = monitor.type[:32]
        row.value = monitor.value
        row.severity = monitor.severity
        row.transaction_only = monitor.transaction_only
        row.request_id = request_id
        row.reported_at = received_at
    if not tbc:
        log_station_event(
            uow,
            station_id,
            "report",
            f"monitoring report {request_id} received whole ({seq_no + 1} part"
            f"{'' if seq_no == 0 else 's'})",
            received_at=received_at,
            details={"request_id": request_id, "parts": seq_no + 1},
        )
    return len(monitors)


def _named(
    query: Select[Any],
    model: type[DeviceVariable] | type[DeviceMonitor],
    component: str | None,
    variable: str | None,
) -> Select[Any]:
    if component is not None:
        query = query.where(func.lower(model.component) == component.lower())
    if variable is not None:
        query = query.where(func.lower(model.variable) == variable.lower())
    return query


async def list_variables(
    uow: UnitOfWork,
    station_id: str,
    *,
    component: str | None = None,
    variable: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> Page[DeviceVariable]:
    """Return a page of a station's reported attributes, by component, then variable.

    ``component`` and ``variable`` narrow to those names (any instance, EVSE or connector).
    Raises ``NotFound`` for an unknown station.
    """
    await uow.get(ChargingStation, station_id, kind="station")
    query = _named(
        select(DeviceVariable).where(DeviceVariable.station_id == station_id),
        DeviceVariable,
        component,
        variable,
    ).order_by(
        DeviceVariable.component,
        DeviceVariable.component_instance,
        DeviceVariable.evse_id,
        DeviceVariable.connector_id,
        DeviceVariable.variable,
        DeviceVariable.variable_instance,
        DeviceVariable.attribute_type,
        DeviceVariable.id,
    )
    return await fetch_page(uow.session, query, offset=offset, limit=limit)


async def list_monitors(
    uow: UnitOfWork,
    station_id: str,
    *,
    component: str | None = None,
    variable: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> Page[DeviceMonitor]:
    """Return a page of a station's reported monitors, by monitor id.

    Raises ``NotFound`` for an unknown station.
    """
    await uow.get(ChargingStation, station_id, kind="station")
    query = _named(
        select(DeviceMonitor).where(DeviceMonitor.station_id == station_id),
        DeviceMonitor,
        component,
        variable,
    ).order_by(DeviceMonitor.monitor_id, DeviceMonitor.id)
    return await fetch_page(uow.session, query, offset=offset, limit=limit)


def address_of(row: DeviceVariable | DeviceMonitor) -> ComponentVariable:
    """Return the address a stored row is about, absent parts as None again."""
    return ComponentVariable(
        component=row.component,
        component_instance=row.component_instance or None,
        evse_id=row.evse_id or None,
        connector_id=row.connector_id or None,
        variable=row.variable,
        variable_instance=row.variable_instance or None,
    )


def _address(row: DeviceVariable | DeviceMonitor) -> dict[str, Any]:
    where = address_of(row)
    return {
        "component": {
            "name": where.component,
            "instance": where.component_instance,
            "evse_id": where.evse_id,
            "connector_id": where.connector_id,
        },
        "variable": {"name": where.variable, "instance": where.variable_instance},
    }


def variable_view(row: DeviceVariable) -> dict[str, Any]:
    """Return one reported attribute for operators (absent key parts as null)."""
    characteristics = None
    if row.data_type is not None:
        characteristics = {
            "data_type": row.data_type,
            "unit": row.unit,
            "min_limit": row.min_limit,
            "max_limit": row.max_limit,
            "values_list": row.values_list,
            "supports_monitoring": row.supports_monitoring,
        }
    return _address(row) | {
        "attribute_type": row.attribute_type,
        "value": row.value,
        "mutability": row.mutability,
        "persistent": row.persistent,
        "constant": row.constant,
        "characteristics": characteristics,
        "request_id": row.request_id,
        "reported_at": format_datetime(row.reported_at),
    }


def monitor_view(row: DeviceMonitor) -> dict[str, Any]:
    """Return one reported monitor for operators."""
    return (
        {"id": row.monitor_id}
        | _address(row)
        | {
            "type": row.type,
            "value": row.value,
            "severity": row.severity,
            "transaction": row.transaction_only,
            "request_id": row.request_id,
            "reported_at": format_datetime(row.reported_at),
        }
    )
