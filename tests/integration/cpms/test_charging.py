"""Charging sessions on a real database, without OCPP: the protocol-neutral rules.

Covers ``cpms.charging``: system-wide integer transaction ids, idempotent starts and stops,
session status from the authorization, meter plausibility (exact billing of believable steps,
backwards and jumping registers flagged and not billed, per-phase sums, the total register
preferred, signed and late readings not billed), readings for unknown transactions kept and
logged, station clocks that run backwards, the session events in the outbox, and the session
currency taken from the EVSE's tariff.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from charging_support import start_decided, stop_decided
from sqlalchemy import func, select

from cpms import stations
from cpms.admission import AdmissionPolicy, Verdict
from cpms.authorization import Authorization, AuthorizationStatus, Authorizer, Operator
from cpms.charging import (
    ENERGY_REGISTER,
    MeterReport,
    MeterValue,
    Sample,
    StartOutcome,
    StartRequest,
    StopOutcome,
    StopRequest,
    record_meter_reports,
)
from cpms.group_commit import GroupCommitter
from cpms.locations import assign_tariffs
from cpms.model import (
    MeterSample,
    OutboxEntry,
    Session,
    StationEvent,
    Token,
    TransactionNumber,
)
from cpms.station_lifecycle import StatusReport, record_status
from cpms.tariffs import import_tariffs
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

from support import DEFAULT_LOCATION as DEFAULT

T = TypeVar("T")

OPERATOR = Operator("NL", "CPM")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TAG = "TAG-0001"


# Set-up


async def _station(uow: UnitOfWorkFactory, station_id: str = "CP1") -> None:
    admission = await stations.admit_station(
        uow(), station_id, None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
    )
    assert admission.verdict is Verdict.ACCEPTED


async def _token(uow: UnitOfWorkFactory, uid: str = TAG, **fields: Any) -> Token:
    return await create_token(uow(), {"uid": uid, **fields}, country_code="NL", party_id="CPM")


async def _in_uow(uow: UnitOfWorkFactory, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    async with uow() as unit:
        result = await work(unit)
        await unit.commit()
    return result


def _start_request(
    evse: int = 1, *, uid: str = TAG, meter: str = "1000", at: datetime = T0
) -> StartRequest:
    return StartRequest(
        evse_number=evse, uid=uid, meter_start_wh=Decimal(meter), received_at=at, station_time=at
    )


async def _start(
    uow: UnitOfWorkFactory,
    request: StartRequest,
    *,
    station_id: str = "CP1",
    authorizer: Authorizer | None = None,
) -> StartOutcome:
    authorizer = authorizer or Authorizer(OPERATOR)
    return await _in_uow(uow, lambda u: start_decided(u, station_id, request, authorizer))


async def _stop(
    uow: UnitOfWorkFactory, request: StopRequest, *, station_id: str = "CP1"
) -> StopOutcome:
    authorizer = Authorizer(OPERATOR)
    return await _in_uow(uow, lambda u: stop_decided(u, station_id, request, authorizer))


def _energy(value: str, *, phase: str | None = None, **extra: Any) -> Sample:
    return Sample(ENERGY_REGISTER, Decimal(value), Decimal(value), unit="Wh", phase=phase, **extra)


async def _meter(
    uow: UnitOfWorkFactory,
    transaction_id: str | None,
    at: datetime,
    *samples: Sample,
    station_id: str = "CP1",
    evse: int = 1,
) -> set[str]:
    report = MeterReport(
        evse_number=evse,
        received_at=at,
        meter_values=(MeterValue(at, samples),),
        transaction_id=transaction_id,
    )
    # The gateway's way: the grouped write, which hands the rare cases to record_meter_values.
    (flags,) = await _in_uow(uow, lambda u: record_meter_reports(u, [(station_id, report)]))
    return flags


async def _session(uow: UnitOfWorkFactory, session_id: str) -> Session:
    async with uow() as unit:
        return await unit.get(Session, session_id)


async def _count(uow: UnitOfWorkFactory, model: type, *where: Any) -> int:
    async with uow() as unit:
        query = select(func.count()).select_from(model)
        for condition in where:
            query = query.where(condition)
        return int(await unit.session.scalar(query) or 0)


async def _started(uow: UnitOfWorkFactory, meter: str = "1000") -> StartOutcome:
    await _station(uow)
    await _token(uow)
    return await _start(uow, _start_request(meter=meter))


# Transaction ids and replays


async def test_transaction_ids_are_integers_unique_across_stations_and_increasing(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow, "CP1")
    await _station(uow, "CP2")
    await _token(uow)
    ids: list[int] = []
    for minute in range(3):
        for station_id in ("CP1", "CP2"):
            at = T0 + timedelta(minutes=minute)
            outcome = await _start(uow, _start_request(at=at), station_id=station_id)
            assert not outcome.replayed
            ids.append(int(outcome.transaction_id))
    assert ids == sorted(ids)
    assert len(set(ids)) == 6
    assert await _count(uow, TransactionNumber) == 6
    async with uow() as unit:
        rows = (
            await unit.session.execute(select(Session.transaction_id, Session.station_id))
        ).all()
    assert sorted(int(tid) for tid, _ in rows) == ids
    assert sorted(station for _, station in rows) == ["CP1"] * 3 + ["CP2"] * 3


async def test_concurrent_starts_through_the_group_committer_get_distinct_ids(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow, "CP1")
    await _station(uow, "CP2")
    await _token(uow)
    authorizer = Authorizer(OPERATOR)
    committer = GroupCommitter(uow)
    await committer.start()
    try:

        def work(station_id: str, evse: int) -> Callable[[UnitOfWork], Awaitable[StartOutcome]]:
            request = _start_request(evse, at=T0 + timedelta(seconds=evse))
            return lambda u: start_decided(u, station_id, request, authorizer)

        outcomes = await asyncio.gather(
            *(
                committer.run(work(station, evse))
                for station in ("CP1", "CP2")
                for evse in (1, 2, 3)
            )
        )
    finally:
        await committer.stop()
    ids = [int(outcome.transaction_id) for outcome in outcomes]
    assert len(set(ids)) == 6
    assert await _count(uow, Session) == 6


async def test_a_replayed_start_returns_the_same_transaction_and_opens_no_second_session(
    uow: UnitOfWorkFactory,
) -> None:
    first = await _started(uow)
    # The station resends the same start after a reconnect, a minute later.
    again = dataclasses.replace(_start_request(), received_at=T0 + timedelta(minutes=1))
    replay = await _start(uow, again)
    assert replay.replayed is True
    assert (replay.transaction_id, replay.session_id) == (first.transaction_id, first.session_id)
    assert first.replayed is False
    assert await _count(uow, Session) == 1
    assert await _count(uow, TransactionNumber) == 1
    assert await _count(uow, OutboxEntry, OutboxEntry.topic == "session.started") == 1
    # A start that differs (another meter start) is a new transaction.
    other = await _start(uow, _start_request(meter="1001"))
    assert other.replayed is False
    assert int(other.transaction_id) > int(first.transaction_id)


async def test_a_start_replayed_after_its_stop_still_finds_the_ended_session(
    uow: UnitOfWorkFactory,
) -> None:
    first = await _started(uow)
    await _stop(uow, StopRequest(first.transaction_id, T0 + timedelta(minutes=5)))
    replay = await _start(uow, _start_request())
    assert replay.replayed is True
    assert replay.transaction_id == first.transaction_id
    assert await _count(uow, Session) == 1


# Authorization at start


async def test_an_allowed_token_opens_an_active_session_with_its_cdr_token(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow)
    assert outcome.authorization.status is AuthorizationStatus.ALLOWED
    session = await _session(uow, outcome.session_id)
    assert session.status == "ACTIVE"
    assert session.transaction_id == outcome.transaction_id
    assert session.station_id == "CP1"
    assert session.location_id == DEFAULT.id
    assert session.evse_uid == "CP1-1"
    assert session.connector_id == "1"
    assert session.cdr_token["uid"] == TAG
    assert session.cdr_token["type"] == "RFID"
    assert session.auth_method == "WHITELIST"
    assert session.start_date_time == T0
    assert session.meter_start_wh == Decimal(1000)
    assert session.energy_wh == Decimal(0)
    assert session.flags == []
    assert (session.country_code, session.party_id) == ("NL", "CPM")


async def test_an_unknown_token_opens_an_invalid_session(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    outcome = await _start(uow, _start_request(uid="NOBODY"))
    assert outcome.authorization.status is AuthorizationStatus.UNKNOWN
    session = await _session(uow, outcome.session_id)
    assert session.status == "INVALID"
    # Ending it keeps it INVALID: it never becomes a COMPLETED (billable) session.
    await _stop(uow, StopRequest(outcome.transaction_id, T0 + timedelta(minutes=1)))
    session = await _session(uow, outcome.session_id)
    assert session.status == "INVALID"
    assert session.end_date_time == T0 + timedelta(minutes=1)


async def test_a_blocked_token_opens_an_invalid_session(uow: UnitOfWorkFactory) -> None:
    await _station(uow)
    await _token(uow, valid=False)
    outcome = await _start(uow, _start_request())
    assert outcome.authorization.status is AuthorizationStatus.BLOCKED
    assert (await _session(uow, outcome.session_id)).status == "INVALID"


class _Issuer:
    """An eMSP answering real-time authorization: allows everything with a reference."""

    async def issuers(self, uow: UnitOfWork, token: Token | None) -> list[object]:
        return [self]

    async def ask(
        self, issuers: Sequence[object], uid: str, token: Token | None, *, location_id: str | None
    ) -> Authorization | None:
        cdr_token = {"country_code": "DE", "party_id": "MSP", "uid": uid, "type": "APP_USER"}
        return Authorization(
            AuthorizationStatus.ALLOWED,
            uid,
            {**cdr_token, "contract_id": "DE-MSP-C1"},
            authorization_reference="REF-42",
            source="remote",
        )


async def test_a_start_the_issuer_authorized_in_real_time_keeps_its_reference(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    authorizer = Authorizer(OPERATOR, _Issuer())
    outcome = await _start(uow, _start_request(uid="APP-1"), authorizer=authorizer)
    session = await _session(uow, outcome.session_id)
    assert session.status == "ACTIVE"
    assert session.auth_method == "AUTH_REQUEST"
    assert session.authorization_reference == "REF-42"
    assert session.cdr_token["party_id"] == "MSP"


# Meter plausibility


async def test_believable_steps_are_billed_exactly(uow: UnitOfWorkFactory) -> None:
    outcome = await _started(uow, meter="1000.5")
    tid = outcome.transaction_id
    flags = await _meter(uow, tid, T0 + timedelta(minutes=5), _energy("1234.6"))
    assert flags == set()
    await _meter(uow, tid, T0 + timedelta(minutes=10), _energy("1234.7"))
    await _meter(uow, tid, T0 + timedelta(minutes=15), _energy("3000.05"))
    session = await _session(uow, outcome.session_id)
    assert session.energy_wh == Decimal("1999.55")
    assert isinstance(session.energy_wh, Decimal)
    assert session.last_meter_wh == Decimal("3000.05")
    assert session.last_meter_at == T0 + timedelta(minutes=15)
    assert session.flags == []
    assert session.last_updated == T0 + timedelta(minutes=15)


async def test_a_register_going_backwards_is_flagged_and_not_billed(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow)
    tid = outcome.transaction_id
    await _meter(uow, tid, T0 + timedelta(minutes=5), _energy("1500"))
    flags = await _meter(uow, tid, T0 + timedelta(minutes=10), _energy("900"))
    assert flags == {"meter_backwards"}
    session = await _session(uow, outcome.session_id)
    assert session.energy_wh == Decimal(500)
    assert "meter_backwards" in session.flags
    async with uow() as unit:
        sample = await unit.session.scalar(
            select(MeterSample).where(MeterSample.value_si == Decimal(900))
        )
    assert sample is not None
    assert sample.flags == ["meter_backwards"]
    assert sample.session_id == outcome.session_id
    # Counting resumes from the reading that went backwards.
    await _meter(uow, tid, T0 + timedelta(minutes=15), _energy("1200"))
    assert (await _session(uow, outcome.session_id)).energy_wh == Decimal(800)


async def test_a_jump_is_flagged_not_billed_and_later_steps_count_from_the_new_reading(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow)
    tid = outcome.transaction_id
    # 200 kWh in five minutes: 2.4 MW, far beyond the assumed 22 kW connector.
    flags = await _meter(uow, tid, T0 + timedelta(minutes=5), _energy("201000"))
    assert flags == {"meter_jump"}
    session = await _session(uow, outcome.session_id)
    assert session.energy_wh == Decimal(0)
    assert session.flags == ["meter_jump"]
    assert session.last_meter_wh == Decimal(201000)
    assert await _meter(uow, tid, T0 + timedelta(minutes=10), _energy("202000")) == set()
    session = await _session(uow, outcome.session_id)
    assert session.energy_wh == Decimal(1000)
    assert session.flags == ["meter_jump"]


async def test_an_offline_start_at_zero_never_bills_the_odometer(uow: UnitOfWorkFactory) -> None:
    # FIELD-NOTES 10: started offline with meterStart 0; the register really reads 910 kWh.
    outcome = await _started(uow, meter="0")
    tid = outcome.transaction_id
    assert await _meter(uow, tid, T0 + timedelta(minutes=5), _energy("910000")) == {"meter_jump"}
    await _meter(uow, tid, T0 + timedelta(minutes=10), _energy("910050"))
    end = T0 + timedelta(minutes=15)
    stopped = await _stop(
        uow, StopRequest(tid, end, meter_stop_wh=Decimal(910083), station_time=end)
    )
    assert stopped.flags == ()
    session = await _session(uow, outcome.session_id)
    assert session.energy_wh == Decimal(83)
    assert session.flags == ["meter_jump"]
    assert session.status == "COMPLETED"


async def test_the_sum_of_the_phase_registers_is_billed_when_there_is_no_total(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow, meter="0")
    tid = outcome.transaction_id
    flags = await _meter(
        uow,
        tid,
        T0 + timedelta(minutes=10),
        _energy("100.25", phase="L1"),
        _energy("200", phase="L2"),
        _energy("300", phase="L3"),
        Sample("Power.Active.Import", Decimal(11), Decimal(11000), unit="kW"),
    )
    assert flags == set()
    session = await _session(uow, outcome.session_id)
    assert session.energy_wh == Decimal("600.25")
    assert await _count(uow, MeterSample, MeterSample.session_id == outcome.session_id) == 5


async def test_the_total_register_is_preferred_to_the_phase_registers(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow, meter="0")
    tid = outcome.transaction_id
    # The phases add up to 30 kWh (a jump); the total says 1 kWh, which is what is billed.
    flags = await _meter(
        uow,
        tid,
        T0 + timedelta(minutes=10),
        _energy("10000", phase="L1"),
        _energy("1000"),
        _energy("10000", phase="L2"),
        _energy("10000", phase="L3"),
    )
    assert flags == set()
    session = await _session(uow, outcome.session_id)
    assert session.energy_wh == Decimal(1000)
    assert session.flags == []


async def test_an_inlet_register_is_not_billed(uow: UnitOfWorkFactory) -> None:
    outcome = await _started(uow, meter="0")
    await _meter(
        uow,
        outcome.transaction_id,
        T0 + timedelta(minutes=10),
        _energy("5000", location="Inlet"),
        _energy("400", location="Outlet"),
    )
    assert (await _session(uow, outcome.session_id)).energy_wh == Decimal(400)


def _signed(value: str = "0") -> Sample:
    # As the gateway reads a SignedData sampledValue: no number, the raw blob kept.
    return Sample(
        ENERGY_REGISTER,
        Decimal(value),
        Decimal(value),
        unit="Wh",
        context="Sample.Periodic",
        signed_data={"format": "SignedData", "value": "OCMF|{...}|{...}"},
    )


async def test_signed_samples_are_kept_verbatim(uow: UnitOfWorkFactory) -> None:
    outcome = await _started(uow, meter="10000")
    await _meter(
        uow, outcome.transaction_id, T0 + timedelta(minutes=5), _energy("10500"), _signed()
    )
    async with uow() as unit:
        samples = list(await unit.session.scalars(select(MeterSample)))
    kept = [sample for sample in samples if sample.signed_data is not None]
    assert len(kept) == 1
    assert kept[0].signed_data == {"format": "SignedData", "value": "OCMF|{...}|{...}"}
    assert kept[0].session_id == outcome.session_id


async def test_signed_samples_are_never_billed(uow: UnitOfWorkFactory) -> None:
    outcome = await _started(uow, meter="10000")
    tid = outcome.transaction_id
    signed_only = await _meter(uow, tid, T0 + timedelta(minutes=5), _signed())
    beside = await _meter(uow, tid, T0 + timedelta(minutes=10), _signed(), _energy("10500"))
    later = await _meter(uow, tid, T0 + timedelta(minutes=15), _energy("11000"))
    session = await _session(uow, outcome.session_id)
    assert (signed_only, beside, later) == (set(), set(), set())
    assert session.flags == []
    assert session.energy_wh == Decimal(1000)


async def test_an_older_reading_arriving_late_is_kept_but_moves_nothing(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow)
    tid = outcome.transaction_id
    await _meter(uow, tid, T0 + timedelta(minutes=20), _energy("3000"))
    late = T0 + timedelta(minutes=10)
    flags = await _meter(uow, tid, late, _energy("2500"))
    assert flags == set()
    session = await _session(uow, outcome.session_id)
    assert session.energy_wh == Decimal(2000)
    assert session.last_meter_wh == Decimal(3000)
    assert session.last_meter_at == T0 + timedelta(minutes=20)
    assert await _count(uow, MeterSample, MeterSample.sampled_at == late) == 1
    await _meter(uow, tid, T0 + timedelta(minutes=30), _energy("3500"))
    assert (await _session(uow, outcome.session_id)).energy_wh == Decimal(2500)


async def test_meter_values_for_an_unknown_transaction_are_kept_and_logged(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow)
    flags = await _meter(uow, "987654", T0 + timedelta(minutes=5), _energy("1500"))
    assert flags == set()
    async with uow() as unit:
        samples = list(await unit.session.scalars(select(MeterSample)))
        events = list(
            await unit.session.scalars(
                select(StationEvent).where(StationEvent.kind == "unknown_transaction")
            )
        )
    orphan = [s for s in samples if s.value_si == Decimal(1500)]
    assert len(orphan) == 1
    assert orphan[0].session_id is None
    assert orphan[0].station_id == "CP1"
    assert len(events) == 1
    assert events[0].station_id == "CP1"
    assert events[0].details == {"transaction_id": "987654"}
    # The running session was not touched.
    session = await _session(uow, outcome.session_id)
    assert session.energy_wh == Decimal(0)
    assert session.last_updated == T0


async def test_another_stations_transaction_id_is_an_unknown_transaction(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow)
    await _station(uow, "CP2")
    await _meter(
        uow, outcome.transaction_id, T0 + timedelta(minutes=5), _energy("1500"), station_id="CP2"
    )
    assert (await _session(uow, outcome.session_id)).energy_wh == Decimal(0)
    assert (
        await _count(
            uow,
            StationEvent,
            StationEvent.station_id == "CP2",
            StationEvent.kind == "unknown_transaction",
        )
        == 1
    )


# Stop


async def test_a_stop_closes_the_session_once(uow: UnitOfWorkFactory) -> None:
    outcome = await _started(uow)
    tid = outcome.transaction_id
    await _meter(uow, tid, T0 + timedelta(minutes=10), _energy("3000"))
    end = T0 + timedelta(minutes=20)
    stopped = await _stop(
        uow, StopRequest(tid, end, meter_stop_wh=Decimal(4500), station_time=end, uid=TAG)
    )
    assert stopped.known is True
    assert stopped.replayed is False
    assert stopped.session_id == outcome.session_id
    assert stopped.authorization is not None
    assert stopped.authorization.status is AuthorizationStatus.ALLOWED
    session = await _session(uow, outcome.session_id)
    assert session.status == "COMPLETED"
    assert session.end_date_time == end
    assert session.meter_stop_wh == Decimal(4500)
    assert session.energy_wh == Decimal(3500)
    assert session.stop_reason == "Local"
    assert session.last_updated == end

    # The station replays the stop (with other numbers, later): nothing changes.
    replay = await _stop(
        uow,
        StopRequest(
            tid,
            end + timedelta(minutes=30),
            meter_stop_wh=Decimal(9000),
            station_time=end + timedelta(minutes=29),
            reason="PowerLoss",
        ),
    )
    assert replay.known is True
    assert replay.replayed is True
    assert replay.session_id == outcome.session_id
    again = await _session(uow, outcome.session_id)
    assert again.energy_wh == Decimal(3500)
    assert again.end_date_time == end
    assert again.last_updated == end
    assert again.meter_stop_wh == Decimal(4500)
    assert again.stop_reason == "Local"
    assert again.status == "COMPLETED"
    assert await _count(uow, OutboxEntry, OutboxEntry.topic == "session.ended") == 1
    assert await _count(uow, MeterSample, MeterSample.value_si == Decimal(9000)) == 0


async def test_a_stop_keeps_the_reason_the_station_gave(uow: UnitOfWorkFactory) -> None:
    outcome = await _started(uow)
    await _stop(
        uow, StopRequest(outcome.transaction_id, T0 + timedelta(minutes=1), reason="EVDisconnected")
    )
    assert (await _session(uow, outcome.session_id)).stop_reason == "EVDisconnected"


async def test_meter_values_after_the_stop_are_kept_with_their_session_but_not_billed(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow)
    end = T0 + timedelta(minutes=10)
    await _stop(uow, StopRequest(outcome.transaction_id, end, meter_stop_wh=Decimal(2000)))
    await _meter(uow, outcome.transaction_id, end + timedelta(minutes=5), _energy("2500"))
    session = await _session(uow, outcome.session_id)
    assert session.energy_wh == Decimal(1000)
    assert session.last_updated == end
    late = (MeterSample.value_si == Decimal(2500)) & (MeterSample.session_id == session.id)
    assert await _count(uow, MeterSample, late) == 1, "kept, and still linked to its session"


async def test_a_stop_for_an_unknown_transaction_is_logged_and_changes_nothing(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow)
    at = T0 + timedelta(minutes=3)
    stopped = await _stop(
        uow,
        StopRequest(
            "-1",
            at,
            meter_stop_wh=Decimal(7000),
            uid=TAG,
            meter_values=(MeterValue(at, (_energy("6999"),)),),
        ),
    )
    assert stopped.known is False
    assert stopped.replayed is False
    assert stopped.session_id is None
    assert stopped.authorization is not None
    assert stopped.authorization.status is AuthorizationStatus.ALLOWED
    async with uow() as unit:
        event = await unit.session.scalar(
            select(StationEvent).where(StationEvent.kind == "unknown_transaction")
        )
        orphan = await unit.session.scalar(
            select(MeterSample).where(MeterSample.value_si == Decimal(6999))
        )
    assert event is not None
    assert event.details is not None
    assert event.details["transaction_id"] == "-1"
    assert event.details["meter_stop_wh"] == "7000"
    assert event.details["id_tag"] == TAG
    assert orphan is not None
    assert orphan.session_id is None
    session = await _session(uow, outcome.session_id)
    assert session.status == "ACTIVE"
    assert session.end_date_time is None
    assert await _count(uow, OutboxEntry, OutboxEntry.topic == "session.ended") == 0


async def test_a_stop_timed_before_the_start_never_gives_a_negative_duration(
    uow: UnitOfWorkFactory,
) -> None:
    outcome = await _started(uow)
    # The station's clock was corrected backwards mid-session.
    stopped = await _stop(
        uow,
        StopRequest(
            outcome.transaction_id,
            T0 + timedelta(minutes=30),
            meter_stop_wh=Decimal(2000),
            station_time=T0 - timedelta(hours=2),
        ),
    )
    assert stopped.known is True
    session = await _session(uow, outcome.session_id)
    assert session.end_date_time is not None
    assert session.end_date_time >= session.start_date_time
    assert session.end_date_time <= T0 + timedelta(minutes=30)
    assert "station_clock" in session.flags
    assert session.status == "COMPLETED"


async def test_an_unbelievable_start_clock_is_replaced_by_the_receive_time_and_flagged(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    await _token(uow)
    request = dataclasses.replace(_start_request(), station_time=datetime(1970, 1, 1, tzinfo=UTC))
    outcome = await _start(uow, request)
    session = await _session(uow, outcome.session_id)
    assert session.start_date_time == T0
    assert session.flags == ["station_clock"]
    assert await _count(uow, StationEvent, StationEvent.kind == "clock") == 1
    # The replay of that start is still recognised.
    assert (await _start(uow, request)).replayed is True


# Events and currency


async def test_session_events_are_written_to_the_outbox(uow: UnitOfWorkFactory) -> None:
    outcome = await _started(uow)
    await _meter(uow, outcome.transaction_id, T0 + timedelta(minutes=5), _energy("1500"))
    await _stop(uow, StopRequest(outcome.transaction_id, T0 + timedelta(minutes=6)))
    async with uow() as unit:
        entries = list(
            await unit.session.scalars(
                select(OutboxEntry)
                .where(OutboxEntry.aggregate_type == "session")
                .order_by(OutboxEntry.id)
            )
        )
    assert [entry.topic for entry in entries] == [
        "session.started",
        "session.updated",
        "session.ended",
    ]
    assert {entry.aggregate_id for entry in entries} == {outcome.session_id}
    assert [entry.payload["status"] for entry in entries] == ["ACTIVE", "ACTIVE", "COMPLETED"]


def _tariff(tariff_id: str, currency: str) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CPM",
        "id": tariff_id,
        "currency": currency,
        "elements": [
            {"price_components": [{"type": "ENERGY", "price": 0.25, "vat": 10.0, "step_size": 1}]}
        ],
        "last_updated": "2025-01-01T00:00:00Z",
    }


async def test_the_currency_is_the_evse_tariffs_and_eur_without_one(
    uow: UnitOfWorkFactory,
) -> None:
    await _station(uow)
    await _token(uow)
    # EVSE 1 appears when the station reports it; the operator prices it in Swiss francs.
    report = StatusReport(evse_number=1, status="AVAILABLE", received_at=T0)
    await _in_uow(uow, lambda u: record_status(u, "CP1", report))
    await import_tariffs(uow(), [_tariff("CHF-1", "CHF")])
    await assign_tariffs(uow(), DEFAULT.id, "CP1-1", "1", ["CHF-1"])
    priced = await _start(uow, _start_request(1))
    unpriced = await _start(uow, _start_request(2))
    assert (await _session(uow, priced.session_id)).currency == "CHF"
    assert (await _session(uow, unpriced.session_id)).currency == "EUR"
