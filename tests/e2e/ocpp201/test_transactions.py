"""End to end, OCPP 2.0.1: TransactionEvent and MeterValues through a real running node.

Raw OCPP-J frames over a real websocket (subprotocol ``ocpp2.0.1``) to a
``cpms.runtime.Runtime``; each test checks the answer frames and the session, sample,
``transaction_event`` and CDR rows the node wrote. Covered (OCPP 2.0.1 blocks E, I, J):
one session per (station, transactionId) with the station's id kept, tokens known, blocked
and unknown at Started, a transaction begun by plugging in (PENDING until an Updated names
its token), energy billed from the Energy.Active.Import.Register readings of the events
(kWh and Wh, signed Begin and End readings that also become the CDR's signed data), Ended
(end time, stoppedReason or ``Local``, COMPLETED or still INVALID, a CDR), replays of every
event type (FIELD-NOTES 8), events out of order and offline (FIELD-NOTES 9): a late Updated
after Ended, an Updated before its Started, every event kept in ``transaction_event``, the
running cost (CostUpdated after the answer) and the final totalCost, MeterValues outside any
transaction, and a Started that uses a reservation.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from e2e.ocpp16.node import Node, iso
from raw_station import RawStation

from cpms.locations import assign_tariffs
from cpms.model import Cdr, MeterSample, Reservation, Session, TransactionEvent, utcnow
from cpms.tariffs import import_tariffs
from ocpp_gateway.rpc import OcppVersion
from ocpp_gateway.validation import PayloadKind, violations

from support import EXAMPLES

V201 = "ocpp2.0.1"
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
CARD = "CARD-201"
"""A valid local token the tests create."""
REGISTER = "Energy.Active.Import.Register"
TARIFF_8 = "tariff_8_simple_025kwh.json"
"""ENERGY 0.25 per kWh, VAT 10 %, step 1 Wh: a figure any reading can be priced by hand."""

_OCMF_BEGIN = (
    'OCMF|{"FV":"1.0","GI":"ABL SBC-301","GS":"808829900001","PG":"T1","RD":[{"TM":'
    '"2024-05-01T08:00:00,000+0000 S","TX":"B","RV":10.0,"RI":"1-b:1.8.0","RU":"kWh",'
    '"ST":"G"}]}|{"SA":"ECDSA-secp256r1-SHA256","SD":"3045022100B0B0B0"}'
)
_OCMF_END = _OCMF_BEGIN.replace('"TX":"B","RV":10.0', '"TX":"E","RV":17.5').replace(
    '"PG":"T1"', '"PG":"T2"'
)
PUBLIC_KEY = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBASE64KEY"


def signed(ocmf: str) -> dict[str, str]:
    """A 2.0.1 SignedMeterValueType as an Eichrecht station sends it (base64 OCMF)."""
    return {
        "signedMeterData": base64.b64encode(ocmf.encode()).decode(),
        "signingMethod": "ECDSA-secp256r1-SHA256",
        "encodingMethod": "OCMF",
        "publicKey": PUBLIC_KEY,
    }


Clock = Callable[..., datetime]
"""``when(minutes=0)``: a moment that many minutes after a fixed start two hours ago."""


@pytest.fixture
def when() -> Clock:
    """Moments of one test, from a start two hours ago, in whole seconds (exact in OCPP)."""
    start = utcnow().replace(microsecond=0) - timedelta(hours=2)

    def moment(minutes: float = 0) -> datetime:
        return start + timedelta(minutes=minutes)

    return moment


# What a 2.0.1 station sends ------------------------------------------------------------------


def new_transaction_id() -> str:
    """A transaction id as 2.0.1 stations make them: a UUID string of their own."""
    return str(uuid.uuid4())


def token(uid: str) -> dict[str, str]:
    return {"idToken": uid, "type": "ISO14443"}


def register(
    at: datetime,
    wh: float,
    context: str = "Sample.Periodic",
    *,
    unit: str | None = None,
    signature: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One meterValue with the energy register (in Wh unless ``unit``), signed or not."""
    sampled: dict[str, Any] = {"value": wh, "context": context, "measurand": REGISTER}
    if unit is not None:
        sampled["unitOfMeasure"] = {"unit": unit}
    values = [sampled]
    if signature is not None:
        values = [{**sampled, "signedMeterValue": signature}]
    return {"timestamp": iso(at), "sampledValue": values}


