"""The grouped start writes what starting each transaction alone writes.

The 1.6 gateway writes StartTransaction with ``GroupCommitter.run_grouped(start_transactions,
...)``: stations, EVSEs, start keys and tariffs read once per batch, the transaction numbers
and the sessions inserted with a statement each. The rare cases go to ``start_transaction``,
the ORM way that states the rules: a start naming a reservation, an EVSE nobody described, a
station's second start in the batch. Here one script of starts, rare cases included, is
written both ways for two sets of stations on one database: side A each start alone in its
own transaction, side B all queued at once so they share a batch. Every row either side wrote
(sessions, transaction numbers, billing points, samples, EVSEs, the station log, the outbox)
must then be the same, station for station, and so must the answers.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from charging_support import decide
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import selectinload

from cpms import stations
from cpms.admission import AdmissionPolicy, Verdict
from cpms.authorization import Authorizer, Operator
from cpms.charging import (
    StartOutcome,
    StartRequest,
    StationStart,
    start_transaction,
    start_transactions,
)
from cpms.errors import NotFound
from cpms.group_commit import GroupCommitter
from cpms.locations import assign_tariffs
from cpms.model import (
    BilledReading,
    Evse,
    MeterSample,
    OutboxEntry,
    Session,
    StationEvent,
    TransactionNumber,
)
from cpms.station_lifecycle import StatusReport, record_status
from cpms.tariffs import import_tariffs
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWorkFactory

from support import DEFAULT_LOCATION as DEFAULT

OPERATOR = Operator("NL", "CPM")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TAG = "TAG-0001"
STATIONS = ("S1", "S2", "S3", "S4", "S5", "S6")
PRICED = ("S1", "S2", "S3")
"""Stations whose EVSE 1 lists tariff T-1."""
TARIFF = {
    "country_code": "NL",
    "party_id": "CPM",
    "id": "T-1",
    "currency": "EUR",
    "elements": [{"price_components": [{"type": "ENERGY", "price": 0.25, "step_size": 1}]}],
    "last_updated": "2025-01-01T00:00:00Z",
}


@dataclass(frozen=True)
class _Start:
    station: str
    uid: str | None
    minutes: float
    evse: int = 1
    meter: int | None = 1000
    station_time: datetime | None = None
    reservation_id: int | None = None

    def request(self) -> StartRequest:
        at = T0 + timedelta(minutes=self.minutes)
        return StartRequest(
            evse_number=self.evse,
            uid=self.uid,
            meter_start_wh=Decimal(self.meter) if self.meter is not None else None,
            received_at=at,
            station_time=self.station_time or at,
            reservation_id=self.reservation_id,
        )


BEFORE = _Start("S1", TAG, 0)
"""Written and committed before the script, on both sides."""
SCRIPT = (
    BEFORE,  # sent again: a station that never saw the answer (a replay)
    _Start("S2", TAG, 1),
    _Start("S3", TAG, 1, station_time=datetime(1990, 1, 1, tzinfo=UTC)),  # clock wrong
    _Start("S4", TAG, 1, evse=2),  # an EVSE nobody described: added
    _Start("S5", None, 1, meter=None),  # nobody identified yet, no start reading
    _Start("S2", TAG, 1),  # the same start again in the same batch
    _Start("S5", TAG, 2, reservation_id=424242),  # a reservation nobody made
    _Start("S6", "NOBODY", 1),  # a token nobody issued: INVALID
    _Start("S1", TAG, 3, evse=1, meter=2000),  # the station's next transaction
)


async def _set_up(uow: UnitOfWorkFactory, side: str) -> StartOutcome:
    """``side``'s stations with EVSE 1 (priced on ``PRICED``); ``BEFORE`` written on it."""
    for name in STATIONS:
        station_id = f"{side}-{name}"
        admission = await stations.admit_station(
            uow(), station_id, None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
        )
        assert admission.verdict is Verdict.ACCEPTED
        async with uow() as unit:
            await record_status(unit, station_id, StatusReport(1, "AVAILABLE", received_at=T0))
            await unit.commit()
        if name in PRICED:
            await assign_tariffs(uow(), DEFAULT.id, f"{station_id}-1", "1", ["T-1"])
    return (await _start_alone(uow, side, [BEFORE]))[0]


async def _decided(uow: UnitOfWorkFactory, side: str, start: _Start) -> StationStart:
    station_id = f"{side}-{start.station}"
    authorizer = Authorizer(OPERATOR)
    async with uow() as unit:
        authorization = await decide(unit, authorizer, station_id, start.uid)
    return StationStart(station_id, start.request(), authorization, OPERATOR)


