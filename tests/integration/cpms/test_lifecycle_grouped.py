"""Grouped boots, connections opened and connections closed write what each alone writes.

The node writes a station's boot, its connection opening and its connection closing with
``GroupCommitter.run_grouped`` (``record_boots``, ``record_onlines``, ``record_offlines``):
a reconnect storm or a network outage then costs one SELECT of the stations (and, closing,
one of their EVSEs) per batch, not per station. Here one script of lifecycle events, the
rare cases included (a station awaiting approval, a retired one, a closing on a node that no
longer holds the connection, a second closing, a station nobody knows, a station closed,
opened again and closed within one run of the queue, EVSEs already UNKNOWN or REMOVED), is
written both ways for two sets of stations on one database: side A each event alone in its
own transaction, side B all queued at once so consecutive ones share a batch. Every row
either side wrote (stations, EVSEs, their location, the station log, the outbox) must then
be the same, station for station, and so must the answers. A batch of each kind costs the
same statements for 4 stations as for 16, and an unknown station's boot fails only its own
caller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, Literal, TypeVar

import pytest
from sqlalchemy import event, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cpms import stations
from cpms.admission import AdmissionPolicy, Verdict
from cpms.errors import NotFound
from cpms.group_commit import GroupCommitter
from cpms.locations import DefaultLocation, retire_evse
from cpms.model import ChargingStation, Evse, Location, OutboxEntry, StationEvent
from cpms.station_lifecycle import (
    BootDecision,
    BootReport,
    BootStatus,
    ConnectionClosed,
    ConnectionOpened,
    StationBoot,
    StatusReport,
    record_boot,
    record_boots,
    record_offline,
    record_offlines,
    record_online,
    record_onlines,
    record_status,
    record_statuses,
)
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

from support import DEFAULT_LOCATION

T = TypeVar("T")

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SET_UP = T0 - timedelta(hours=1)
"""When everything before the script happened (wall-clock times of the set-up moved here)."""
HEARTBEAT = 300
NODE_A = "node-a"
NODE_B = "node-b"
VERSION = "ocpp1.6"
REPORT = BootReport(
    vendor="Alfen",
    model="Eve Single",
    serial_number="ACE0001",
    firmware_version="6.1.0",
    iccid="8931080019000000001",
    imsi="204080000000001",
    meter_type="Carlo Gavazzi EM340",
    meter_serial_number="MTR-1",
)
UPDATED = dataclasses.replace(REPORT, firmware_version="6.2.0", reason="FirmwareUpdate")


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass(frozen=True)
class _Step:
    """One lifecycle event of the script, for station ``station`` of a side."""

    kind: Literal["boot", "open", "close", "status"]
    station: str
    minutes: float
    node: str = NODE_A
    reason: str = "connection closed"
    report: BootReport = REPORT
    status: str = "AVAILABLE"


def _boot(station: str, minutes: float, report: BootReport = REPORT) -> _Step:
    return _Step("boot", station, minutes, report=report)


def _open(station: str, minutes: float, node: str = NODE_A) -> _Step:
    return _Step("open", station, minutes, node=node)


def _close(
    station: str, minutes: float, node: str = NODE_A, reason: str = "connection closed"
) -> _Step:
    return _Step("close", station, minutes, node=node, reason=reason)


def _status(station: str, minutes: float, status: str) -> _Step:
    return _Step("status", station, minutes, status=status)


# Before the script, on each side (all at SET_UP):
#   S1  EVSE 1 AVAILABLE, EVSE 2 CHARGING; online on node-a.
#   S2  EVSE 1 AVAILABLE, EVSE 2 UNKNOWN; online on node-a.
#   S3  EVSE 1 CHARGING, EVSE 2 REMOVED; online on node-a.
#   S4  registered under the pending policy (not approved); EVSE 1 AVAILABLE; online on node-b.
#   S5  EVSE 1 AVAILABLE; online on node-a; then retired (EVSE 1 REMOVED).
#   S6  EVSE 1 OUTOFORDER; online on node-a.
SCRIPT: tuple[_Step, ...] = (
    _boot("S1", 1),  # Accepted
    _boot("S4", 1),  # awaiting approval: Pending
    _boot("S5", 1),  # retired: Rejected
    _close("S1", 2),  # both EVSEs UNKNOWN
    _close("S1", 2),  # the same closing again: already offline, False
    _close("S4", 2),  # node-b holds S4: False, nothing changes
    _close("GHOST", 2),  # a station nobody knows: False
    _close("S2", 3, reason="silent"),  # EVSE 2 already UNKNOWN: no event for it
    _close("S3", 3),  # EVSE 2 stays REMOVED
    _close("S5", 3),  # retired, its only EVSE REMOVED: nothing to make UNKNOWN
    _close("S6", 4),  # OUTOFORDER becomes UNKNOWN
    _open("S6", 5, node=NODE_B),  # offline, online, status, offline in one run of the queue
    _status("S6", 5.5, "AVAILABLE"),
    _close("S6", 6, node=NODE_B),
    _open("S1", 7),
    _boot("S1", 7.5, UPDATED),  # booted again after a firmware update
    _open("S2", 7, node=NODE_B),  # S2 reconnected to node-b ...
    _close("S2", 8),  # ... so node-a's late closing is False
    _open("S3", 8),
    _close("S3", 9, node=NODE_B),  # wrong node: False
    _close("S3", 9),  # right node, in the same group as the wrong one
    _boot("S4", 9),  # still Pending
    _close("S1", 10, reason="silent"),  # offline, online, offline: groups of one each
    _open("S1", 11),
    _close("S1", 12),
)
EXPECTED = [
    ("boot", "S1", "Accepted"),
    ("boot", "S4", "Pending"),
    ("boot", "S5", "Rejected"),
    ("close", "S1", True),
    ("close", "S1", False),
    ("close", "S4", False),
    ("close", "GHOST", False),
    ("close", "S2", True),
    ("close", "S3", True),
    ("close", "S5", True),
    ("close", "S6", True),
    ("open", "S6", "S6"),
    ("status", "S6", None),
    ("close", "S6", True),
    ("open", "S1", "S1"),
    ("boot", "S1", "Accepted"),
    ("open", "S2", "S2"),
    ("close", "S2", False),
    ("open", "S3", "S3"),
    ("close", "S3", False),
    ("close", "S3", True),
    ("boot", "S4", "Pending"),
    ("close", "S1", True),
    ("open", "S1", "S1"),
    ("close", "S1", True),
]
"""What the script answers, step by step (``_answer`` of each result)."""


def _location(side: str) -> DefaultLocation:
    """Each side's stations in a location of its own: its ``last_updated`` is theirs."""
    return dataclasses.replace(DEFAULT_LOCATION, id=f"LOC-{side}")