_TRIGGERS = {"Started": "Authorized", "Updated": "MeterValuePeriodic", "Ended": "EVDeparted"}


def event(
    event_type: str,
    seq_no: int,
    at: datetime,
    transaction_id: str,
    *readings: dict[str, Any],
    trigger: str | None = None,
    id_token: str | None = None,
    charging_state: str | None = None,
    stopped_reason: str | None = None,
    offline: bool | None = None,
    reservation_id: int | None = None,
    evse: int = 1,
) -> dict[str, Any]:
    """A TransactionEventRequest on EVSE ``evse``, connector 1."""
    info: dict[str, Any] = {"transactionId": transaction_id}
    if charging_state is not None:
        info["chargingState"] = charging_state
    if stopped_reason is not None:
        info["stoppedReason"] = stopped_reason
    payload: dict[str, Any] = {
        "eventType": event_type,
        "timestamp": iso(at),
        "triggerReason": trigger or _TRIGGERS[event_type],
        "seqNo": seq_no,
        "transactionInfo": info,
        "evse": {"id": evse, "connectorId": 1},
    }
    if id_token is not None:
        payload["idToken"] = token(id_token)
    if readings:
        payload["meterValue"] = list(readings)
    if offline is not None:
        payload["offline"] = offline
    if reservation_id is not None:
        payload["reservationId"] = reservation_id
    return payload


@asynccontextmanager
async def online(
    node: Node, station_id: str, *, evses: tuple[int, ...] = (1,)
) -> AsyncIterator[RawStation]:
    """A 2.0.1 station connected to ``node``, booted (Accepted), ``evses`` reported Available.

    A station reports each connector's status after its boot (OCPP 2.0.1 B01), so the node
    knows the EVSE before any transaction on it.
    """
    async with node.connect(station_id, version=V201) as station:
        assert (await station.result("BootNotification", BOOT))["status"] == "Accepted"
        for number in evses:
            report = {"timestamp": iso(utcnow()), "connectorStatus": "Available"}
            await station.result(
                "StatusNotification", {**report, "evseId": number, "connectorId": 1}
            )
        yield station


async def send(station: RawStation, payload: dict[str, Any]) -> dict[str, Any]:
    """Send a TransactionEvent that must succeed; return its schema-valid answer."""
    answer = await station.result("TransactionEvent", payload)
    assert violations(OcppVersion.V201, "TransactionEvent", answer, PayloadKind.RESPONSE) == []
    return answer


# Reading what the node stored ----------------------------------------------------------------


async def session_of(node: Node, station_id: str, transaction_id: str) -> Session:
    """The one session of a station's transaction."""
    return await node.one(
        Session, Session.station_id == station_id, Session.transaction_id == transaction_id
    )


async def events_of(node: Node, station_id: str, transaction_id: str) -> list[TransactionEvent]:
    """The ``transaction_event`` rows of a transaction, by seqNo."""
    return await node.rows(
        TransactionEvent,
        TransactionEvent.station_id == station_id,
        TransactionEvent.transaction_id == transaction_id,
        order_by=TransactionEvent.seq_no,
    )


async def cdrs_of(node: Node, session: Session) -> list[Cdr]:
    return await node.rows(Cdr, Cdr.session_id == session.id, order_by=Cdr.id)


def snapshot(session: Session) -> dict[str, Any]:
    """Every column of a session row."""
    return {column.key: getattr(session, column.key) for column in Session.__table__.columns}


# Started -> Updated -> Ended -----------------------------------------------------------------