async def _start_alone(
    uow: UnitOfWorkFactory, side: str, script: tuple[_Start, ...] | list[_Start]
) -> list[StartOutcome]:
    outcomes = []
    for start in script:
        decided = await _decided(uow, side, start)
        async with uow() as unit:
            outcome = await start_transaction(
                unit,
                decided.station_id,
                decided.request,
                authorization=decided.authorization,
                operator=decided.operator,
            )
            await unit.commit()
        outcomes.append(outcome)
    return outcomes


async def _start_grouped(
    uow: UnitOfWorkFactory, side: str, script: tuple[_Start, ...]
) -> tuple[list[StartOutcome], GroupCommitter]:
    decided = [await _decided(uow, side, start) for start in script]
    committer = GroupCommitter(uow)
    await committer.start()
    try:
        outcomes = await asyncio.gather(
            *(committer.run_grouped(start_transactions, start) for start in decided)
        )
    finally:
        await committer.stop()
    return list(outcomes), committer


async def _what_was_written(uow: UnitOfWorkFactory, side: str) -> dict[str, Any]:
    """Every row of ``side``'s stations, with side-dependent ids replaced by names.

    A session is named by its station and start key (the key does not name the station).
    """
    prefix = f"{side}-"
    async with uow() as unit:
        db = unit.session
        sessions = list(
            await db.scalars(select(Session).where(Session.station_id.like(f"{prefix}%")))
        )
        name_of = {s.id: (s.station_id.removeprefix(prefix), s.start_key) for s in sessions}
        by_number = {s.transaction_id: name_of[s.id] for s in sessions}
        numbers = sorted(
            (name_of[row.session_id], by_number[str(row.id)], row.issued_at)
            for row in await db.scalars(
                select(TransactionNumber).where(TransactionNumber.session_id.in_(name_of))
            )
        )
        session_rows = sorted(
            (
                name_of[s.id],
                s.status,
                s.start_date_time,
                repr(s.cdr_token),
                s.auth_method,
                s.partner_id,
                s.meter_start_wh,
                s.energy_wh,
                s.last_meter_wh,
                s.last_meter_at,
                tuple(s.flags),
                s.tariff_id,
                repr(s.tariffs),
                s.currency,
                repr(s.cdr_location).replace(prefix, "").replace(f"*E{side}", "*E"),
                s.time_zone,
                s.voltage_v,
                s.location_id,
                (s.evse_uid or "").removeprefix(prefix),
                s.connector_id,
                s.reservation_id,
                s.heard_at,
                s.last_updated,
            )
            for s in sessions
        )
        samples = sorted(
            (
                name_of[row.session_id or ""],
                row.ocpp_evse_id,
                row.sampled_at,
                row.station_time,
                row.received_at,
                row.measurand,
                row.context,
                row.unit,
                row.value,
                row.value_si,
                tuple(row.flags) if row.flags is not None else None,
            )
            for row in await db.scalars(
                select(MeterSample).where(MeterSample.station_id.like(f"{prefix}%"))
            )
        )
        billed = sorted(
            (name_of[row.session_id], row.at, row.energy_wh, row.current_a)
            for row in await db.scalars(
                select(BilledReading).where(BilledReading.session_id.in_(name_of))
            )
        )
        evses = sorted(
            (
                (evse.station_id or "").removeprefix(prefix),
                evse.ocpp_evse_id,
                evse.uid.removeprefix(prefix),
                evse.status,
                len(evse.connectors),
            )
            for evse in (
                await db.scalars(
                    select(Evse)
                    .where(Evse.station_id.like(f"{prefix}%"))
                    .options(selectinload(Evse.connectors))
                )
            ).unique()
        )
        log = sorted(
            (
                row.station_id.removeprefix(prefix),
                row.kind,
                re.sub(r"transaction \d+", "transaction N", row.summary.replace(prefix, "")),
            )
            for row in await db.scalars(
                select(StationEvent).where(StationEvent.station_id.like(f"{prefix}%"))
            )
        )
        outbox = sorted(
            (entry.topic, name_of[entry.aggregate_id])
            for entry in await db.scalars(
                select(OutboxEntry).where(OutboxEntry.aggregate_id.in_(name_of))
            )
        )
    return {
        "numbers": numbers,
        "sessions": session_rows,
        "samples": samples,
        "billed": billed,
        "evses": evses,
        "log": log,
        "outbox": outbox,
        "by_number": by_number,
    }


def _answers(outcomes: list[StartOutcome], written: dict[str, Any]) -> list[tuple[Any, ...]]:
    by_number = written["by_number"]
    return [
        (
            by_number[outcome.transaction_id],
            outcome.replayed,
            outcome.authorization.status if outcome.authorization is not None else None,
        )
        for outcome in outcomes
    ]


