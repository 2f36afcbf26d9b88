"""End to end: a simulated fleet against a real node, and what the node kept of it.

The fleet (``simulator.fleet.Fleet``) is a client on the wire only; the node is a real
``cpms.runtime.Runtime`` on loopback with its database (SQLite, and PostgreSQL where
``CPMS_TEST_POSTGRES_URL`` is set). What the stations say they delivered (their own meter
registers, ``Station.history``) must be what the node billed: one session per transaction,
completed, with the same energy, and a CDR for each. Faults: a station that goes offline in
the middle of transactions queues its messages and replays them on return; nothing is lost and
nothing doubled, also when every transaction message is sent twice and meter values arrive out
of order.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from cpms.admission import AdmissionPolicy
from cpms.config import Settings
from cpms.model import Cdr, MeterSample, Session
from cpms.runtime import Runtime
from simulator import Fleet, FleetOptions
from simulator.faults import Faults
from simulator.fleet import build_station
from simulator.scenarios import AutoTransactions
from simulator.station import Station, StationOptions, TransactionRecord
from simulator.templates import Template, shipped_templates

WAIT = 20.0
"""Seconds any awaited effect may take before the test gives up."""


def quick(template: Template) -> Template:
    return dataclasses.replace(template, meter_interval=0.3)


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime(
        settings.replace(station_admission=AdmissionPolicy.OPEN, accept_unknown_tokens=True),
        node="simulator-e2e",
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def url(node: Runtime) -> str:
    return f"ws://127.0.0.1:{node.ocpp_port}/ocpp"


async def sessions_of(node: Runtime, station_id: str) -> list[Session]:
    async with node.uow() as uow:
        found = await uow.session.scalars(select(Session).where(Session.station_id == station_id))
        return list(found)


def csms_id(record: TransactionRecord) -> str:
    """The transaction id the node knows: 1.6 the one it issued, 2.0.1 the station's own."""
    if record.server_id is not None:
        return str(record.server_id)
    return record.transaction.local_id


async def settled(node: Runtime, stations: list[Station]) -> dict[str, Session]:
    """Wait until every transaction the stations ended is a completed session with a CDR."""
    wanted = {csms_id(r) for s in stations for r in s.history}
    async with asyncio.timeout(WAIT):
        while True:
            async with node.uow() as uow:
                rows = await uow.session.scalars(
                    select(Session).where(Session.station_id.in_([s.id for s in stations]))
                )
                by_tx = {row.transaction_id: row for row in rows}
            if all(by_tx.get(tx) is not None and by_tx[tx].cdr_id for tx in wanted):
                return by_tx
            await asyncio.sleep(0.1)


def assert_billed_as_delivered(stations: list[Station], sessions: dict[str, Session]) -> None:
    records = [r for s in stations for r in s.history]
    assert records, "the scenario made no transaction at all"
    assert len(sessions) == len(records), "a session is missing or doubled"
    for record in records:
        session = sessions[csms_id(record)]
        assert session.status == "COMPLETED"
        # A 1.6 station sends whole Wh (meterStart/meterStop); its own register is exact.
        assert abs(session.energy_wh - Decimal(str(record.energy_wh))) <= 1, (record, session)


async def test_a_mixed_fleet_is_billed_what_its_stations_delivered(node: Runtime) -> None:
    templates = tuple(quick(t) for t in shipped_templates().values())
    fleet = Fleet(
        FleetOptions(
            url=url(node),
            ocpp="mix",
            stations=4,
            templates=templates,
            duration=4.0,
            seed=7,
            scenario=AutoTransactions(
                tokens=(("SIMFLEET01", 2.0), ("SIMFLEET02", 1.0)),
                mean_arrival_gap=0.5,
                duration=(1.0, 2.0),
            ),
        )
    )
    report = await fleet.run()
    assert report.versions == {"1.6": 2, "2.0.1": 2}
    assert report.figures["errors"] == 0, report.figures["errors_by_kind"]
    assert report.figures["sessions_completed"] == report.figures["sessions_started"] > 0
    sessions = await settled(node, fleet.stations)
    assert_billed_as_delivered(fleet.stations, sessions)
    delivered = sum(r.energy_wh for s in fleet.stations for r in s.history)
    assert report.figures["energy_kwh"] == pytest.approx(delivered / 1000, abs=0.001)
    async with node.uow() as uow:
        cdrs = await uow.session.scalar(
            select(func.count())
            .select_from(Cdr)
            .where(Cdr.session_id.in_([s.id for s in sessions.values()]))
        )
    assert cdrs == len(sessions)