async def test_a_transaction_runs_from_started_to_ended_and_every_event_is_kept(
    open_node: Node, when: Clock
) -> None:
    await open_node.create_token(CARD)
    tx, short = new_transaction_id(), new_transaction_id()
    async with online(open_node, "TE-1") as station:
        started = await send(
            station,
            event(
                "Started",
                0,
                when(),
                tx,
                register(when(), 10_000, "Transaction.Begin", signature=signed(_OCMF_BEGIN)),
                id_token=CARD,
                charging_state="Charging",
            ),
        )
        at_start = await session_of(open_node, "TE-1", tx)
        updated = await send(
            station,
            event(
                "Updated",
                1,
                when(10),
                tx,
                register(when(10), 12.5, unit="kWh"),
                charging_state="Charging",
            ),
        )
        meanwhile = await session_of(open_node, "TE-1", tx)
        ended = await send(
            station,
            event(
                "Ended",
                2,
                when(20),
                tx,
                register(when(20), 17_500, "Transaction.End", signature=signed(_OCMF_END)),
                stopped_reason="EVDisconnected",
                charging_state="Idle",
            ),
        )
        # A second transaction of the same station, ended without a stoppedReason.
        await send(station, event("Started", 0, when(30), short, id_token=CARD))
        await send(station, event("Ended", 1, when(31), short, trigger="StopAuthorized"))

    assert started["idTokenInfo"]["status"] == "Accepted"
    assert "totalCost" not in started
    assert "totalCost" not in updated
    assert "totalCost" not in ended  # no tariff: cost unknown, and omitting it says "not free"

    evse = await open_node.evse("TE-1", 1)
    assert at_start.status == "ACTIVE"
    assert at_start.transaction_id == tx  # the station's own id, kept as sent
    assert (at_start.station_id, at_start.evse_uid) == ("TE-1", evse.uid)
    assert at_start.start_date_time == when()
    assert at_start.end_date_time is None
    assert at_start.energy_wh == Decimal(0)
    assert at_start.cdr_token["uid"] == CARD
    assert (meanwhile.status, meanwhile.energy_wh) == ("ACTIVE", Decimal(2500))

    session = await session_of(open_node, "TE-1", tx)
    assert session.id == at_start.id
    assert session.status == "COMPLETED"
    assert session.end_date_time == when(20)
    assert session.stop_reason == "EVDisconnected"
    # 17 500 - 10 000: the signed Begin and End registers are billed like plain ones.
    assert session.energy_wh == Decimal(7500)
    assert "offline" not in session.flags
    assert session.cdr_id is not None
    (cdr,) = await cdrs_of(open_node, session)
    assert cdr.id == session.cdr_id
    assert cdr.document["total_energy"] == 7.5
    assert cdr.document["signed_data"] == {
        "encoding_method": "OCMF",
        "public_key": PUBLIC_KEY,
        "signed_values": [
            {
                "nature": nature,
                "plain_data": ocmf,
                "signed_data": base64.b64encode(ocmf.encode()).decode(),
            }
            for nature, ocmf in (("Start", _OCMF_BEGIN), ("End", _OCMF_END))
        ],
    }
    periodic = await open_node.samples(
        MeterSample.session_id == session.id, MeterSample.sampled_at == when(10)
    )
    assert [(s.measurand, s.unit, s.value, s.value_si) for s in periodic] == [
        (REGISTER, "kWh", Decimal("12.5"), Decimal(12_500))
    ]

    kept = [
        (
            e.seq_no,
            e.event_type,
            e.trigger_reason,
            e.charging_state,
            e.stopped_reason,
            e.offline,
            e.id_token,
            e.occurred_at,
            e.session_id,
        )
        for e in await events_of(open_node, "TE-1", tx)
    ]
    assert kept == [
        (0, "Started", "Authorized", "Charging", None, False, CARD, when(), session.id),
        (1, "Updated", "MeterValuePeriodic", "Charging", None, False, None, when(10), session.id),
        (2, "Ended", "EVDeparted", "Idle", "EVDisconnected", False, None, when(20), session.id),
    ]
    assert all(e.received_at is not None for e in await events_of(open_node, "TE-1", tx))

    other = await session_of(open_node, "TE-1", short)
    assert other.id != session.id
    assert (other.status, other.stop_reason, other.end_date_time) == (
        "COMPLETED",
        "Local",
        when(31),
    )
    assert len(await open_node.sessions("TE-1")) == 2


async def test_a_transaction_on_an_evse_never_reported_before_adds_the_evse(
    open_node: Node, when: Clock
) -> None:
    # No StatusNotification first (a database restored, a station that skips them): the
    # TransactionEvent is the first the node hears of EVSE 2.
    await open_node.create_token(CARD)
    tx = new_transaction_id()
    async with online(open_node, "TE-NEW", evses=()) as station:
        answer = await send(
            station,
            event(
                "Started",
                0,
                when(),
                tx,
                register(when(), 100, "Transaction.Begin"),
                id_token=CARD,
                evse=2,
            ),
        )
    assert answer["idTokenInfo"]["status"] == "Accepted"
    (evse,) = await open_node.evses("TE-NEW")
    assert evse.ocpp_evse_id == 2
    session = await session_of(open_node, "TE-NEW", tx)
    assert (session.status, session.evse_uid) == ("ACTIVE", evse.uid)