@pytest.mark.usefixtures("database_url")
async def test_a_grouped_batch_of_starts_writes_what_each_start_alone_writes(
    uow: UnitOfWorkFactory,
) -> None:
    await import_tariffs(uow(), [TARIFF])
    await create_token(uow(), {"uid": TAG}, country_code="NL", party_id="CPM")
    await _set_up(uow, "A")
    await _set_up(uow, "B")

    alone = await _start_alone(uow, "A", SCRIPT)
    grouped, committer = await _start_grouped(uow, "B", SCRIPT)

    # All in one transaction: nothing failed and was retried alone.
    assert committer.batches == 1
    assert committer.items == len(SCRIPT)
    a = await _what_was_written(uow, "A")
    b = await _what_was_written(uow, "B")
    # The script reaches what it is meant to (else the comparison proves little).
    answers = _answers(alone, a)
    assert [replayed for _, replayed, _ in answers] == [
        True, False, False, False, False, True, False, False, False
    ]  # fmt: skip
    assert answers[5][0] == answers[1][0]  # the same start twice: one session
    assert len(a["sessions"]) == len(SCRIPT) - 1  # BEFORE's replay and S2's twice opened none
    assert {row[1] for row in a["sessions"]} == {"ACTIVE", "PENDING", "INVALID"}
    assert {row[11] for row in a["sessions"]} == {"T-1", None}  # sealed where priced
    assert ("S4", 2, "S4-2", "UNKNOWN", 1) in a["evses"]
    assert {kind for _, kind, _ in a["log"]} >= {"clock", "evse_added"}
    assert any("station_clock" in row[10] for row in a["sessions"])
    for table in ("numbers", "sessions", "samples", "billed", "evses", "log", "outbox"):
        assert b[table] == a[table], table
    assert _answers(grouped, b) == answers


@pytest.mark.usefixtures("database_url")
async def test_a_batch_of_starts_costs_the_same_statements_however_many_it_holds(
    uow: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    await import_tariffs(uow(), [TARIFF])
    for name in (f"N{k:02d}" for k in range(20)):
        await stations.admit_station(
            uow(), name, None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
        )
        async with uow() as unit:
            await record_status(unit, name, StatusReport(1, "AVAILABLE", received_at=T0))
            await unit.commit()
        await assign_tariffs(uow(), DEFAULT.id, f"{name}-1", "1", ["T-1"])
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async def batch(stations_: list[str], minutes: float) -> int:
        starts = [
            StationStart(name, _Start(name, None, minutes).request(), None, OPERATOR)
            for name in stations_
        ]
        committer = GroupCommitter(uow)
        await committer.start()
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            outcomes = await asyncio.gather(
                *(committer.run_grouped(start_transactions, start) for start in starts)
            )
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
            await committer.stop()
        assert committer.batches == 1
        assert len({outcome.transaction_id for outcome in outcomes}) == len(starts)
        assert not any(outcome.replayed for outcome in outcomes)
        return len(statements)

    few = await batch([f"N{k:02d}" for k in range(4)], 1)
    many = await batch([f"N{k:02d}" for k in range(4, 20)], 1)
    # Reads of stations, EVSEs, start keys and tariffs; inserts of numbers, sessions, billing
    # points, samples and events; the commit: none of them one per start.
    assert many == few
    assert many <= 12
    async with uow() as unit:
        sealed = list(await unit.session.scalars(select(Session.tariff_id)))
    assert sealed == ["T-1"] * 20


@pytest.mark.usefixtures("database_url")
async def test_a_start_for_an_unknown_station_fails_alone_and_the_batch_is_written(
    uow: UnitOfWorkFactory,
) -> None:
    await stations.admit_station(
        uow(), "K1", None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
    )
    async with uow() as unit:
        await record_status(unit, "K1", StatusReport(1, "AVAILABLE", received_at=T0))
        await unit.commit()
    committer = GroupCommitter(uow)
    await committer.start()
    try:
        known, unknown = await asyncio.gather(
            committer.run_grouped(
                start_transactions,
                StationStart("K1", _Start("K1", None, 1).request(), None, OPERATOR),
            ),
            committer.run_grouped(
                start_transactions,
                StationStart("GHOST", _Start("GHOST", None, 1).request(), None, OPERATOR),
            ),
            return_exceptions=True,
        )
    finally:
        await committer.stop()
    assert isinstance(unknown, NotFound)
    assert isinstance(known, StartOutcome)
    async with uow() as unit:
        found = list(await unit.session.scalars(select(Session)))
    assert [(s.station_id, s.transaction_id) for s in found] == [("K1", known.transaction_id)]
