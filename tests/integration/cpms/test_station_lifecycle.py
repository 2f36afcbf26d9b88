"""What stations report about themselves, on a real database and without OCPP.

Covers ``cpms.station_lifecycle``: the boot decision (Accepted, Pending until approved,
Rejected when retired) and the boot fields (over-long values clipped), heartbeats, status
reports mapped onto EVSEs (``last_updated`` up to the location, an event only on a change,
the station's own status to the log), EVSEs added when a station reports them first (assumed
connector, unique uids even for long or clashing ids), going offline (only from the node
that holds the connection), the station log and approval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import selectinload

from cpms import stations
from cpms.admission import AdmissionPolicy, Verdict
from cpms.errors import NotFound
from cpms.group_commit import GroupCommitter
from cpms.liveness import Liveness, LivenessWriter
from cpms.locations import add_evse, retire_evse
from cpms.model import ChargingStation, Evse, Location, OutboxEntry, StationEvent, utcnow
from cpms.station_lifecycle import (
    BootDecision,
    BootReport,
    BootStatus,
    StatusReport,
    approve_station,
    list_station_events,
    log_station_event,
    record_boot,
    record_offline,
    record_status,
)
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

from support import DEFAULT_LOCATION as DEFAULT
from support import TIME_UNIT

T = TypeVar("T")

HEARTBEAT = 300


async def _station(
    uow: UnitOfWorkFactory, station_id: str = "CP1", policy: AdmissionPolicy = AdmissionPolicy.OPEN
) -> None:
    admission = await stations.admit_station(
        uow(), station_id, None, policy=policy, default_location=DEFAULT
    )
    assert admission.verdict is Verdict.ACCEPTED


async def _in_uow(uow: UnitOfWorkFactory, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    async with uow() as unit:
        result = await work(unit)
        await unit.commit()
    return result


async def _boot(
    uow: UnitOfWorkFactory, report: BootReport, *, at: datetime, station_id: str = "CP1"
) -> BootDecision:
    return await _in_uow(
        uow,
        lambda u: record_boot(u, station_id, report, received_at=at, heartbeat_interval=HEARTBEAT),
    )


async def _status(
    uow: UnitOfWorkFactory,
    evse: int,
    status: str,
    at: datetime,
    *,
    station_id: str = "CP1",
    **extra: Any,
) -> None:
    report = StatusReport(evse_number=evse, status=status, received_at=at, **extra)
    await _in_uow(uow, lambda u: record_status(u, station_id, report))


async def _get(uow: UnitOfWorkFactory, model: type[T], key: Any) -> T:
    async with uow() as unit:
        return await unit.get(model, key)


async def _evses(uow: UnitOfWorkFactory, station_id: str = "CP1") -> list[Evse]:
    async with uow() as unit:
        found = await unit.session.scalars(
            select(Evse)
            .where(Evse.station_id == station_id)
            .options(selectinload(Evse.connectors))
            .order_by(Evse.ocpp_evse_id)
        )
        return list(found)


async def _outbox(uow: UnitOfWorkFactory, topic: str) -> list[OutboxEntry]:
    async with uow() as unit:
        found = await unit.session.scalars(
            select(OutboxEntry).where(OutboxEntry.topic == topic).order_by(OutboxEntry.id)
        )
        return list(found)


async def _log(
    uow: UnitOfWorkFactory, station_id: str = "CP1", kind: str | None = None
) -> list[StationEvent]:
    page = await list_station_events(uow(), station_id, kind=kind)
    return list(page.items)


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


# Boot


async def test_a_boot_keeps_what_the_station_says_and_is_accepted(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    at = utcnow()
    decision = await _boot(uow, REPORT, at=at)
    assert decision.status is BootStatus.ACCEPTED
    assert decision.interval == HEARTBEAT
    assert decision.current_time == at
    station = await _get(uow, ChargingStation, "CP1")
    assert (station.vendor, station.model) == ("Alfen", "Eve Single")
    assert station.serial_number == "ACE0001"
    assert station.firmware_version == "6.1.0"
    assert station.iccid == "8931080019000000001"
    assert station.imsi == "204080000000001"
    assert station.meter_type == "Carlo Gavazzi EM340"
    assert station.meter_serial_number == "MTR-1"
    assert station.boot_status == "Accepted"
    assert station.last_boot_at == at
    assert station.last_seen_at == at
    changed = await _outbox(uow, "station.changed")
    assert [entry.payload["fields"] for entry in changed] == [["boot"]]


async def test_a_station_awaiting_approval_is_pending_until_approved(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow, policy=AdmissionPolicy.PENDING)
    assert (await _get(uow, ChargingStation, "CP1")).approved is False
    decision = await _boot(uow, REPORT, at=utcnow())
    assert decision.status is BootStatus.PENDING
    assert decision.interval == HEARTBEAT
    assert (await _get(uow, ChargingStation, "CP1")).boot_status == "Pending"

    approved = await approve_station(uow(), "CP1")
    assert approved.approved is True
    assert (await _get(uow, ChargingStation, "CP1")).approved is True
    assert [e.payload["fields"] for e in await _outbox(uow, "station.changed")] == [
        ["boot"],
        ["approved"],
    ]
    assert (await _boot(uow, REPORT, at=utcnow())).status is BootStatus.ACCEPTED
    # Approving again changes nothing and records nothing.
    await approve_station(uow(), "CP1")
    assert len(await _outbox(uow, "station.changed")) == 3


async def test_approving_an_unknown_station_is_not_found(uow: UnitOfWorkFactory) -> None:
    with pytest.raises(NotFound):
        await approve_station(uow(), "NOBODY")


async def test_a_retired_station_is_rejected(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    await stations.retire_station(uow(), "CP1")
    decision = await _boot(uow, REPORT, at=utcnow())
    assert decision.status is BootStatus.REJECTED
    assert (await _get(uow, ChargingStation, "CP1")).boot_status == "Rejected"


async def test_a_boot_of_an_unknown_station_is_not_found(uow: UnitOfWorkFactory) -> None:
    with pytest.raises(NotFound):
        await _boot(uow, REPORT, at=utcnow(), station_id="NOBODY")


async def test_over_long_boot_values_are_clipped_to_their_columns(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    report = BootReport(
        vendor="V" * 60,
        model="M" * 70,
        serial_number="S" * 55,
        firmware_version="F" * 51,
        iccid="1" * 25,
        imsi="2" * 21,
        meter_type="T" * 30,
        meter_serial_number="N" * 26,
    )
    decision = await _boot(uow, report, at=utcnow())
    assert decision.status is BootStatus.ACCEPTED
    station = await _get(uow, ChargingStation, "CP1")
    assert station.vendor == "V" * 50
    assert station.model == "M" * 50
    assert station.serial_number == "S" * 50
    assert station.firmware_version == "F" * 50
    assert station.iccid == "1" * 20
    assert station.imsi == "2" * 20
    assert station.meter_type == "T" * 25
    assert station.meter_serial_number == "N" * 25


async def test_liveness_writes_each_stations_latest_moment_in_one_go(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    await _station(uow, "CP2")
    booted = utcnow()
    await _boot(uow, REPORT, at=booted)  # CP1 last seen at its boot
    liveness = Liveness()
    later = booted + timedelta(seconds=30)
    liveness.seen("CP1", later)
    liveness.seen("CP1", later - timedelta(seconds=10))  # out of order: the latest stays
    liveness.seen("CP2", later)
    liveness.seen("GONE", later)  # a station deleted meanwhile: nothing to write, no error
    assert liveness.last_seen("CP1") == later
    committer = GroupCommitter(uow)
    await committer.start()
    try:
        writer = LivenessWriter(liveness, committer)
        assert await writer.flush() == 3
        assert await writer.flush() == 0
        assert (await _get(uow, ChargingStation, "CP1")).last_seen_at == later
        assert (await _get(uow, ChargingStation, "CP2")).last_seen_at == later
        # A moment older than what a boot wrote since never moves it back.
        liveness.seen("CP1", booted - timedelta(minutes=5))
        await writer.stop()
        assert len(liveness) == 0
    finally:
        await committer.stop()
    assert (await _get(uow, ChargingStation, "CP1")).last_seen_at == later


async def test_liveness_keeps_what_a_failed_write_did_not_store(uow: UnitOfWorkFactory) -> None:
    liveness = Liveness()
    at = utcnow()
    liveness.seen("CP1", at)
    committer = GroupCommitter(uow)  # never started: run() refuses the work
    with pytest.raises(RuntimeError):
        await LivenessWriter(liveness, committer).flush()
    assert liveness.last_seen("CP1") == at


# Status


async def test_a_status_report_maps_onto_the_evse_and_touches_up_to_the_location(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    first = utcnow() + timedelta(minutes=1)
    await _status(uow, 1, "AVAILABLE", first)
    (evse,) = await _evses(uow)
    assert evse.status == "AVAILABLE"
    assert evse.last_updated == first
    assert (await _get(uow, Location, DEFAULT.id)).last_updated == first

    second = first + timedelta(minutes=1)
    await _status(uow, 1, "CHARGING", second)
    (evse,) = await _evses(uow)
    assert evse.status == "CHARGING"
    assert evse.last_updated == second
    assert (await _get(uow, Location, DEFAULT.id)).last_updated == second
    changes = await _outbox(uow, "evse.status_changed")
    assert [(e.payload["evse_uid"], e.payload["status"]) for e in changes] == [
        ("CP1-1", "AVAILABLE"),
        ("CP1-1", "CHARGING"),
    ]
    assert {e.aggregate_id for e in changes} == {DEFAULT.id}


async def test_the_same_status_again_records_no_event_and_moves_no_timestamp(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    first = utcnow() + timedelta(minutes=1)
    await _status(uow, 1, "AVAILABLE", first)
    await _status(uow, 1, "AVAILABLE", first + timedelta(minutes=1))
    (evse,) = await _evses(uow)
    assert evse.status == "AVAILABLE"
    assert evse.last_updated == first
    assert (await _get(uow, Location, DEFAULT.id)).last_updated == first
    assert len(await _outbox(uow, "evse.status_changed")) == 1


async def test_the_stations_own_status_goes_to_the_log_only(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    before = (await _get(uow, Location, DEFAULT.id)).last_updated
    await _status(uow, 0, "UNAVAILABLE", utcnow() + timedelta(minutes=1))
    assert await _evses(uow) == []
    assert await _outbox(uow, "evse.status_changed") == []
    assert (await _get(uow, Location, DEFAULT.id)).last_updated == before
    (entry,) = await _log(uow, kind="station_status")
    assert entry.details == {"status": "UNAVAILABLE"}


async def test_a_fault_is_logged_with_its_error_code(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    await _status(
        uow,
        1,
        "OUTOFORDER",
        utcnow(),
        error_code="GroundFailure",
        details={"info": "RCD tripped"},
    )
    (fault,) = await _log(uow, kind="fault")
    assert fault.details == {"error_code": "GroundFailure", "info": "RCD tripped"}
    assert "GroundFailure" in fault.summary
    assert (await _evses(uow))[0].status == "OUTOFORDER"


async def test_a_removed_evse_stays_removed_whatever_its_station_says(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    await _status(uow, 1, "AVAILABLE", utcnow())
    await retire_evse(uow(), DEFAULT.id, "CP1-1")
    await _status(uow, 1, "CHARGING", utcnow() + timedelta(minutes=1))
    assert (await _evses(uow))[0].status == "REMOVED"
    assert len(await _outbox(uow, "evse.status_changed")) == 1


# EVSEs a station reports before anyone described them


async def test_an_unknown_evse_number_adds_an_evse_with_an_assumed_connector(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    await _status(uow, 1, "AVAILABLE", utcnow())
    await _status(uow, 2, "CHARGING", utcnow())
    first, second = await _evses(uow)
    assert (first.uid, second.uid) == ("CP1-1", "CP1-2")
    assert (first.ocpp_evse_id, second.ocpp_evse_id) == (1, 2)
    assert (first.position, second.position) == (0, 1)
    assert second.location_id == DEFAULT.id
    assert second.evse_id == "NL*CPM*ECP1*2"
    assert second.status == "CHARGING"
    (connector,) = second.connectors
    assert connector.id == "1"
    assert connector.standard == "IEC_62196_T2"
    assert connector.power_type == "AC_3_PHASE"
    assert connector.max_electric_power == 22080
    added = await _log(uow, kind="evse_added")
    assert [entry.details["evse_uid"] for entry in added] == ["CP1-2", "CP1-1"]
    assert len(await _outbox(uow, "evse.changed")) == 2


async def test_evses_added_by_reports_in_one_group_commit_batch_are_not_duplicated(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow, "CP1")
    await _station(uow, "CP2")
    at = utcnow()
    reports = [
        ("CP1", StatusReport(evse_number=1, status="AVAILABLE", received_at=at)),
        ("CP1", StatusReport(evse_number=2, status="AVAILABLE", received_at=at)),
        ("CP2", StatusReport(evse_number=1, status="OUTOFORDER", received_at=at)),
        ("CP1", StatusReport(evse_number=1, status="CHARGING", received_at=at)),
    ]
    committer = GroupCommitter(uow)
    await committer.start()
    try:

        def work(station_id: str, report: StatusReport) -> Callable[[UnitOfWork], Awaitable[None]]:
            return lambda u: record_status(u, station_id, report)

        await asyncio.wait_for(
            asyncio.gather(*(committer.run(work(*each)) for each in reports)), 10 * TIME_UNIT
        )
    finally:
        await committer.stop()
    assert committer.batches == 1
    evses = await _evses(uow, "CP1") + await _evses(uow, "CP2")
    assert [(e.uid, e.status) for e in evses] == [
        ("CP1-1", "CHARGING"),
        ("CP1-2", "AVAILABLE"),
        ("CP2-1", "OUTOFORDER"),
    ]
    assert sorted(e.position for e in evses) == [0, 1, 2]


async def test_a_new_evse_at_a_crowded_location_loads_none_of_the_others(
    uow: UnitOfWorkFactory,
) -> None:
    # Under open admission every station joins the default location. Adding an EVSE loaded
    # all of that location's EVSEs (for a count), which made a fleet's first day quadratic.
    for n in range(12):
        await _station(uow, f"OLD{n}")
        await _status(uow, 1, "AVAILABLE", utcnow(), station_id=f"OLD{n}")
    await _station(uow, "NEW")
    loaded: list[str] = []

    def count(target: Evse, _context: object) -> None:
        loaded.append(target.uid)

    event.listen(Evse, "load", count)
    try:
        await _status(uow, 1, "AVAILABLE", utcnow(), station_id="NEW")
    finally:
        event.remove(Evse, "load", count)
    assert loaded == []
    (added,) = await _evses(uow, "NEW")
    assert (added.uid, added.position, added.location_id) == ("NEW-1", 12, DEFAULT.id)


async def test_an_evse_uid_already_taken_is_not_reused(uow: UnitOfWorkFactory) -> None:
    await _station(uow, "CP2")
    # The operator described an EVSE whose uid happens to be what CP2's EVSE 1 would get.
    document = {
        "uid": "CP2-1",
        "status": "AVAILABLE",
        "connectors": [
            {
                "id": "1",
                "standard": "CHADEMO",
                "format": "CABLE",
                "power_type": "DC",
                "max_voltage": 500,
                "max_amperage": 125,
                "last_updated": "2025-01-01T00:00:00Z",
            }
        ],
        "last_updated": "2025-01-01T00:00:00Z",
    }
    await add_evse(uow(), DEFAULT.id, document, None)
    await _status(uow, 1, "AVAILABLE", utcnow(), station_id="CP2")
    (mine,) = await _evses(uow, "CP2")
    assert mine.uid != "CP2-1"
    assert mine.uid.startswith("CP2-1")
    assert len(mine.uid) <= 36
    operator_evse = await _get(uow, Evse, "CP2-1")
    assert operator_evse.station_id is None
    assert operator_evse.status == "AVAILABLE"


async def test_long_station_ids_get_short_distinct_hashed_uids(uow: UnitOfWorkFactory) -> None:
    first_id, second_id = "A" * 39 + "1", "A" * 39 + "2"
    for station_id in (first_id, second_id):
        await _station(uow, station_id)
        await _status(uow, 1, "AVAILABLE", utcnow(), station_id=station_id)
    (first,) = await _evses(uow, first_id)
    (second,) = await _evses(uow, second_id)
    assert first.uid != second.uid
    assert len(first.uid) <= 36
    assert len(second.uid) <= 36
    assert first.evse_id is not None
    assert len(first.evse_id) <= 48


@pytest.mark.parametrize(("length", "hashed"), [(34, False), (35, True), (48, True)])
async def test_an_id_too_long_for_a_plain_uid_is_hashed(
    uow: UnitOfWorkFactory, length: int, hashed: bool
) -> None:
    station_id = "S" * length
    await _station(uow, station_id)
    await _status(uow, 1, "AVAILABLE", utcnow(), station_id=station_id)
    (evse,) = await _evses(uow, station_id)
    assert len(evse.uid) <= 36
    assert (evse.uid != f"{station_id}-1") is hashed


async def test_similar_station_ids_get_distinct_uids(uow: UnitOfWorkFactory) -> None:
    reports = (("CP-1", 12), ("CP-11", 2), ("CP-1", 1), ("CP-11", 1), ("cp-1", 1))
    for station_id in ("CP-1", "CP-11", "cp-1"):
        await _station(uow, station_id)
    for station_id, number in reports:
        await _status(uow, number, "AVAILABLE", utcnow(), station_id=station_id)
    async with uow() as unit:
        rows = (
            await unit.session.execute(select(Evse.station_id, Evse.ocpp_evse_id, Evse.uid))
        ).all()
    assert sorted((station, number) for station, number, _ in rows) == sorted(reports)
    uids = [uid for _, _, uid in rows]
    assert len(set(uids)) == len(reports)


# Offline


async def test_going_offline_makes_every_evse_unknown(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    await stations.mark_connected(uow(), "CP1", ocpp_version="ocpp1.6", node="node-a")
    await _status(uow, 1, "AVAILABLE", utcnow())
    await _status(uow, 2, "CHARGING", utcnow())
    at = utcnow() + timedelta(minutes=5)
    went = await _in_uow(
        uow, lambda u: record_offline(u, "CP1", node="node-a", reason="silent", at=at)
    )
    assert went is True
    station = await _get(uow, ChargingStation, "CP1")
    assert station.online is False
    assert station.connected_node is None
    evses = await _evses(uow)
    assert [evse.status for evse in evses] == ["UNKNOWN", "UNKNOWN"]
    assert [evse.last_updated for evse in evses] == [at, at]
    assert (await _get(uow, Location, DEFAULT.id)).last_updated == at
    unknown = [
        e for e in await _outbox(uow, "evse.status_changed") if e.payload["status"] == "UNKNOWN"
    ]
    assert sorted(e.payload["evse_uid"] for e in unknown) == ["CP1-1", "CP1-2"]
    connection = await _outbox(uow, "station.connection_changed")
    assert connection[-1].payload["online"] is False
    assert connection[-1].payload["reason"] == "silent"
    (entry,) = await _log(uow, kind="offline")
    assert entry.summary == "offline: silent"


async def test_going_offline_from_another_node_does_nothing(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    await stations.mark_connected(uow(), "CP1", ocpp_version="ocpp1.6", node="node-b")
    await _status(uow, 1, "AVAILABLE", utcnow())
    # The connection on node-a closed after the station reconnected to node-b.
    went = await _in_uow(
        uow, lambda u: record_offline(u, "CP1", node="node-a", reason="connection closed")
    )
    assert went is False
    station = await _get(uow, ChargingStation, "CP1")
    assert station.online is True
    assert station.connected_node == "node-b"
    assert [evse.status for evse in await _evses(uow)] == ["AVAILABLE"]
    assert await _log(uow, kind="offline") == []
    # A station nobody knows is not an error either.
    unknown = await _in_uow(
        uow, lambda u: record_offline(u, "NOBODY", node="node-b", reason="closed")
    )
    assert unknown is False


# The station log


async def test_the_station_log_is_newest_first_and_filters_by_kind(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    await _station(uow, "CP2")
    now = utcnow()

    async def write(unit: UnitOfWork) -> None:
        for index, kind in enumerate(("security", "firmware", "security", "data_transfer")):
            log_station_event(unit, "CP1", kind, f"entry {index}", received_at=now)
        log_station_event(unit, "CP2", "security", "other station", received_at=now)

    await _in_uow(uow, write)
    entries = await _log(uow)
    assert [entry.summary for entry in entries] == ["entry 3", "entry 2", "entry 1", "entry 0"]
    security = await _log(uow, kind="security")
    assert [entry.summary for entry in security] == ["entry 2", "entry 0"]
    page = await list_station_events(uow(), "CP1", offset=1, limit=2)
    assert [entry.summary for entry in page.items] == ["entry 2", "entry 1"]
    assert page.total == 4
    with pytest.raises(NotFound):
        await list_station_events(uow(), "NOBODY")


async def test_a_long_summary_is_clipped_not_refused(uow: UnitOfWorkFactory) -> None:
    await _station(uow)

    async def write(unit: UnitOfWork) -> None:
        log_station_event(unit, "CP1", "data_transfer", "x" * 400, received_at=utcnow())

    await _in_uow(uow, write)
    (entry,) = await _log(uow, kind="data_transfer")
    assert entry.summary == "x" * 255