async def test_the_token_of_a_started_decides_its_session_and_an_invalid_one_stays_invalid(
    open_node: Node, when: Clock
) -> None:
    await open_node.create_token(CARD)
    await open_node.create_token("CARD-OFF", valid=False)
    table = [  # token, idTokenInfo.status, session status at start, after Ended
        (CARD, "Accepted", "ACTIVE", "COMPLETED"),
        ("CARD-OFF", "Blocked", "INVALID", "INVALID"),
        ("NOBODY", "Unknown", "INVALID", "INVALID"),
    ]
    transactions = {uid: new_transaction_id() for uid, *_ in table}
    answers: dict[str, dict[str, Any]] = {}
    at_start: dict[str, str] = {}
    async with online(open_node, "TE-TOK") as station:
        for minute, (uid, *_) in enumerate(table):
            tx = transactions[uid]
            answers[uid] = await send(
                station,
                event(
                    "Started",
                    0,
                    when(minute),
                    tx,
                    register(when(minute), 1000, "Transaction.Begin"),
                    id_token=uid,
                ),
            )
            at_start[uid] = (await session_of(open_node, "TE-TOK", tx)).status
            await send(
                station,
                event(
                    "Ended",
                    1,
                    when(minute + 10),
                    tx,
                    register(when(minute + 10), 2000, "Transaction.End"),
                    stopped_reason="DeAuthorized" if uid != CARD else "Local",
                ),
            )
    got = []
    for minute, (uid, *_) in enumerate(table):
        session = await session_of(open_node, "TE-TOK", transactions[uid])
        got.append((uid, answers[uid]["idTokenInfo"]["status"], at_start[uid], session.status))
        assert session.cdr_token["uid"] == uid
        assert session.end_date_time == when(minute + 10)
        # Only a COMPLETED session is billed: INVALID ones get no CDR.
        assert (session.cdr_id is not None) is (session.status == "COMPLETED"), uid
    assert got == [tuple(row) for row in table]


async def test_a_transaction_begun_by_plugging_in_is_pending_until_a_token_is_presented(
    open_node: Node, when: Clock
) -> None:
    await open_node.create_token(CARD)
    plugged, stranger = new_transaction_id(), new_transaction_id()
    async with online(open_node, "TE-PLUG") as station:
        first = await send(
            station,
            event(
                "Started",
                0,
                when(),
                plugged,
                register(when(), 5000, "Transaction.Begin"),
                trigger="CablePluggedIn",
                charging_state="EVConnected",
            ),
        )
        pending = await session_of(open_node, "TE-PLUG", plugged)
        authorized = await send(
            station,
            event(
                "Updated",
                1,
                when(2),
                plugged,
                trigger="Authorized",
                id_token=CARD,
                charging_state="Charging",
            ),
        )
        active = await session_of(open_node, "TE-PLUG", plugged)
        await send(
            station,
            event("Ended", 2, when(30), plugged, register(when(30), 6000, "Transaction.End")),
        )

        # The same, but the card presented is nobody's.
        await send(
            station,
            event("Started", 0, when(40), stranger, trigger="CablePluggedIn"),
        )
        refused = await send(
            station,
            event("Updated", 1, when(41), stranger, trigger="Authorized", id_token="NOBODY"),
        )
    assert "idTokenInfo" not in first  # no token, nothing to decide yet
    assert pending.status == "PENDING"
    assert pending.start_date_time == when()
    assert authorized["idTokenInfo"]["status"] == "Accepted"
    assert active.status == "ACTIVE"
    assert active.id == pending.id
    assert active.cdr_token["uid"] == CARD
    session = await session_of(open_node, "TE-PLUG", plugged)
    assert (session.status, session.energy_wh) == ("COMPLETED", Decimal(1000))
    assert session.cdr_id is not None
    assert refused["idTokenInfo"]["status"] == "Unknown"
    assert (await session_of(open_node, "TE-PLUG", stranger)).status == "INVALID"
    assert len(await open_node.sessions("TE-PLUG")) == 2


# Replays and order (FIELD-NOTES 8, 9) --------------------------------------------------------


