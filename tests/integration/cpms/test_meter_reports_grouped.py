"""The grouped meter-values write gives the database what writing each report alone gives.

The gateway writes MeterValues with ``GroupCommitter.run_grouped(record_meter_reports, ...)``:
one SELECT, executemany inserts and one UPDATE per session for a whole batch, handing the
rare cases (unknown transaction, ended session, possible replay) to ``record_meter_values``,
the ORM way that states the rules. Here one script of reports, rare cases and a stop queued
in between included, is written both ways for two sets of stations on one database: side A
each report alone in its own transaction, side B all queued at once so they share a batch.
Every row either side wrote (samples, billing points, sessions, charging periods with their
cost, the station log, the outbox) must then be the same, station for station.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from charging_support import start_decided, stop_decided
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cpms import stations
from cpms.admission import AdmissionPolicy, Verdict
from cpms.authorization import Authorizer, Operator
from cpms.charging import (
    CURRENT_IMPORT,
    ENERGY_REGISTER,
    MeterReport,
    MeterValue,
    Sample,
    StartRequest,
    StopRequest,
    _meters_of_keys,
    _stopping_query,
    record_meter_reports,
    record_meter_values,
)
from cpms.group_commit import GroupCommitter
from cpms.locations import assign_tariffs
from cpms.model import (
    BilledReading,
    ChargingPeriod,
    Evse,
    MeterSample,
    OutboxEntry,
    Session,
    StationEvent,
)
from cpms.station_lifecycle import StatusReport, record_status
from cpms.tariffs import import_tariffs
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

from support import DEFAULT_LOCATION as DEFAULT

OPERATOR = Operator("NL", "CPM")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TAG = "TAG-0001"
CHARGING = ("S1", "S2", "S3")
"""Stations of each side with a session; S4 has none."""
TARIFF = {
    "country_code": "NL",
    "party_id": "CPM",
    "id": "T-1",
    "currency": "EUR",
    "elements": [
        {
            "price_components": [
                {"type": "ENERGY", "price": 0.25, "vat": 10.0, "step_size": 1},
                {"type": "TIME", "price": 2.0, "vat": 10.0, "step_size": 60},
            ]
        }
    ],
    "last_updated": "2025-01-01T00:00:00Z",
}


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _energy(wh: str, **extra: Any) -> Sample:
    return Sample(ENERGY_REGISTER, Decimal(wh), Decimal(wh), unit="Wh", **extra)


def _current(phase: str, amps: str) -> Sample:
    return Sample(CURRENT_IMPORT, Decimal(amps), Decimal(amps), unit="A", phase=phase)


@dataclass(frozen=True)
class _Report:
    station: str
    transaction: str | None
    """A station of ``CHARGING`` (its session's transaction id), a literal id, or None."""
    received: float
    readings: tuple[tuple[datetime, tuple[Sample, ...]], ...]


@dataclass(frozen=True)
class _Stop:
    station: str
    at: float


def _reading(minutes: float, *samples: Sample) -> tuple[datetime, tuple[Sample, ...]]:
    return (_at(minutes), samples)


CURRENTS = (_current("L1", "16"), _current("L2", "15"))
SIGN = {"signedMeterData": "T0NNRnxKU09O", "encodingMethod": "OCMF"}
SCRIPT: tuple[_Report | _Stop, ...] = (
    _Report("S1", "S1", 1, (_reading(1, _energy("1500")),)),
    _Report("S2", "S2", 1, (_reading(1, _energy("1200"), *CURRENTS),)),
    # The same session again in the same batch: counts on from the reading above.
    _Report("S1", "S1", 1.5, (_reading(1.5, _energy("1600")),)),
    _Report("S3", "S3", 1, (_reading(1, _energy("900000")),)),  # a jump: flagged, not billed
    _Report("S1", "S1", 2, (_reading(2, _energy("1550")),)),  # backwards: flagged
    # A replay of S2's first report: nothing new is stored.
    _Report("S2", "S2", 2, (_reading(1, _energy("1200"), *CURRENTS),)),
    _Report("S4", None, 2, (_reading(2, _energy("100")),)),  # no transaction
    _Report("S4", "987654", 2, (_reading(2, _energy("150")),)),  # unknown transaction: logged
    _Report("S2", "S2", 2.2, (_reading(0.5, _energy("1100")),)),  # older, arriving late
    # A station clock in 1990: the receive time stands in, and the sample says so.
    _Report("S1", "S1", 2.5, ((datetime(1990, 1, 1, tzinfo=UTC), (_energy("1700"),)),)),
    _Report("S3", "S3", 3, (_reading(3, _energy("900100")),)),  # counts from the jump's reading
    _Report("S1", "S1", 3.2, (_reading(3.2, _energy("1800"), _energy("1800", signed_data=SIGN)),)),
    # Two readings in one report, the second in a new clock minute (the running cost is due).
    _Report("S2", "S2", 4.6, (_reading(4, _energy("2000")), _reading(4.5, _energy("2300")))),
    _Stop("S3", 5),  # an ORM work queued among the reports
    _Report("S3", "S3", 5.5, (_reading(5.5, _energy("900300")),)),  # after its stop: not billed
    _Report("S1", "S1", 6, (_reading(6, _energy("2600")),)),
)  # fmt: skip


async def _in_uow(uow: UnitOfWorkFactory, work: Callable[[UnitOfWork], Awaitable[Any]]) -> Any:
    async with uow() as unit:
        result = await work(unit)
        await unit.commit()
    return result


async def _set_up(uow: UnitOfWorkFactory, side: str) -> dict[str, str]:
    """Stations of ``side`` (priced EVSEs) with their sessions; return station -> transaction id."""
    authorizer = Authorizer(OPERATOR)
    transactions: dict[str, str] = {}
    for name in (*CHARGING, "S4"):
        station_id = f"{side}-{name}"
        admission = await stations.admit_station(
            uow(), station_id, None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
        )
        assert admission.verdict is Verdict.ACCEPTED
        report = StatusReport(evse_number=1, status="AVAILABLE", received_at=T0)
        await _in_uow(uow, lambda u, s=station_id, r=report: record_status(u, s, r))
        async with uow() as unit:
            evse_uid = await unit.session.scalar(
                select(Evse.uid).where(Evse.station_id == station_id)
            )
        assert evse_uid is not None
        await assign_tariffs(uow(), DEFAULT.id, evse_uid, "1", ["T-1"])
        if name in CHARGING:
            request = StartRequest(
                evse_number=1,
                uid=TAG,
                meter_start_wh=Decimal(1000 if name != "S3" else 800000),
                received_at=T0,
                station_time=T0,
            )
            outcome = await _in_uow(
                uow, lambda u, s=station_id, r=request: start_decided(u, s, r, authorizer)
            )
            transactions[name] = outcome.transaction_id
    return transactions


def _meter_report(step: _Report, transactions: dict[str, str]) -> MeterReport:
    return MeterReport(
        evse_number=1,
        received_at=_at(step.received),
        meter_values=tuple(MeterValue(at, samples) for at, samples in step.readings),
        transaction_id=transactions.get(step.transaction or "", step.transaction),
    )


def _stop_work(
    station_id: str, step: _Stop, transaction_id: str
) -> Callable[[UnitOfWork], Awaitable[Any]]:
    request = StopRequest(
        transaction_id=transaction_id,
        meter_stop_wh=Decimal(900200),
        received_at=_at(step.at),
        station_time=_at(step.at),
    )
    return lambda u: stop_decided(u, station_id, request, Authorizer(OPERATOR))


async def _write_alone(uow: UnitOfWorkFactory, transactions: dict[str, str]) -> None:
    for step in SCRIPT:
        station_id = f"A-{step.station}"
        if isinstance(step, _Stop):
            await _in_uow(uow, _stop_work(station_id, step, transactions[step.station]))
            continue
        report = _meter_report(step, transactions)
        await _in_uow(uow, lambda u, s=station_id, r=report: record_meter_values(u, s, r))


async def _write_grouped(uow: UnitOfWorkFactory, transactions: dict[str, str]) -> GroupCommitter:
    committer = GroupCommitter(uow)
    await committer.start()
    try:
        calls = []
        for step in SCRIPT:
            station_id = f"B-{step.station}"
            if isinstance(step, _Stop):
                calls.append(
                    committer.run(_stop_work(station_id, step, transactions[step.station]))
                )
                continue
            report = _meter_report(step, transactions)
            calls.append(committer.run_grouped(record_meter_reports, (station_id, report)))
        await asyncio.gather(*calls)
    finally:
        await committer.stop()
    return committer


async def _what_was_written(uow: UnitOfWorkFactory, side: str) -> dict[str, Any]:
    """Every row of ``side``'s stations, with station and session ids replaced by names."""
    async with uow() as unit:
        db = unit.session
        sessions = list(
            await db.scalars(select(Session).where(Session.station_id.like(f"{side}-%")))
        )
        name_of = {s.id: s.station_id.removeprefix(f"{side}-") for s in sessions}
        samples = sorted(
            (
                sample.station_id.removeprefix(f"{side}-"),
                name_of.get(sample.session_id or ""),
                sample.ocpp_evse_id,
                sample.sampled_at,
                sample.station_time,
                sample.received_at,
                sample.measurand,
                sample.phase,
                sample.location,
                sample.context,
                sample.unit,
                sample.value,
                sample.value_si,
                repr(sample.signed_data),
                tuple(sample.flags) if sample.flags is not None else None,
            )
            for sample in await db.scalars(
                select(MeterSample).where(MeterSample.station_id.like(f"{side}-%"))
            )
        )
        billed = sorted(
            (name_of[row.session_id], row.at, row.energy_wh, row.current_a)
            for row in await db.scalars(
                select(BilledReading).where(BilledReading.session_id.in_(name_of))
            )
        )
        periods = sorted(
            (name_of[row.session_id], row.start_date_time, repr(row.dimensions), row.tariff_id)
            for row in await db.scalars(
                select(ChargingPeriod).where(ChargingPeriod.session_id.in_(name_of))
            )
        )
        session_rows = sorted(
            (
                name_of[s.id],
                s.status,
                s.energy_wh,
                s.last_meter_wh,
                s.last_meter_at,
                tuple(s.flags),
                s.heard_at,
                s.last_updated,
                s.end_date_time,
                s.total_cost_excl_vat,
                s.total_cost_incl_vat,
            )
            for s in sessions
        )
        log = sorted(
            (
                event.station_id.removeprefix(f"{side}-"),
                event.kind,
                event.summary.replace(f"{side}-", ""),
            )
            for event in await db.scalars(
                select(StationEvent).where(StationEvent.station_id.like(f"{side}-%"))
            )
        )
        outbox = sorted(
            (entry.topic, name_of[entry.aggregate_id])
            for entry in await db.scalars(
                select(OutboxEntry).where(OutboxEntry.aggregate_id.in_(name_of))
            )
        )
    return {
        "samples": samples,
        "billed": billed,
        "periods": periods,
        "sessions": session_rows,
        "log": log,
        "outbox": outbox,
    }


@pytest.mark.usefixtures("database_url")
async def test_a_grouped_batch_writes_what_each_report_alone_writes(
    uow: UnitOfWorkFactory,
) -> None:
    await import_tariffs(uow(), [TARIFF])
    await create_token(uow(), {"uid": TAG}, country_code="NL", party_id="CPM")
    alone = await _set_up(uow, "A")
    grouped = await _set_up(uow, "B")

    await _write_alone(uow, alone)
    committer = await _write_grouped(uow, grouped)

    # All in one transaction: nothing failed and was retried alone.
    assert committer.batches == 1
    assert committer.items == len(SCRIPT)
    a = await _what_was_written(uow, "A")
    b = await _what_was_written(uow, "B")
    # The script reaches what it is meant to (else the comparison proves little).
    s2_first = [row for row in a["samples"] if row[0] == "S2" and row[3] == _at(1)]
    assert len(s2_first) == 3  # the replay stored nothing
    assert {flag for row in a["sessions"] for flag in row[5]} >= {
        "meter_jump",
        "meter_backwards",
        "station_clock",
    }
    assert len(a["periods"]) > 0
    assert any(event[1] == "unknown_transaction" for event in a["log"])
    for table in a:
        assert b[table] == a[table], table


@pytest.mark.parametrize(
    "batch_read",
    [
        pytest.param(lambda: _meters_of_keys(4).statement, id="meter values"),
        pytest.param(lambda: _stopping_query(4)[0], id="stops"),
    ],
)
async def test_a_batch_finds_its_sessions_by_index_not_by_reading_every_session(
    engine: AsyncEngine, batch_read: Callable[[], Any]
) -> None:
    # `(station_id, transaction_id) IN (...)` made SQLite read the whole session table for
    # every batch, a cost growing with each session ever stored; a list joined to the table
    # is one lookup a pair in the (station, transaction id) index.
    statement = batch_read()
    sql = str(statement.compile(dialect=engine.dialect))
    pairs = ("CS1", "1", "CS2", "7", "CS3", "9", None, None)
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", pairs)
        else:  # an empty table is read whole whatever the query; ask what else it could do
            await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = await connection.exec_driver_sql(f"EXPLAIN {sql}", pairs)
        steps = " | ".join(str(step[-1]) for step in plan)
    assert "SCAN session" not in steps
    assert "Seq Scan on session" not in steps
    assert "session" in steps
    assert "INDEX" in steps.upper()


async def test_meter_samples_are_indexed_by_session_only(engine: AsyncEngine) -> None:
    # Each index of meter_sample costs a batch of readings a page per station in the write-ahead
    # log and the checkpoint; samples are read by session only (a replay's check, a CDR's
    # signed values), so an index by station was all cost.
    async with engine.connect() as connection:
        indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("meter_sample"))
    assert [(index["name"], index["column_names"]) for index in indexes] == [
        ("ix_meter_sample_session_id_sampled_at", ["session_id", "sampled_at"])
    ]