async def _in_uow(uow: UnitOfWorkFactory, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    async with uow() as unit:
        result = await work(unit)
        await unit.commit()
    return result


async def _station(
    uow: UnitOfWorkFactory,
    station_id: str,
    location: DefaultLocation,
    statuses: Sequence[str],
    *,
    node: str | None = NODE_A,
    policy: AdmissionPolicy = AdmissionPolicy.OPEN,
) -> None:
    """A station with EVSEs 1, 2, ... in ``statuses``, online on ``node`` (None: offline)."""
    admission = await stations.admit_station(
        uow(), station_id, None, policy=policy, default_location=location
    )
    assert admission.verdict is Verdict.ACCEPTED
    for number, status in enumerate(statuses, start=1):
        report = StatusReport(number, status, received_at=SET_UP)
        await _in_uow(uow, lambda u, r=report: record_status(u, station_id, r))
    if node is not None:
        await _in_uow(
            uow,
            lambda u: record_online(u, station_id, ocpp_version=VERSION, node=node, at=SET_UP),
        )


async def _set_up(uow: UnitOfWorkFactory, side: str) -> None:
    location = _location(side)
    await _station(uow, f"{side}-S1", location, ["AVAILABLE", "CHARGING"])
    await _station(uow, f"{side}-S2", location, ["AVAILABLE", "UNKNOWN"])
    await _station(uow, f"{side}-S3", location, ["CHARGING", "AVAILABLE"])
    await retire_evse(uow(), location.id, f"{side}-S3-2")
    await _station(
        uow, f"{side}-S4", location, ["AVAILABLE"], node=NODE_B, policy=AdmissionPolicy.PENDING
    )
    await _station(uow, f"{side}-S5", location, ["AVAILABLE"])
    await stations.retire_station(uow(), f"{side}-S5")
    await _station(uow, f"{side}-S6", location, ["OUTOFORDER"])
    # Registering and retiring stamp the wall clock: move it to SET_UP, so that both sides
    # start from the same rows and the script's times (after SET_UP) move them on.
    async with uow() as unit:
        db = unit.session
        mine = ChargingStation.id.like(f"{side}-%")
        await db.execute(
            update(ChargingStation).where(mine).values(created_at=SET_UP, updated_at=SET_UP)
        )
        await db.execute(
            update(ChargingStation)
            .where(mine, ChargingStation.retired_at.is_not(None))
            .values(retired_at=SET_UP)
        )
        await db.execute(
            update(Evse).where(Evse.station_id.like(f"{side}-%")).values(last_updated=SET_UP)
        )
        await db.execute(
            update(Location).where(Location.id == location.id).values(last_updated=SET_UP)
        )
        await unit.commit()


def _item(side: str, step: _Step) -> tuple[Callable[..., Awaitable[Sequence[Any]]], Any]:
    """The group work and item that write ``step`` on ``side``."""
    station_id = f"{side}-{step.station}"
    at = _at(step.minutes)
    if step.kind == "boot":
        return record_boots, StationBoot(station_id, step.report, at, HEARTBEAT)
    if step.kind == "open":
        return record_onlines, ConnectionOpened(station_id, VERSION, step.node, at)
    if step.kind == "close":
        return record_offlines, ConnectionClosed(station_id, step.node, step.reason, at)
    return record_statuses, (station_id, StatusReport(1, step.status, received_at=at))


async def _alone(uow: UnitOfWorkFactory, side: str, step: _Step) -> Any:
    """``step`` written in a transaction of its own, through the one-item function."""
    work, item = _item(side, step)
    if work is record_boots:
        return await _in_uow(
            uow,
            lambda u: record_boot(
                u,
                item.station_id,
                item.report,
                received_at=item.received_at,
                heartbeat_interval=item.heartbeat_interval,
            ),
        )
    if work is record_onlines:
        return await _in_uow(
            uow,
            lambda u: record_online(
                u, item.station_id, ocpp_version=item.ocpp_version, node=item.node, at=item.at
            ),
        )
    if work is record_offlines:
        return await _in_uow(
            uow,
            lambda u: record_offline(
                u, item.station_id, node=item.node, reason=item.reason, at=item.at
            ),
        )
    return await _in_uow(uow, lambda u: record_status(u, *item))


async def _grouped(
    uow: UnitOfWorkFactory, side: str, script: Sequence[_Step]
) -> tuple[list[Any], GroupCommitter]:
    """``script`` queued at once, in its order, through a real group committer."""
    committer = GroupCommitter(uow)
    await committer.start()
    try:
        results = await asyncio.gather(
            *(committer.run_grouped(*_item(side, step)) for step in script)
        )
    finally:
        await committer.stop()
    return list(results), committer


def _answer(side: str, step: _Step, result: Any) -> tuple[str, str, Any]:
    """What a caller was told, with ``side``'s ids replaced by names both sides share."""
    if isinstance(result, BootDecision):
        assert result.interval == HEARTBEAT
        assert result.current_time == _at(step.minutes)
        told: Any = result.status.value
    elif isinstance(result, ChargingStation):
        told = result.id.removeprefix(f"{side}-")
    else:
        told = result
    return step.kind, step.station, told


def _named(text: str, side: str) -> str:
    """``text`` with ``side``'s station, EVSE and location ids replaced by shared names."""
    text = text.replace(f"LOC-{side}", "LOC").replace(f"*E{side}S", "*ES")
    return re.sub(rf"\b{side}-", "", text)


def _time(value: datetime) -> datetime | str:
    """A time the test chose, as is; one the clock chose (at a flush), as ``"clock"``."""
    return value if value == SET_UP or T0 <= value <= _at(60) else "clock"


def _in_order(entries: Iterable[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """Outbox entries in their order, the EVSE events of one moment taken as a set.

    A closing reads its station's EVSEs in no particular order (no ORDER BY), so the order
    of their UNKNOWN events among themselves is not something either side promises.
    """
    keyed = [
        ((entry[0], entry[4]) if entry[0] == "evse.status_changed" else (index,), entry)
        for index, entry in enumerate(entries)
    ]
    return [sorted(entry for _, entry in run) for _, run in groupby(keyed, key=lambda k: k[0])]


async def _what_was_written(uow: UnitOfWorkFactory, side: str, since: tuple[int, int]) -> Any:
    """Every row of ``side``'s stations, and what the script logged and published on them."""
    prefix = f"{side}-"
    outbox_since, log_since = since
    async with uow() as unit:
        db = unit.session
        rows = list(
            await db.scalars(select(ChargingStation).where(ChargingStation.id.like(f"{prefix}%")))
        )
        station_rows = {
            row.id.removeprefix(prefix): (
                row.online,
                row.connected_node,
                row.connected_at,
                row.last_seen_at,
                row.ocpp_version,
                row.boot_status,
                row.last_boot_at,
                row.vendor,
                row.model,
                row.serial_number,
                row.firmware_version,
                row.iccid,
                row.imsi,
                row.meter_type,
                row.meter_serial_number,
                row.approved,
                row.retired_at,
                _named(row.location_id, side),
            )
            for row in rows
        }
        # A connection opened or closed leaves ``updated_at`` to the column's onupdate (the
        # clock at the flush); a boot sets it to the time received.
        updated = {row.id.removeprefix(prefix): _time(row.updated_at) for row in rows}
        evses = sorted(
            (
                (row.station_id or "").removeprefix(prefix),
                row.ocpp_evse_id,
                _named(row.uid, side),
                _named(row.evse_id or "", side),
                row.status,
                row.last_updated,
                row.position,
            )
            for row in await db.scalars(select(Evse).where(Evse.station_id.like(f"{prefix}%")))
        )
        location = await db.scalar(
            select(Location.last_updated).where(Location.id == f"LOC-{side}")
        )
        log = [
            (
                row.station_id.removeprefix(prefix),
                row.kind,
                _named(row.summary, side),
                row.received_at,
                row.occurred_at,
                _named(json.dumps(row.details, sort_keys=True), side),
            )
            for row in await db.scalars(
                select(StationEvent)
                .where(StationEvent.id > log_since, StationEvent.station_id.like(f"{prefix}%"))
                .order_by(StationEvent.id)
            )
        ]
        # Station events name the station, EVSE events the location.
        mine = or_(
            OutboxEntry.aggregate_id.like(f"{prefix}%"), OutboxEntry.aggregate_id == f"LOC-{side}"
        )
        outbox = _in_order(
            (
                row.topic,
                row.aggregate_type,
                _named(row.aggregate_id, side),
                _named(json.dumps(row.payload, sort_keys=True), side),
                row.created_at,
            )
            for row in await db.scalars(
                select(OutboxEntry)
                .where(OutboxEntry.id > outbox_since, mine)
                .order_by(OutboxEntry.id)
            )
        )
    return {
        "stations": station_rows,
        "evses": evses,
        "location": location,
        "log": log,
        "outbox": outbox,
        "updated_at": updated,
    }


async def _high_water(uow: UnitOfWorkFactory) -> tuple[int, int]:
    """The last outbox entry and station log entry written so far."""
    async with uow() as unit:
        outbox = await unit.session.scalar(select(func.max(OutboxEntry.id)))
        log = await unit.session.scalar(select(func.max(StationEvent.id)))
    return outbox or 0, log or 0


@pytest.mark.usefixtures("database_url")
async def test_grouped_lifecycle_events_write_what_each_event_alone_writes(
    uow: UnitOfWorkFactory,
) -> None:
    await _set_up(uow, "A")
    await _set_up(uow, "B")
    since = await _high_water(uow)

    alone = [await _alone(uow, "A", step) for step in SCRIPT]
    grouped, committer = await _grouped(uow, "B", SCRIPT)

    # One transaction for the whole script: no group failed and was retried item by item.
    assert committer.batches == 1
    assert committer.items == len(SCRIPT)
    answers = [_answer("A", step, result) for step, result in zip(SCRIPT, alone, strict=True)]
    assert answers == EXPECTED
    assert [_answer("B", s, r) for s, r in zip(SCRIPT, grouped, strict=True)] == answers

    a = await _what_was_written(uow, "A", since)
    b = await _what_was_written(uow, "B", since)
    # The script reaches what it is meant to (else the comparison proves little).
    online = {name: row[:2] for name, row in a["stations"].items()}
    assert online == {
        "S1": (False, None),
        "S2": (True, NODE_B),
        "S3": (False, None),
        "S4": (True, NODE_B),  # node-a's closing left it alone
        "S5": (False, None),
        "S6": (False, None),
    }
    assert {name: row[5] for name, row in a["stations"].items()} == {
        "S1": "Accepted", "S2": None, "S3": None, "S4": "Pending", "S5": "Rejected", "S6": None
    }  # fmt: skip
    assert a["stations"]["S1"][10] == "6.2.0"
    assert [(row[0], row[1], row[4]) for row in a["evses"]] == [
        ("S1", 1, "UNKNOWN"), ("S1", 2, "UNKNOWN"),
        ("S2", 1, "UNKNOWN"), ("S2", 2, "UNKNOWN"),
        ("S3", 1, "UNKNOWN"), ("S3", 2, "REMOVED"),
        ("S4", 1, "AVAILABLE"),
        ("S5", 1, "REMOVED"),
        ("S6", 1, "UNKNOWN"),
    ]  # fmt: skip
    last_updated = {(row[0], row[1]): row[5] for row in a["evses"]}
    assert last_updated[("S2", 2)] == SET_UP  # already UNKNOWN: not touched
    assert last_updated[("S3", 2)] == SET_UP  # REMOVED: not touched
    assert last_updated[("S4", 1)] == SET_UP  # another node's station: not touched
    assert last_updated[("S6", 1)] == _at(6)  # UNKNOWN, AVAILABLE, UNKNOWN again
    assert a["location"] == _at(6)
    offline = [(name, summary, at) for name, kind, summary, at, *_ in a["log"]]
    assert offline == [
        ("S1", "offline: connection closed", _at(2)),
        ("S2", "offline: silent", _at(3)),
        ("S3", "offline: connection closed", _at(3)),
        ("S5", "offline: connection closed", _at(3)),
        ("S6", "offline: connection closed", _at(4)),
        ("S6", "offline: connection closed", _at(6)),
        ("S3", "offline: connection closed", _at(9)),
        ("S1", "offline: silent", _at(10)),
        ("S1", "offline: connection closed", _at(12)),
    ]
    unknown = sorted(
        json.loads(payload)["evse_uid"]
        for run in a["outbox"]
        for topic, _, _, payload, _ in run
        if topic == "evse.status_changed" and json.loads(payload)["status"] == "UNKNOWN"
    )
    assert unknown == ["S1-1", "S1-2", "S2-1", "S3-1", "S6-1", "S6-1"]

    # Side B wrote what side A wrote, station for station and in the same order.
    for table in ("stations", "evses", "location", "log", "outbox"):
        assert b[table] == a[table], table
    assert b["updated_at"] == a["updated_at"]


async def _many(uow: UnitOfWorkFactory, count: int) -> list[str]:
    """``count`` stations with two EVSEs (AVAILABLE, CHARGING), online on node-a.

    Their location last changed at SET_UP, so that a closing's UNKNOWN reaches it.
    """
    names = [f"N{k:02d}" for k in range(count)]
    for name in names:
        await _station(uow, name, DEFAULT_LOCATION, ["AVAILABLE", "CHARGING"])
    async with uow() as unit:
        await unit.session.execute(update(Location).values(last_updated=SET_UP))
        await unit.session.execute(update(Evse).values(last_updated=SET_UP))
        await unit.commit()
    return names


class _Statements:
    """The statements sent to the database while ``in_one_transaction`` runs."""

    def __init__(self, uow: UnitOfWorkFactory, engine: AsyncEngine) -> None:
        self._uow = uow
        self._engine = engine
        self._seen: list[str] = []

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self._seen.append(statement)

    async def in_one_transaction(
        self,
        work: Callable[[UnitOfWork, Sequence[Any]], Awaitable[Sequence[Any]]],
        items: list[Any],
    ) -> list[str]:
        """Run ``work`` on ``items`` in one transaction (a group commit's batch of them)."""
        self._seen = []
        event.listen(self._engine.sync_engine, "before_cursor_execute", self._count)
        try:
            async with self._uow() as unit:
                results = await work(unit, items)
                await unit.commit()
        finally:
            event.remove(self._engine.sync_engine, "before_cursor_execute", self._count)
        assert len(results) == len(items)
        return self._seen


@pytest.mark.usefixtures("database_url")
async def test_a_batch_of_boots_or_openings_costs_the_same_statements_however_many_it_holds(
    uow: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    names = await _many(uow, 20)
    few, many = names[:4], names[4:]
    statements = _Statements(uow, engine)

    def boots(chosen: list[str]) -> list[StationBoot]:
        return [StationBoot(name, REPORT, _at(1), HEARTBEAT) for name in chosen]

    def openings(chosen: list[str]) -> list[ConnectionOpened]:
        return [ConnectionOpened(name, VERSION, NODE_B, _at(3)) for name in chosen]

    booted = (
        await statements.in_one_transaction(record_boots, boots(few)),
        await statements.in_one_transaction(record_boots, boots(many)),
    )
    opened = (
        await statements.in_one_transaction(record_onlines, openings(few)),
        await statements.in_one_transaction(record_onlines, openings(many)),
    )

    # The stations' read, their executemany UPDATE, the outbox's executemany INSERT.
    assert len(booted[1]) == len(booted[0]) <= 3, booted
    assert len(opened[1]) == len(opened[0]) <= 3, opened
    async with uow() as unit:
        rows = list(
            await unit.session.scalars(select(ChargingStation).order_by(ChargingStation.id))
        )
    assert [
        (r.id, r.boot_status, r.last_boot_at, r.connected_node, r.connected_at) for r in rows
    ] == [(name, "Accepted", _at(1), NODE_B, _at(3)) for name in names]


@pytest.mark.usefixtures("database_url")
async def test_a_batch_of_closings_costs_the_same_statements_however_many_it_holds(
    uow: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    names = await _many(uow, 20)
    few, many = names[:4], names[4:]
    statements = _Statements(uow, engine)

    def closings(chosen: list[str], minutes: float) -> list[ConnectionClosed]:
        return [ConnectionClosed(name, NODE_A, "silent", _at(minutes)) for name in chosen]

    # Each batch later than the one before: both move their location's last_updated on.
    on_few = await statements.in_one_transaction(record_offlines, closings(few, 2))
    on_many = await statements.in_one_transaction(record_offlines, closings(many, 3))

    async with uow() as unit:
        rows = list(await unit.session.scalars(select(ChargingStation)))
        evses = list(await unit.session.scalars(select(Evse.status)))
        location = await unit.session.scalar(select(Location.last_updated))
        logged = await unit.session.scalar(
            select(func.count()).select_from(StationEvent).where(StationEvent.kind == "offline")
        )
    assert {(r.online, r.connected_node) for r in rows} == {(False, None)}
    assert evses == ["UNKNOWN"] * 40
    assert location == _at(3)
    assert logged == 20
    # The stations' read, the EVSEs' read and their location's, the outbox's INSERT, the
    # UPDATEs of stations, EVSEs and location, the log's INSERT: one each for the batch (the
    # log is written on the driver at commit, not as ORM objects whose keys SQLite would
    # return one INSERT at a time).
    assert len([s for s in on_many if s.startswith("INSERT INTO station_event")]) == 1, on_many
    assert len(on_many) <= 8, on_many
    assert len(on_many) == len(on_few), (on_few, on_many)


@pytest.mark.usefixtures("database_url")
async def test_a_boot_of_an_unknown_station_fails_alone_and_the_others_are_recorded(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow, "K1", DEFAULT_LOCATION, ["AVAILABLE"])
    await _station(uow, "K2", DEFAULT_LOCATION, ["AVAILABLE"], policy=AdmissionPolicy.PENDING)
    committer = GroupCommitter(uow)
    await committer.start()
    try:
        first, unknown, second = await asyncio.gather(
            *(
                committer.run_grouped(record_boots, StationBoot(name, REPORT, _at(1), HEARTBEAT))
                for name in ("K1", "GHOST", "K2")
            ),
            return_exceptions=True,
        )
    finally:
        await committer.stop()
    assert isinstance(unknown, NotFound)
    assert first == BootDecision(BootStatus.ACCEPTED, HEARTBEAT, _at(1))
    assert second == BootDecision(BootStatus.PENDING, HEARTBEAT, _at(1))
    # The batch failed as a whole and each boot was written alone: two of three committed.
    assert (committer.batches, committer.items) == (2, 2)
    async with uow() as unit:
        rows = list(
            await unit.session.scalars(select(ChargingStation).order_by(ChargingStation.id))
        )
        changed = list(
            await unit.session.scalars(
                select(OutboxEntry.aggregate_id)
                .where(OutboxEntry.topic == "station.changed")
                .order_by(OutboxEntry.id)
            )
        )
    assert [(r.id, r.boot_status, r.last_boot_at, r.vendor) for r in rows] == [
        ("K1", "Accepted", _at(1), "Alfen"),
        ("K2", "Pending", _at(1), "Alfen"),
    ]
    assert changed == ["K1", "K2"]