async def test_a_replayed_event_is_answered_the_same_and_changes_nothing(
    open_node: Node, when: Clock
) -> None:
    await open_node.create_token(CARD)
    tx = new_transaction_id()
    started = event(
        "Started", 0, when(), tx, register(when(), 1000, "Transaction.Begin"), id_token=CARD
    )
    updated = event("Updated", 1, when(5), tx, register(when(5), 1500))
    ended = event("Ended", 2, when(10), tx, register(when(10), 2000, "Transaction.End"))

    async def counts() -> tuple[int, int, int]:
        return (
            len(await open_node.sessions("TE-R")),
            len(await open_node.samples(MeterSample.station_id == "TE-R")),
            len(await open_node.rows(TransactionEvent, TransactionEvent.station_id == "TE-R")),
        )

    async with online(open_node, "TE-R") as station:
        first_start = await send(station, started)
        first_update = await send(station, updated)
        before = snapshot(await session_of(open_node, "TE-R", tx))
        counted = await counts()
    # The station reconnects and sends its queue again, under new message ids.
    async with online(open_node, "TE-R") as station:
        replayed_update = await send(station, updated)
        replayed_start = await send(station, started)
        assert snapshot(await session_of(open_node, "TE-R", tx)) == before
        assert await counts() == counted
        first_end = await send(station, ended)
        after_end = snapshot(await session_of(open_node, "TE-R", tx))
        counted = await counts()
        replayed_end = await send(station, ended)
        assert await counts() == counted
    assert (replayed_start, replayed_update, replayed_end) == (first_start, first_update, first_end)
    assert before["energy_wh"] == Decimal(500)
    assert after_end["energy_wh"] == Decimal(1000)
    after = await session_of(open_node, "TE-R", tx)
    assert snapshot(after) == after_end
    assert after.status == "COMPLETED"
    assert len(await cdrs_of(open_node, after)) == 1
    assert [e.seq_no for e in await events_of(open_node, "TE-R", tx)] == [0, 1, 2]


async def test_an_updated_arriving_after_ended_is_kept_but_changes_no_ended_session(
    open_node: Node, when: Clock
) -> None:
    await open_node.create_token(CARD)
    tx = new_transaction_id()
    async with online(open_node, "TE-LATE") as station:
        await send(
            station,
            event(
                "Started",
                0,
                when(),
                tx,
                register(when(), 10_000, "Transaction.Begin"),
                id_token=CARD,
            ),
        )
        await send(
            station,
            event(
                "Ended",
                2,
                when(20),
                tx,
                register(when(20), 15_000, "Transaction.End"),
                stopped_reason="EVDisconnected",
            ),
        )
        ended = snapshot(await session_of(open_node, "TE-LATE", tx))
        late = await send(
            station,
            event(
                "Updated",
                1,
                when(10),
                tx,
                register(when(10), 12_000),
                charging_state="Charging",
            ),
        )
    assert "idTokenInfo" not in late
    session = await session_of(open_node, "TE-LATE", tx)
    # Not resurrected, not re-billed: the session is exactly as its Ended left it.
    assert snapshot(session) == ended
    assert (session.status, session.end_date_time) == ("COMPLETED", when(20))
    assert session.energy_wh == Decimal(5000)
    assert len(await cdrs_of(open_node, session)) == 1
    (kept,) = await open_node.samples(
        MeterSample.session_id == session.id, MeterSample.sampled_at == when(10)
    )
    assert kept.value_si == Decimal(12_000)
    assert [(e.seq_no, e.event_type) for e in await events_of(open_node, "TE-LATE", tx)] == [
        (0, "Started"),
        (1, "Updated"),
        (2, "Ended"),
    ]