async def test_the_same_seed_makes_the_same_visits(node: Runtime) -> None:
    async def visits(first: int) -> dict[tuple[str, int], tuple[str, str, float | None]]:
        fleet = Fleet(
            FleetOptions(
                url=url(node),
                stations=2,
                first_number=first,
                templates=(quick(shipped_templates()["ac-duo-22"]),),
                duration=2.5,
                seed=42,
                scenario=AutoTransactions(
                    tokens=(("SEEDA", 1.0), ("SEEDB", 1.0), ("SEEDC", 1.0)),
                    mean_arrival_gap=0.3,
                    duration=(0.5, 1.0),
                ),
            )
        )
        await fleet.run()
        # How many visits fit in the run depends on timing; the first at each outlet does not.
        firsts: dict[tuple[str, int], tuple[str, str, float | None]] = {}
        for station in fleet.stations:
            for r in station.history:
                tx = r.transaction
                firsts.setdefault((station.id, r.outlet), (r.id_tag, tx.vehicle, tx.soc_start))
        return firsts

    first, again = await visits(101), await visits(101)
    assert len(first) == 4, "every outlet of both stations should have had a visit"
    assert first == again


def one_station(node: Runtime, station_id: str, faults: Faults) -> Station:
    template = quick(shipped_templates()["ac-duo-22"])
    return build_station(station_id, "1.6", template, StationOptions(url=url(node), faults=faults))


async def drained(station: Station) -> None:
    async with asyncio.timeout(WAIT):
        await station.booted.wait()
    assert await station.delivered(WAIT), "the station's queue was not delivered"


@pytest.mark.parametrize(
    "faults",
    [Faults(), Faults(duplicate_rate=1.0, out_of_order=True)],
    ids=["replay", "replay-duplicated-out-of-order"],
)
async def test_an_offline_station_replays_its_queue_and_nothing_is_lost_or_doubled(
    node: Runtime, faults: Faults
) -> None:
    station = one_station(node, f"SIM-OFFLINE-{int(faults.duplicate_rate)}", faults)
    station.start()
    try:
        async with asyncio.timeout(WAIT):
            await station.booted.wait()
        # Outlet 1 starts online and ends offline; outlet 2 lives entirely offline.
        await station.start_transaction(1, "SIMOFF01")
        await drained(station)
        await station.go_offline()
        await asyncio.sleep(1.0)
        await station.stop_transaction(1)
        await station.start_transaction(2, "SIMOFF02")
        await asyncio.sleep(1.0)
        await station.stop_transaction(2)
        queued = station.queued
        assert queued >= 4, "the offline station should have queued meter values and both ends"
        assert not station.booted.is_set()
        station.go_online()
        await drained(station)
        sessions = await settled(node, [station])
        assert_billed_as_delivered([station], sessions)
        assert {r.transaction.started_offline for r in station.history} == {False, True}
        # Every periodic sample the station took reached the node exactly once.
        periodic = (
            MeterSample.session_id.in_([s.id for s in sessions.values()]),
            MeterSample.measurand == "Energy.Active.Import.Register",
            MeterSample.context == "Sample.Periodic",
        )
        async with node.uow() as uow:
            samples = await uow.session.scalar(
                select(func.count(func.distinct(MeterSample.sampled_at))).where(*periodic)
            )
            total = await uow.session.scalar(
                select(func.count()).select_from(MeterSample).where(*periodic)
            )
        assert samples, "no periodic meter value reached the node"
        assert samples == total, "a meter value was stored twice"
        assert station.figures.sent["StartTransaction"] >= 2
        assert not [k for k in station.figures.errors if k.startswith("CALLERROR")]
    finally:
        await station.stop()
