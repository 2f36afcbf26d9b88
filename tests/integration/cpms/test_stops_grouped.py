"""The grouped stop writes what stopping each transaction alone writes.

The 1.6 gateway writes StopTransaction with ``GroupCommitter.run_grouped(stop_transactions,
...)``: the sessions read once per batch with their EVSE's number and power, the readings
inserted with a statement each, the sessions priced together and their CDRs issued together.
The rare cases go to ``stop_transaction``, the ORM way that states the rules: an unknown
transaction, a session already ended (a replay, a late stop after the operator closed it),
readings that may be a replay, a station's second stop in the batch. Here one script of
stops, rare cases included, is written both ways for two sets of stations on one database:
side A each stop alone in its own transaction, side B all queued at once so they share a
batch. Every row either side wrote (sessions, CDRs, charging periods, billing points,
samples, the station log, the outbox) must then be the same, station for station, and so
must the answers.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from charging_support import decide, start_decided
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cpms import cdrs, stations
from cpms.admission import AdmissionPolicy, Verdict
from cpms.authorization import Authorizer, Operator
from cpms.charging import (
    ENERGY_REGISTER,
    MeterReport,
    MeterValue,
    Sample,
    StartRequest,
    StationStop,
    StopOutcome,
    StopRequest,
    record_meter_values,
    stop_transaction,
    stop_transactions,
)
from cpms.group_commit import GroupCommitter
from cpms.locations import assign_tariffs
from cpms.model import (
    BilledReading,
    Cdr,
    ChargingPeriod,
    MeterSample,
    OutboxEntry,
    Session,
    StationEvent,
)
from cpms.session_closing import close_session
from cpms.station_lifecycle import StatusReport, record_status
from cpms.tariffs import import_tariffs
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

from support import DEFAULT_LOCATION as DEFAULT

OPERATOR = Operator("NL", "CPM")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TAG = "TAG-0001"
PRICED = ("S1", "S2", "S3", "S4", "S8")
"""Stations whose EVSE 1 lists tariff T-1; the others charge nothing."""
CHARGING = {"S1": TAG, "S2": TAG, "S3": TAG, "S4": TAG, "S5": TAG, "S6": TAG, "S7": "NOBODY"}
"""Stations with a session before the script, and the token it started with (S7's is
nobody's: INVALID). S8's session is started and closed by the operator in ``_set_up``."""
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
SIGN = {"signedMeterData": "T0NNRnxKU09O", "encodingMethod": "OCMF"}


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _energy(wh: int, **extra: Any) -> Sample:
    return Sample(ENERGY_REGISTER, Decimal(wh), Decimal(wh), unit="Wh", **extra)


@dataclass(frozen=True)
class _Stop:
    station: str
    minutes: float
    meter: int | None
    transaction: str | None = None
    """A literal transaction id; by default the station's session's."""
    uid: str | None = None
    station_time: datetime | None = None
    reason: str | None = "EVDisconnected"
    data: tuple[tuple[float, tuple[Sample, ...]], ...] = ()

    def request(self, transactions: dict[str, str]) -> StopRequest:
        at = _at(self.minutes)
        return StopRequest(
            transaction_id=self.transaction or transactions[self.station],
            received_at=at,
            meter_stop_wh=Decimal(self.meter) if self.meter is not None else None,
            station_time=self.station_time or at,
            uid=self.uid,
            reason=self.reason,
            meter_values=tuple(MeterValue(_at(m), samples) for m, samples in self.data),
        )


BEFORE = _Stop("S6", 30, 2000)
"""Written and committed before the script, on both sides."""
SCRIPT = (
    # Transaction data with a signed reading: billed, and the CDR carries the signed value.
    _Stop("S1", 45, 9000, data=((40, (_energy(8000), _energy(8000, signed_data=SIGN))),)),
    _Stop("S2", 45, 3000, station_time=datetime(1990, 1, 1, tzinfo=UTC)),  # clock wrong
    _Stop("S3", 45, 500, uid=TAG, reason=None),  # backwards from its start; a token named
    # A reading older than the session's last (minute 30): it may be a replay.
    _Stop("S4", 45, 4000, data=((25, (_energy(1800),)),)),
    _Stop("S5", 45, 1500),  # an EVSE nobody priced: a CDR that charges nothing
    BEFORE,  # sent again: a station that never saw the answer (a replay)
    _Stop("S1", 45, 9000, data=((40, (_energy(8000), _energy(8000, signed_data=SIGN))),)),
    _Stop("S7", 45, 1200),  # an INVALID session: ended, never billed
    _Stop("S9", 45, 700, transaction="987654"),  # a transaction nobody issued
    _Stop("S8", 50, 6000),  # the station's own stop after the operator closed it: corrected
)


async def _in_uow(uow: UnitOfWorkFactory, work: Callable[[UnitOfWork], Awaitable[Any]]) -> Any:
    async with uow() as unit:
        result = await work(unit)
        await unit.commit()
    return result


async def _station(uow: UnitOfWorkFactory, station_id: str, *, priced: bool) -> None:
    admission = await stations.admit_station(
        uow(), station_id, None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
    )
    assert admission.verdict is Verdict.ACCEPTED
    report = StatusReport(1, "AVAILABLE", received_at=T0)
    await _in_uow(uow, lambda u: record_status(u, station_id, report))
    if priced:
        await assign_tariffs(uow(), DEFAULT.id, f"{station_id}-1", "1", ["T-1"])


async def _start(uow: UnitOfWorkFactory, station_id: str, uid: str, meter: int = 1000) -> str:
    request = StartRequest(
        evse_number=1,
        uid=uid,
        meter_start_wh=Decimal(meter),
        received_at=T0,
        station_time=T0,
    )
    outcome = await _in_uow(
        uow, lambda u: start_decided(u, station_id, request, Authorizer(OPERATOR))
    )
    return str(outcome.transaction_id)


async def _meter(
    uow: UnitOfWorkFactory, station_id: str, transaction_id: str, minutes: float, wh: int
) -> None:
    report = MeterReport(
        evse_number=1,
        received_at=_at(minutes),
        meter_values=(MeterValue(_at(minutes), (_energy(wh),)),),
        transaction_id=transaction_id,
    )
    await _in_uow(uow, lambda u: record_meter_values(u, station_id, report))


async def _set_up(uow: UnitOfWorkFactory, side: str) -> dict[str, str]:
    """``side``'s stations and sessions, ``BEFORE`` written; return station -> transaction id."""
    transactions: dict[str, str] = {}
    for name in ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9"):
        await _station(uow, f"{side}-{name}", priced=name in PRICED)
    for name, uid in CHARGING.items():
        transactions[name] = await _start(uow, f"{side}-{name}", uid)
    await _meter(uow, f"{side}-S1", transactions["S1"], 20, 5000)
    await _meter(uow, f"{side}-S4", transactions["S4"], 30, 2000)
    transactions["S8"] = await _start(uow, f"{side}-S8", TAG)
    await _meter(uow, f"{side}-S8", transactions["S8"], 20, 4000)
    async with uow() as unit:
        session_id = await unit.session.scalar(
            select(Session.id).where(Session.station_id == f"{side}-S8")
        )
    assert session_id is not None
    await _in_uow(uow, lambda u: close_session(u, session_id, now=_at(40), by_rule=False))
    await _stop_alone(uow, side, [BEFORE], transactions)
    return transactions


async def _decided(
    uow: UnitOfWorkFactory, side: str, stop: _Stop, transactions: dict[str, str]
) -> StationStop:
    station_id = f"{side}-{stop.station}"
    async with uow() as unit:
        authorization = await decide(unit, Authorizer(OPERATOR), station_id, stop.uid)
    return StationStop(station_id, stop.request(transactions), authorization)


async def _stop_alone(
    uow: UnitOfWorkFactory, side: str, script: tuple[_Stop, ...] | list[_Stop], tx: dict[str, str]
) -> list[StopOutcome]:
    outcomes = []
    for stop in script:
        decided = await _decided(uow, side, stop, tx)
        outcome = await _in_uow(
            uow,
            lambda u, d=decided: stop_transaction(
                u, d.station_id, d.request, authorization=d.authorization
            ),
        )
        outcomes.append(outcome)
    return outcomes


async def _stop_grouped(
    uow: UnitOfWorkFactory, decided: list[StationStop]
) -> tuple[list[StopOutcome], GroupCommitter]:
    committer = GroupCommitter(uow)
    await committer.start()
    try:
        outcomes = await asyncio.gather(
            *(committer.run_grouped(stop_transactions, stop) for stop in decided)
        )
    finally:
        await committer.stop()
    return list(outcomes), committer


def _named(text: str, names: dict[str, str], side: str) -> str:
    """``text`` with ``side``'s ids replaced by names the other side shares (transaction
    numbers as ``names["transaction <n>"]``, whole numbers only).
    """
    text = re.sub(r"transaction \d+", lambda found: names.get(found[0], found[0]), text)
    names = {real: name for real, name in names.items() if not real.startswith("transaction ")}
    for real, name in names.items():
        text = text.replace(real, name)
    return text.replace(f"{side}-", "").replace(f"*E{side}", "*E")


async def _what_was_written(uow: UnitOfWorkFactory, side: str) -> dict[str, Any]:
    """Every row of ``side``'s stations, with side-dependent ids replaced by names."""
    prefix = f"{side}-"
    async with uow() as unit:
        db = unit.session
        sessions = list(
            await db.scalars(select(Session).where(Session.station_id.like(f"{prefix}%")))
        )
        names = {s.id: f"session of {s.station_id.removeprefix(prefix)}" for s in sessions}
        numbers = {
            f"transaction {s.transaction_id}": f"transaction of {names[s.id]}" for s in sessions
        }
        cdr_rows = list(await db.scalars(select(Cdr).where(Cdr.session_id.in_(names))))
        names |= numbers
        names |= {
            cdr.id: f"CDR {names[cdr.session_id or '']}{cdr.issue_key[-2:]}"
            for cdr in cdr_rows
            if not cdr.credit
        }
        session_rows = sorted(
            (
                names[s.id],
                s.status,
                s.start_date_time,
                s.end_date_time,
                s.meter_start_wh,
                s.meter_stop_wh,
                s.stop_reason,
                s.energy_wh,
                s.last_meter_wh,
                s.last_meter_at,
                tuple(s.flags),
                s.total_cost_excl_vat,
                s.total_cost_incl_vat,
                _named(str(s.cdr_id), names, side),
                s.heard_at,
                s.last_updated,
            )
            for s in sessions
        )
        cdr_table = sorted(
            (
                _named(cdr.id, names, side),
                _named(cdr.issue_key, names, side),
                cdr.credit,
                _named(str(cdr.credit_reference_id), names, side),
                cdr.total_cost_excl_vat,
                cdr.total_cost_incl_vat,
                _named(json.dumps(cdr.document, sort_keys=True), names, side),
                tuple(_named(line, names, side) for line in cdr.explanation),
                cdr.issued_at,
                cdr.last_updated,
            )
            for cdr in cdr_rows
        )
        periods = sorted(
            (names[row.session_id], row.start_date_time, repr(row.dimensions), row.tariff_id)
            for row in await db.scalars(
                select(ChargingPeriod).where(ChargingPeriod.session_id.in_(names))
            )
        )
        billed = sorted(
            (names[row.session_id], row.at, row.energy_wh, row.current_a)
            for row in await db.scalars(
                select(BilledReading).where(BilledReading.session_id.in_(names))
            )
        )
        samples = sorted(
            (
                row.station_id.removeprefix(prefix),
                names.get(row.session_id or ""),
                row.ocpp_evse_id,
                row.sampled_at,
                row.station_time,
                row.received_at,
                row.measurand,
                row.context,
                row.value,
                repr(row.signed_data),
                tuple(row.flags) if row.flags is not None else None,
            )
            for row in await db.scalars(
                select(MeterSample).where(MeterSample.station_id.like(f"{prefix}%"))
            )
        )
        log = sorted(
            (row.station_id.removeprefix(prefix), row.kind, _named(row.summary, names, side))
            for row in await db.scalars(
                select(StationEvent).where(StationEvent.station_id.like(f"{prefix}%"))
            )
        )
        outbox = sorted(
            (entry.topic, _named(entry.aggregate_id, names, side))
            for entry in await db.scalars(
                select(OutboxEntry).where(
                    OutboxEntry.aggregate_id.in_([*names, *(c.id for c in cdr_rows)])
                )
            )
        )
    return {
        "sessions": session_rows,
        "cdrs": cdr_table,
        "periods": periods,
        "billed": billed,
        "samples": samples,
        "log": log,
        "outbox": outbox,
        "names": names,
    }


def _answers(outcomes: list[StopOutcome], written: dict[str, Any]) -> list[tuple[Any, ...]]:
    names = written["names"]
    return [
        (
            outcome.known,
            outcome.replayed,
            names.get(outcome.session_id or ""),
            outcome.flags,
            outcome.authorization.status if outcome.authorization is not None else None,
        )
        for outcome in outcomes
    ]


@pytest.mark.usefixtures("database_url")
async def test_a_grouped_batch_of_stops_writes_what_each_stop_alone_writes(
    uow: UnitOfWorkFactory,
) -> None:
    await import_tariffs(uow(), [TARIFF])
    await create_token(uow(), {"uid": TAG}, country_code="NL", party_id="CPM")
    on_a = await _set_up(uow, "A")
    on_b = await _set_up(uow, "B")

    alone = await _stop_alone(uow, "A", SCRIPT, on_a)
    decided = [await _decided(uow, "B", stop, on_b) for stop in SCRIPT]
    grouped, committer = await _stop_grouped(uow, decided)

    # All in one transaction: nothing failed and was retried alone.
    assert committer.batches == 1
    assert committer.items == len(SCRIPT)
    a = await _what_was_written(uow, "A")
    b = await _what_was_written(uow, "B")
    # The script reaches what it is meant to (else the comparison proves little).
    answers = _answers(alone, a)
    assert [(known, replayed) for known, replayed, *_ in answers] == [
        (True, False), (True, False), (True, False), (True, False), (True, False),
        (True, True), (True, True), (True, False), (False, False), (True, False),
    ]  # fmt: skip
    statuses = {row[0]: row[1] for row in a["sessions"]}
    assert statuses["session of S7"] == "INVALID"
    assert {status for name, status in statuses.items() if name != "session of S7"} == {"COMPLETED"}
    flags = {row[0]: row[10] for row in a["sessions"]}
    assert "station_clock" in flags["session of S2"]
    assert "meter_backwards" in flags["session of S3"]
    assert "late_stop" in flags["session of S8"]
    documents = {row[0]: json.loads(row[6]) for row in a["cdrs"] if not row[2]}
    issued = {document["session_id"] for document in documents.values()}
    assert issued == {f"session of S{k}" for k in (1, 2, 3, 4, 5, 6, 8)}
    signed = [d for d in documents.values() if d["session_id"] == "session of S1"]
    assert signed[0]["signed_data"]["encoding_method"] == "OCMF"
    assert [row[2] for row in a["cdrs"]].count(True) == 1  # S8's first CDR credited
    assert any(kind == "unknown_transaction" for _, kind, _ in a["log"])
    for table in ("sessions", "cdrs", "periods", "billed", "samples", "log", "outbox"):
        assert b[table] == a[table], table
    assert _answers(grouped, b) == answers


async def _many_charging(uow: UnitOfWorkFactory, count: int) -> dict[str, str]:
    await import_tariffs(uow(), [TARIFF])
    transactions = {}
    for k in range(count):
        name = f"N{k:02d}"
        await _station(uow, name, priced=True)
        transactions[name] = await _start(uow, name, "")
        await _meter(uow, name, transactions[name], 10, 2000)
    return transactions


def _plain_stop(name: str, transactions: dict[str, str], minutes: float = 30) -> StationStop:
    return StationStop(name, _Stop(name, minutes, 3000).request(transactions), None)


@pytest.mark.usefixtures("database_url")
async def test_a_batch_of_stops_costs_the_same_statements_however_many_it_holds(
    uow: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    transactions = await _many_charging(uow, 20)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async def batch(names: list[str]) -> int:
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            outcomes, committer = await _stop_grouped(
                uow, [_plain_stop(name, transactions) for name in names]
            )
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        assert committer.batches == 1
        assert all(outcome.known and not outcome.replayed for outcome in outcomes)
        return len(statements)

    few = await batch([f"N{k:02d}" for k in range(4)])
    many = await batch([f"N{k:02d}" for k in range(4, 20)])
    # Reads of the sessions, billing points, signed values and credits; inserts of samples,
    # billing points, periods, CDRs and events; the periods' delete; the sessions' update;
    # the commit: none of them one per stop.
    assert many == few
    assert many <= 12
    async with uow() as unit:
        issued = list(await unit.session.scalars(select(Cdr.session_id)))
        periods = list(await unit.session.scalars(select(ChargingPeriod.session_id)))
    assert len(set(issued)) == len(issued) == 20
    assert set(periods) == set(issued)


async def _stop_in_one_batch(
    uow: UnitOfWorkFactory, transactions: dict[str, str]
) -> dict[str, Session]:
    """Stop every session of ``transactions`` in one batch; the sessions by station."""
    stops = [_plain_stop(name, transactions) for name in sorted(transactions)]
    outcomes, committer = await _stop_grouped(uow, stops)
    # One transaction: the batch did not fail and get retried stop by stop.
    assert committer.batches == 1
    assert all(outcome.known for outcome in outcomes)
    async with uow() as unit:
        return {s.station_id: s for s in await unit.session.scalars(select(Session))}


@pytest.mark.usefixtures("database_url")
async def test_a_session_whose_pricing_fails_is_flagged_and_the_others_are_billed(
    uow: UnitOfWorkFactory,
) -> None:
    transactions = await _many_charging(uow, 3)
    async with uow() as unit:
        # A sealed time zone the zone database does not know: pricing N01 fails.
        await unit.session.execute(
            update(Session).where(Session.station_id == "N01").values(time_zone="Nowhere/Atlantis")
        )
        await unit.commit()

    found = await _stop_in_one_batch(uow, transactions)

    assert {name: s.status for name, s in found.items()} == dict.fromkeys(found, "COMPLETED")
    assert "pricing_failed" in found["N01"].flags
    assert found["N01"].cdr_id is None
    assert [found[name].cdr_id is not None for name in ("N00", "N02")] == [True, True]


@pytest.mark.usefixtures("database_url")
async def test_a_cdr_that_cannot_be_built_is_left_to_the_sweep_and_the_others_are_issued(
    uow: UnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions = await _many_charging(uow, 3)
    async with uow() as unit:
        broken = await unit.session.scalar(select(Session.id).where(Session.station_id == "N01"))
    built = cdrs.cdr_document

    def cdr_document(session: Session, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # A fault injected into one session's document: the batch must not lose the others.
        if session.id == broken:
            raise ValueError("cannot build this CDR")
        return built(session, *args, **kwargs)

    monkeypatch.setattr(cdrs, "cdr_document", cdr_document)
    found = await _stop_in_one_batch(uow, transactions)

    async with uow() as unit:
        issued = sorted(await unit.session.scalars(select(Cdr.session_id)))
    assert "pricing_failed" in found["N01"].flags
    assert found["N01"].cdr_id is None
    assert issued == sorted([found["N00"].id, found["N02"].id])
    assert "pricing_failed" not in found["N00"].flags