async def test_an_updated_before_its_started_makes_one_session_billed_from_the_begin_reading(
    open_node: Node, when: Clock
) -> None:
    # Offline, the station queued all three; they arrive with the Updated first.
    await open_node.create_token(CARD)
    tx = new_transaction_id()
    async with online(open_node, "TE-OOO") as station:
        await send(
            station,
            event(
                "Updated",
                1,
                when(10),
                tx,
                register(when(10), 12_000),
                charging_state="Charging",
                offline=True,
            ),
        )
        started = await send(
            station,
            event(
                "Started",
                0,
                when(),
                tx,
                register(when(), 10_000, "Transaction.Begin"),
                id_token=CARD,
                offline=True,
            ),
        )
        running = await session_of(open_node, "TE-OOO", tx)
        await send(
            station,
            event(
                "Ended",
                2,
                when(20),
                tx,
                register(when(20), 15_000, "Transaction.End"),
                offline=True,
            ),
        )
    assert started["idTokenInfo"]["status"] == "Accepted"
    assert running.status == "ACTIVE"
    assert running.start_date_time == when()
    assert running.energy_wh == Decimal(2000)  # 12 000 - 10 000, from the Begin reading
    (session,) = await open_node.sessions("TE-OOO")
    assert session.id == running.id
    assert (session.status, session.start_date_time, session.end_date_time) == (
        "COMPLETED",
        when(),
        when(20),
    )
    assert session.energy_wh == Decimal(5000)  # end - begin
    assert "offline" in session.flags
    assert session.cdr_id is not None
    (cdr,) = [c for c in await cdrs_of(open_node, session) if c.id == session.cdr_id]
    assert cdr.document["total_energy"] == 5.0
    kept = await events_of(open_node, "TE-OOO", tx)
    assert [(e.seq_no, e.offline, e.session_id) for e in kept] == [
        (0, True, session.id),
        (1, True, session.id),
        (2, True, session.id),
    ]


# Cost (block I) ------------------------------------------------------------------------------


async def cost_update(station: RawStation, transaction_id: str, total: float) -> None:
    """Read the station's incoming CALLs until a CostUpdated of ``total``; answer each.

    A CostUpdated of 0 for the untouched session (after its Started) may come first: OCPP
    allows it. Anything else before the awaited one is a stray update and fails.
    """
    for _ in range(2):
        _, unique_id, action, payload = await station.next_call()
        assert action == "CostUpdated", (action, payload)
        assert violations(OcppVersion.V201, "CostUpdated", payload) == []
        await station.reply(unique_id, {})
        assert payload["transactionId"] == transaction_id
        if payload["totalCost"] == total:
            return
        assert payload["totalCost"] == 0, f"stray CostUpdated {payload}, awaiting {total}"
    pytest.fail(f"no CostUpdated of {total}")


async def test_the_running_cost_is_sent_after_the_answer_and_the_total_ends_the_transaction(
    open_node: Node, when: Clock
) -> None:
    tariff = json.loads((EXAMPLES / TARIFF_8).read_text(encoding="utf-8"))
    await open_node.create_token(CARD)
    tx = new_transaction_id()
    async with online(open_node, "TE-COST") as station:
        (evse,) = await open_node.evses("TE-COST")
        await import_tariffs(open_node.runtime.uow(), [tariff])
        await assign_tariffs(
            open_node.runtime.uow(),
            evse.location_id,
            evse.uid,
            evse.connectors[0].id,
            [tariff["id"]],
        )

        started = await send(
            station,
            event(
                "Started",
                0,
                when(),
                tx,
                register(when(), 10_000, "Transaction.Begin"),
                id_token=CARD,
            ),
        )
        assert "totalCost" not in started  # "SHALL only be sent when charging has ended"

        await send(station, event("Updated", 1, when(30), tx, register(when(30), 14_000)))
        # Queued while we waited for the answer = sent before it: none may carry the new cost.
        queued = station.incoming_calls
        early = [queued.get_nowait() for _ in range(queued.qsize())]
        for frame in early:  # put back, in order, for cost_update to read
            queued.put_nowait(frame)
        assert [c for c in early if c[2] == "CostUpdated" and c[3]["totalCost"] == 1.1] == []
        # 4 kWh x 0.25 = 1.00 excl. VAT, x 1.10 = 1.10.
        await cost_update(station, tx, 1.1)

        # No new reading, no new cost: the next CostUpdated is the one for 16 kWh.
        await send(
            station,
            event(
                "Updated",
                2,
                when(35),
                tx,
                trigger="ChargingStateChanged",
                charging_state="SuspendedEV",
            ),
        )
        await send(station, event("Updated", 3, when(40), tx, register(when(40), 16_000)))
        await cost_update(station, tx, 1.65)  # 6 kWh x 0.25 x 1.10

        ended = await send(
            station,
            event("Ended", 4, when(50), tx, register(when(50), 17_500, "Transaction.End")),
        )
        replayed = await send(
            station,
            event("Ended", 4, when(50), tx, register(when(50), 17_500, "Transaction.End")),
        )
    # 7.5 kWh x 0.25 = 1.875 excl. VAT; x 1.10 = 2.0625 incl., 2.06 in cents.
    assert ended["totalCost"] == 2.06
    assert replayed == ended
    session = await session_of(open_node, "TE-COST", tx)
    assert session.tariff_id == tariff["id"]
    assert session.total_cost_incl_vat == Decimal("2.06")
    (cdr,) = await cdrs_of(open_node, session)
    assert session.cdr_id == cdr.id
    assert (cdr.total_cost_excl_vat, cdr.total_cost_incl_vat) == (Decimal("1.88"), Decimal("2.06"))
    assert cdr.document["total_energy"] == 7.5


