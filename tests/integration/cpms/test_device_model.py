"""Stations' device models and monitors on a real database, without OCPP.

Covers ``cpms.device_model``: NotifyReport parts upserted by their full key (a later report
replaces values and flags and keeps the characteristics it leaves out; absent instance, EVSE
and connector are keys of their own), the log entry when a report is whole, two parts in one
group-commit transaction, the paged queries (order, case-insensitive filters, paging, one
station's rows only, unknown station), monitors upserted by id, the operator views, and
``cpms stations device-model`` reading the same rows.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from cpms import stations
from cpms.admission import AdmissionPolicy, Verdict
from cpms.cli import main
from cpms.database import create_engine, prepare_schema
from cpms.device_model import (
    Characteristics,
    ComponentVariable,
    ReportedAttribute,
    ReportedMonitor,
    ReportedVariable,
    list_monitors,
    list_variables,
    monitor_view,
    store_monitoring_report,
    store_report,
    variable_view,
)
from cpms.errors import InvalidRequest, NotFound
from cpms.group_commit import GroupCommitter
from cpms.model import DeviceVariable, StationEvent, utcnow
from cpms.unit_of_work import UnitOfWorkFactory

from support import DEFAULT_LOCATION as DEFAULT

T0 = datetime.fromisoformat("2025-03-01T12:00:00+00:00")

AVAILABILITY = ComponentVariable(
    component="Connector", variable="AvailabilityState", evse_id=1, connector_id=1
)
STATION_AVAILABILITY = ComponentVariable(component="Connector", variable="AvailabilityState")
HEARTBEAT = ComponentVariable(component="OCPPCommCtrlr", variable="HeartbeatInterval")
POWER = ComponentVariable(
    component="SmartChargingCtrlr",
    component_instance="Main",
    variable="Power",
    variable_instance="Max",
    evse_id=2,
)
INTEGER_SECONDS = Characteristics(
    data_type="integer", supports_monitoring=True, unit="s", min_limit=1, max_limit=86400
)
AVAILABILITY_STATES = Characteristics(
    data_type="OptionList",
    supports_monitoring=False,
    values_list="Available,Occupied,Reserved,Unavailable,Faulted",
)


async def _station(uow: UnitOfWorkFactory, station_id: str = "CP1") -> None:
    admission = await stations.admit_station(
        uow(), station_id, None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
    )
    assert admission.verdict is Verdict.ACCEPTED


async def _report(
    uow: UnitOfWorkFactory,
    data: Sequence[ReportedVariable],
    *,
    request_id: int = 7,
    seq_no: int = 0,
    tbc: bool = False,
    at: datetime = T0,
    station_id: str = "CP1",
) -> int:
    async with uow() as unit:
        written = await store_report(
            unit, station_id, request_id=request_id, seq_no=seq_no, tbc=tbc,
            report_data=data, received_at=at,
        )  # fmt: skip
        await unit.commit()
    return written


async def _variables(
    uow: UnitOfWorkFactory,
    station_id: str = "CP1",
    *,
    component: str | None = None,
    variable: str | None = None,
) -> list[dict[str, Any]]:
    async with uow() as unit:
        page = await list_variables(unit, station_id, component=component, variable=variable)
        return [variable_view(row) for row in page.items]


async def _log(uow: UnitOfWorkFactory, station_id: str = "CP1") -> list[StationEvent]:
    async with uow() as unit:
        found = await unit.session.scalars(
            select(StationEvent)
            .where(StationEvent.station_id == station_id, StationEvent.kind == "report")
            .order_by(StationEvent.id)
        )
        return list(found)


def _heartbeat(
    value: str | None, *, mutability: str = "ReadWrite", persistent: bool = False
) -> ReportedVariable:
    attribute = ReportedAttribute(value=value, mutability=mutability, persistent=persistent)
    return ReportedVariable(HEARTBEAT, [attribute], INTEGER_SECONDS)


async def test_a_report_in_two_parts_is_stored_and_logged_when_whole(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    first = [
        _heartbeat("300", mutability="ReadWrite", persistent=True),
        ReportedVariable(
            AVAILABILITY,
            [ReportedAttribute(value="Available", mutability="ReadOnly")],
            AVAILABILITY_STATES,
        ),
    ]
    second = [
        ReportedVariable(
            POWER,
            [
                ReportedAttribute(type="Actual", value="11000.5", mutability="ReadOnly"),
                ReportedAttribute(type="MaxSet", value="22000", constant=True),
                ReportedAttribute(type="Target", value=None, mutability="WriteOnly"),
            ],
        )
    ]
    assert await _report(uow, first, seq_no=0, tbc=True) == 2
    assert await _log(uow) == []  # not whole yet
    assert await _report(uow, second, seq_no=1, tbc=False, at=T0 + timedelta(seconds=1)) == 3
    [entry] = await _log(uow)
    assert entry.summary == "device model report 7 received whole (2 parts)"
    assert entry.details == {"request_id": 7, "parts": 2}

    rows = await _variables(uow)
    # Ordered by component, instance, EVSE, connector, variable, instance, attribute type.
    assert [(r["component"]["name"], r["variable"]["name"], r["attribute_type"]) for r in rows] == [
        ("Connector", "AvailabilityState", "Actual"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "Actual"),
        ("SmartChargingCtrlr", "Power", "Actual"),
        ("SmartChargingCtrlr", "Power", "MaxSet"),
        ("SmartChargingCtrlr", "Power", "Target"),
    ]
    assert rows[0] == {
        "component": {"name": "Connector", "instance": None, "evse_id": 1, "connector_id": 1},
        "variable": {"name": "AvailabilityState", "instance": None},
        "attribute_type": "Actual",
        "value": "Available",
        "mutability": "ReadOnly",
        "persistent": False,
        "constant": False,
        "characteristics": {
            "data_type": "OptionList",
            "unit": None,
            "min_limit": None,
            "max_limit": None,
            "values_list": "Available,Occupied,Reserved,Unavailable,Faulted",
            "supports_monitoring": False,
        },
        "request_id": 7,
        "reported_at": "2025-03-01T12:00:00Z",
    }
    heartbeat = rows[1]
    assert heartbeat["component"] == {
        "name": "OCPPCommCtrlr", "instance": None, "evse_id": None, "connector_id": None
    }  # fmt: skip
    assert (heartbeat["value"], heartbeat["persistent"]) == ("300", True)
    assert heartbeat["characteristics"]["unit"] == "s"
    assert (
        heartbeat["characteristics"]["min_limit"],
        heartbeat["characteristics"]["max_limit"],
    ) == (
        1,
        86400,
    )
    power = rows[2]
    assert power["component"] == {
        "name": "SmartChargingCtrlr", "instance": "Main", "evse_id": 2, "connector_id": None
    }  # fmt: skip
    assert power["variable"] == {"name": "Power", "instance": "Max"}
    assert power["characteristics"] is None  # never described
    assert power["reported_at"] == "2025-03-01T12:00:01Z"
    assert (rows[3]["value"], rows[3]["constant"]) == ("22000", True)
    assert (rows[4]["value"], rows[4]["mutability"]) == (None, "WriteOnly")


async def test_a_later_report_replaces_values_and_keeps_characteristics_it_leaves_out(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    await _report(uow, [_heartbeat("300", persistent=True)], request_id=1)
    later = T0 + timedelta(hours=1)
    without_characteristics = ReportedVariable(
        HEARTBEAT, [ReportedAttribute(value="60", mutability="ReadOnly")]
    )
    await _report(uow, [without_characteristics], request_id=2, at=later)
    [row] = await _variables(uow)
    assert (row["value"], row["mutability"], row["persistent"]) == ("60", "ReadOnly", False)
    assert row["characteristics"]["data_type"] == "integer"  # kept
    assert (row["request_id"], row["reported_at"]) == (2, "2025-03-01T13:00:00Z")

    described_again = ReportedVariable(
        HEARTBEAT,
        [ReportedAttribute(value="90")],
        Characteristics(data_type="decimal", supports_monitoring=False),
    )
    await _report(uow, [described_again], request_id=3)
    [row] = await _variables(uow)
    assert row["value"] == "90"
    assert row["characteristics"] == {
        "data_type": "decimal",
        "unit": None,
        "min_limit": None,
        "max_limit": None,
        "values_list": None,
        "supports_monitoring": False,
    }
    assert len(await _log(uow)) == 3  # each report was one whole part


async def test_absent_key_parts_are_keys_of_their_own(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    connector_2 = ComponentVariable(
        component="Connector", variable="AvailabilityState", evse_id=1, connector_id=2
    )
    instance = ComponentVariable(
        component="Connector", component_instance="A", variable="AvailabilityState"
    )
    variants = [AVAILABILITY, STATION_AVAILABILITY, connector_2, instance]
    await _report(
        uow,
        [
            ReportedVariable(where, [ReportedAttribute(value=f"v{n}")])
            for n, where in enumerate(variants)
        ],
    )
    # The same keys again, values changed: still four rows, each with its own value.
    await _report(
        uow,
        [
            ReportedVariable(where, [ReportedAttribute(value=f"w{n}")])
            for n, where in enumerate(variants)
        ],
    )
    rows = await _variables(uow)
    assert sorted(r["value"] for r in rows) == ["w0", "w1", "w2", "w3"]
    keys = {
        (
            r["component"]["instance"],
            r["component"]["evse_id"],
            r["component"]["connector_id"],
            r["value"],
        )
        for r in rows
    }
    assert keys == {
        (None, 1, 1, "w0"),
        (None, None, None, "w1"),
        (None, 1, 2, "w2"),
        ("A", None, None, "w3"),
    }


async def test_two_parts_in_one_transaction_upsert_the_same_row(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    committer = GroupCommitter(uow)
    await committer.start()
    try:
        # Queued together, they run in one transaction: the second sees the first's new row.
        await asyncio.gather(
            *(
                committer.run(
                    lambda unit, value=value: store_report(
                        unit,
                        "CP1",
                        request_id=9,
                        seq_no=0,
                        tbc=True,
                        report_data=[_heartbeat(value)],
                        received_at=T0,
                    )
                )
                for value in ("1", "2", "3")
            )
        )
    finally:
        await committer.stop()
    # One batch: a failed batch is retried work by work, which would hide a duplicate insert.
    assert (committer.batches, committer.items) == (1, 3)
    async with uow() as unit:
        count = await unit.session.scalar(select(func.count()).select_from(DeviceVariable))
    assert count == 1
    assert [r["value"] for r in await _variables(uow)] == ["3"]


async def test_variables_are_filtered_by_name_in_any_case_and_paged(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    await _station(uow, "CP2")
    await _report(
        uow,
        [
            _heartbeat("300"),
            ReportedVariable(AVAILABILITY, [ReportedAttribute(value="Available")]),
            ReportedVariable(STATION_AVAILABILITY, [ReportedAttribute(value="Available")]),
            ReportedVariable(
                POWER, [ReportedAttribute(value="1"), ReportedAttribute(type="MaxSet", value="2")]
            ),
        ],
    )
    await _report(uow, [_heartbeat("10")], station_id="CP2")

    assert len(await _variables(uow)) == 5
    assert [r["value"] for r in await _variables(uow, "CP2")] == ["10"]
    connectors = await _variables(uow, component="connector")
    assert [r["component"]["evse_id"] for r in connectors] == [None, 1]  # none before EVSE 1
    assert [r["value"] for r in await _variables(uow, variable="HEARTBEATINTERVAL")] == ["300"]
    both = await _variables(uow, component="SmartChargingCtrlr", variable="power")
    assert [r["attribute_type"] for r in both] == ["Actual", "MaxSet"]
    assert await _variables(uow, component="Connector", variable="Power") == []

    async with uow() as unit:
        page = await list_variables(unit, "CP1", offset=1, limit=2)
    assert (page.total, page.offset, page.limit) == (5, 1, 2)
    assert [(row.component, row.evse_id) for row in page.items] == [
        ("Connector", 1),
        ("OCPPCommCtrlr", 0),
    ]
    async with uow() as unit:
        with pytest.raises(NotFound):
            await list_variables(unit, "NOBODY")
        with pytest.raises(NotFound):
            await list_monitors(unit, "NOBODY")
        with pytest.raises(InvalidRequest):
            await list_variables(unit, "CP1", limit=0)


def _monitor(
    monitor_id: int,
    where: ComponentVariable,
    *,
    type: str = "UpperThreshold",
    value: float = 100.0,
    severity: int = 4,
    transaction_only: bool = False,
) -> ReportedMonitor:
    return ReportedMonitor(monitor_id, where, type, value, severity, transaction_only)


async def test_monitors_are_upserted_by_id_and_listed_by_id(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    await _station(uow, "CP2")

    async def store(
        monitors: list[ReportedMonitor], *, seq_no: int = 0, tbc: bool = False, station: str = "CP1"
    ) -> int:
        async with uow() as unit:
            count = await store_monitoring_report(
                unit, station, request_id=3, seq_no=seq_no, tbc=tbc, monitors=monitors,
                received_at=T0,
            )  # fmt: skip
            await unit.commit()
        return count

    first = [_monitor(12, POWER), _monitor(3, HEARTBEAT, type="Periodic", value=900)]
    assert await store(first, tbc=True) == 2
    assert await _log(uow) == []
    moved = _monitor(12, AVAILABILITY, type="Delta", value=1, severity=8, transaction_only=True)
    assert await store([moved], seq_no=1) == 1
    assert await store([_monitor(12, HEARTBEAT)], station="CP2") == 1
    [entry] = await _log(uow)
    assert entry.summary == "monitoring report 3 received whole (2 parts)"

    async with uow() as unit:
        page = await list_monitors(unit, "CP1")
        views = [monitor_view(row) for row in page.items]
    assert [v["id"] for v in views] == [3, 12]
    assert views[0]["type"] == "Periodic"
    assert views[0]["value"] == 900
    assert views[1] == {
        "id": 12,
        "component": {"name": "Connector", "instance": None, "evse_id": 1, "connector_id": 1},
        "variable": {"name": "AvailabilityState", "instance": None},
        "type": "Delta",
        "value": 1.0,
        "severity": 8,
        "transaction": True,
        "request_id": 3,
        "reported_at": "2025-03-01T12:00:00Z",
    }  # the id moved to another variable: the monitor follows it
    async with uow() as unit:
        only = await list_monitors(unit, "CP1", component="ocppcommctrlr")
        assert [row.monitor_id for row in only.items] == [3]
        assert (await list_monitors(unit, "CP2")).total == 1


def test_the_cli_shows_the_device_model(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("CPMS_")]:
        monkeypatch.delenv(name)

    async def prepare() -> None:
        engine = create_engine(database_url)
        try:
            await prepare_schema(engine)
            uow = UnitOfWorkFactory(engine)
            await _station(uow)
            await _report(
                uow,
                [
                    _heartbeat("300"),
                    ReportedVariable(
                        POWER, [ReportedAttribute(value=None, mutability="WriteOnly")]
                    ),
                ],
                at=utcnow(),
            )
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    argv = ["stations", "device-model", "CP1", "--database-url", database_url]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "OCPPCommCtrlr.HeartbeatInterval\tActual\t300 s\tReadWrite",
        "SmartChargingCtrlr[Main].Power[Max] (EVSE 2)\tActual\t-\tWriteOnly",
        "(2 of 2, from offset 0)",
    ]
    assert main([*argv, "--component", "ocppcommctrlr", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["total"] == 1
    assert shown["items"][0]["variable"] == {"name": "HeartbeatInterval", "instance": None}
    assert main(["stations", "device-model", "NOBODY", "--database-url", database_url]) == 1
    assert "NOBODY" in capsys.readouterr().err