# MeterValues outside transactions (block J) --------------------------------------------------


async def test_meter_values_outside_a_transaction_are_kept_without_a_session(
    open_node: Node, when: Clock
) -> None:
    async with online(open_node, "MV-201") as station:
        answer = await station.result(
            "MeterValues",
            {
                "evseId": 2,
                "meterValue": [
                    {
                        "timestamp": iso(when()),
                        "sampledValue": [
                            {"value": 230.4, "measurand": "Voltage", "phase": "L1-N"},
                            {"value": 1.5, "unitOfMeasure": {"unit": "kWh"}},
                            {"value": 7.4, "unitOfMeasure": {"unit": "W", "multiplier": 3},
                             "measurand": "Power.Active.Import"},
                        ],
                    }
                ],
            },
        )  # fmt: skip
    assert answer == {}
    samples = await open_node.samples(MeterSample.station_id == "MV-201")
    assert [(s.measurand, s.phase, s.unit, s.value_si) for s in samples] == [
        ("Voltage", "L1-N", "V", Decimal("230.4")),
        (REGISTER, None, "kWh", Decimal(1500)),
        ("Power.Active.Import", None, "W", Decimal(7400)),
    ]
    assert all(s.session_id is None for s in samples)
    assert {s.ocpp_evse_id for s in samples} == {2}
    assert {s.sampled_at for s in samples} == {when()}
    assert await open_node.sessions("MV-201") == []


async def test_a_custom_unit_as_long_as_the_schema_allows_is_kept(
    open_node: Node, when: Clock
) -> None:
    # 2.0.1's unit is free text of up to 20 characters (a "custom" unit is allowed).
    unit = "kilogram-CO2-per-kWh"
    assert len(unit) == 20
    async with online(open_node, "MV-UNIT") as station:
        answer = await station.result(
            "MeterValues",
            {
                "evseId": 1,
                "meterValue": [
                    {
                        "timestamp": iso(when()),
                        "sampledValue": [
                            {"value": 0.4, "measurand": "Voltage", "unitOfMeasure": {"unit": unit}}
                        ],
                    }
                ],
            },
        )
        assert (await station.result("Heartbeat", {}))["currentTime"]
    assert answer == {}
    (sample,) = await open_node.samples(MeterSample.station_id == "MV-UNIT")
    assert sample.unit is not None
    assert unit.startswith(sample.unit)  # kept whole, or cut to what the column holds
    assert sample.value_si == Decimal("0.4")


# Reservations --------------------------------------------------------------------------------


async def test_a_started_naming_a_reservation_uses_it(open_node: Node, when: Clock) -> None:
    await open_node.create_token(CARD)
    tx = new_transaction_id()
    async with online(open_node, "TE-RES") as station:
        reserved = {"timestamp": iso(when()), "connectorStatus": "Reserved"}
        await station.result("StatusNotification", {**reserved, "evseId": 1, "connectorId": 1})
        evse = await open_node.evse("TE-RES", 1)
        async with open_node.runtime.uow() as uow:
            reservation = Reservation(
                location_id=evse.location_id,
                evse_uid=evse.uid,
                station_id="TE-RES",
                token={"uid": CARD, "type": "RFID"},
                expiry_date=utcnow() + timedelta(hours=1),
                status="ACCEPTED",
            )
            uow.session.add(reservation)
            await uow.commit()
            reservation_id = reservation.id
        answer = await send(
            station,
            event("Started", 0, when(), tx, id_token=CARD, reservation_id=reservation_id),
        )
    assert answer["idTokenInfo"]["status"] == "Accepted"
    assert (await open_node.one(Reservation)).status == "USED"
    assert (await session_of(open_node, "TE-RES", tx)).reservation_id == reservation_id
