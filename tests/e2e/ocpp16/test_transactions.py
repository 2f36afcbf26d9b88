"""End to end, OCPP 1.6: StartTransaction and StopTransaction through a real running node.

Raw OCPP-J frames over a real websocket to a ``cpms.runtime.Runtime``; each test checks the
answer frame and the session, sample, reservation and log rows the node wrote. Covered:
transaction ids (integers, unique across stations), replayed starts and stops (FIELD-NOTES 8),
sessions for known and unknown tokens, reservations used by a start, closing a session
(energy from meterStart/meterStop, transactionData kept with its contexts), stops for
transaction ids nobody issued, 999999 and -1 (FIELD-NOTES 7), and station clocks that lie
(FIELD-NOTES 11): a start in 1970 or 2100, a stop before its start.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from e2e.ocpp16.node import Node, iso
from raw_station import RawStation

from cpms.model import MeterSample, OutboxEntry, Reservation, Session, utcnow

CARD = "CARD-0001"
"""A valid local token the tests create."""


Clock = Callable[..., datetime]
"""``when(minutes=0)``: a moment that many minutes after a fixed start an hour ago."""


@pytest.fixture
def when() -> Clock:
    """Moments of one test, from a start an hour ago, in whole seconds (exact in OCPP)."""
    start = utcnow().replace(microsecond=0) - timedelta(hours=1)

    def moment(minutes: float = 0) -> datetime:
        return start + timedelta(minutes=minutes)

    return moment


def start_payload(
    moment: datetime, *, connector: int = 1, id_tag: str = CARD, meter_start: int = 1000
) -> dict[str, Any]:
    return {
        "connectorId": connector,
        "idTag": id_tag,
        "meterStart": meter_start,
        "timestamp": iso(moment),
    }


def stop_payload(
    transaction_id: int, moment: datetime, meter_stop: int, **extra: Any
) -> dict[str, Any]:
    return {
        "transactionId": transaction_id,
        "meterStop": meter_stop,
        "timestamp": iso(moment),
        **extra,
    }


async def start(station: RawStation, payload: dict[str, Any]) -> int:
    """Send a StartTransaction; return its transaction id (checked to be an integer)."""
    answer = await station.result("StartTransaction", payload)
    transaction_id = answer["transactionId"]
    assert type(transaction_id) is int
    return transaction_id


def snapshot(session: Session) -> dict[str, Any]:
    """Every column of a session row."""
    return {column.key: getattr(session, column.key) for column in Session.__table__.columns}


# StartTransaction ----------------------------------------------------------------------------


async def test_a_start_with_a_valid_token_opens_an_active_session(
    open_node: Node, when: Clock
) -> None:
    await open_node.create_token(CARD, group_id="FLEET-1")
    t0 = when()
    async with open_node.connect("TX-1") as station:
        await station.boot()
        answer = await station.result("StartTransaction", start_payload(t0, meter_start=1234))
    assert type(answer["transactionId"]) is int
    assert answer["idTagInfo"] == {"status": "Accepted", "parentIdTag": "FLEET-1"}

    session = await open_node.session(answer["transactionId"])
    assert session.status == "ACTIVE"
    assert session.station_id == "TX-1"
    assert session.evse_uid == (await open_node.evse("TX-1", 1)).uid
    assert session.start_date_time == t0
    assert session.end_date_time is None
    assert session.meter_start_wh == Decimal(1234)
    assert session.energy_wh == Decimal(0)
    assert session.cdr_token["uid"] == CARD
    assert session.cdr_token["type"] == "RFID"
    assert session.flags == []
    begin = await open_node.samples(MeterSample.session_id == session.id)
    assert [(s.context, s.value_si) for s in begin] == [("Transaction.Begin", Decimal(1234))]


async def test_a_start_with_an_unknown_token_opens_an_invalid_session(
    open_node: Node, when: Clock
) -> None:
    async with open_node.connect("TX-2") as station:
        await station.boot()
        answer = await station.result("StartTransaction", start_payload(when(), id_tag="STRANGER"))
    assert type(answer["transactionId"]) is int
    assert answer["idTagInfo"]["status"] == "Invalid"
    session = await open_node.session(answer["transactionId"])
    assert session.status == "INVALID"
    assert session.cdr_token["uid"] == "STRANGER"


async def test_transaction_ids_are_unique_across_stations(open_node: Node, when: Clock) -> None:
    await open_node.create_token(CARD)
    same = start_payload(when())  # identical starts: only the station tells them apart
    async with open_node.connect("TX-A") as first, open_node.connect("TX-B") as second:
        await first.boot()
        await second.boot()
        one = await start(first, same)
        other = await start(second, same)
    assert one != other
    assert (await open_node.session(one)).station_id == "TX-A"
    assert (await open_node.session(other)).station_id == "TX-B"


async def test_a_replayed_start_gets_the_same_id_and_no_second_session(
    open_node: Node, when: Clock
) -> None:
    await open_node.create_token(CARD)
    payload = start_payload(when(), meter_start=500)
    async with open_node.connect("TX-R") as station:
        await station.boot()
        first = await start(station, payload)
    # The station reconnects and replays its queued start (FIELD-NOTES 8).
    async with open_node.connect("TX-R") as station:
        await station.boot()
        replayed = await start(station, payload)
        later = await start(station, start_payload(when(1), meter_start=500))
    assert replayed == first
    assert later != first
    sessions = await open_node.sessions("TX-R")
    assert sorted(int(s.transaction_id or 0) for s in sessions) == sorted([first, later])


async def test_a_start_for_a_reservation_marks_it_used(open_node: Node, when: Clock) -> None:
    await open_node.create_token(CARD)
    async with open_node.connect("TX-RES") as station, open_node.connect("TX-OTHER") as other:
        await station.boot()
        await other.boot()
        await station.result(
            "StatusNotification", {"connectorId": 1, "status": "Reserved", "errorCode": "NoError"}
        )
        evse = await open_node.evse("TX-RES", 1)
        async with open_node.runtime.uow() as uow:
            reservation = Reservation(
                location_id=evse.location_id,
                evse_uid=evse.uid,
                station_id="TX-RES",
                token={"uid": CARD, "type": "RFID"},
                expiry_date=utcnow() + timedelta(hours=1),
                status="ACCEPTED",
            )
            uow.session.add(reservation)
            await uow.commit()
            reservation_id = reservation.id
        # Another station naming this reservation does not use it up.
        other_id = await start(other, {**start_payload(when()), "reservationId": reservation_id})
        assert (await open_node.one(Reservation)).status == "ACCEPTED"
        assert (await open_node.session(other_id)).reservation_id is None

        transaction_id = await start(
            station, {**start_payload(when()), "reservationId": reservation_id}
        )
    assert (await open_node.one(Reservation)).status == "USED"
    assert (await open_node.session(transaction_id)).reservation_id == reservation_id


# StopTransaction -----------------------------------------------------------------------------


async def test_a_stop_closes_the_session(open_node: Node, when: Clock) -> None:
    await open_node.create_token(CARD)
    async with open_node.connect("TX-S") as station:
        await station.boot()
        transaction_id = await start(station, start_payload(when(), meter_start=1000))
        answer = await station.result(
            "StopTransaction",
            stop_payload(transaction_id, when(10), 1500, idTag=CARD, reason="EVDisconnected"),
        )
    assert answer == {"idTagInfo": {"status": "Accepted"}}
    session = await open_node.session(transaction_id)
    assert session.status == "COMPLETED"
    assert session.end_date_time == when(10)
    assert session.meter_stop_wh == Decimal(1500)
    assert session.stop_reason == "EVDisconnected"
    assert session.energy_wh == Decimal(500)
    ended = [
        entry
        for entry in await open_node.outbox("session.ended")
        if entry.payload["session_id"] == session.id
    ]
    assert len(ended) == 1


async def test_a_stop_without_reason_or_id_tag_is_answered_empty(
    open_node: Node, when: Clock
) -> None:
    await open_node.create_token(CARD)
    async with open_node.connect("TX-S2") as station:
        await station.boot()
        transaction_id = await start(station, start_payload(when(), meter_start=0))
        answer = await station.result("StopTransaction", stop_payload(transaction_id, when(5), 0))
    assert answer == {}
    session = await open_node.session(transaction_id)
    assert (session.status, session.stop_reason, session.energy_wh) == ("COMPLETED", "Local", 0)


@pytest.mark.parametrize("replayed_meter_stop", [1500, 9999])
async def test_a_replayed_stop_changes_nothing(
    open_node: Node, when: Clock, replayed_meter_stop: int
) -> None:
    await open_node.create_token(CARD)
    async with open_node.connect("TX-RS") as station:
        await station.boot()
        transaction_id = await start(station, start_payload(when(), meter_start=1000))
        await station.result("StopTransaction", stop_payload(transaction_id, when(10), 1500))
        session = await open_node.session(transaction_id)
        before = snapshot(session)
        samples = len(await open_node.samples(MeterSample.session_id == session.id))
        outbox = len(await open_node.rows(OutboxEntry))

        # After a reboot the station sends its queued stop again (FIELD-NOTES 8).
        answer = await station.result(
            "StopTransaction",
            stop_payload(transaction_id, when(11), replayed_meter_stop, idTag=CARD),
        )
        # Counted while connected: the disconnect below writes events of its own.
        assert len(await open_node.rows(OutboxEntry)) == outbox
    assert answer == {"idTagInfo": {"status": "Accepted"}}
    assert snapshot(await open_node.session(transaction_id)) == before
    assert len(await open_node.samples(MeterSample.session_id == session.id)) == samples


@pytest.mark.parametrize("transaction_id", [999999, -1])
async def test_a_stop_for_an_unknown_transaction_is_answered_and_logged(
    open_node: Node, when: Clock, transaction_id: int
) -> None:
    await open_node.create_token(CARD)
    async with open_node.connect("TX-U") as station:
        await station.boot()
        bare = await station.call("StopTransaction", stop_payload(transaction_id, when(), 42))
        with_tag = await station.call(
            "StopTransaction", stop_payload(transaction_id, when(), 42, idTag=CARD)
        )
        assert (await station.result("Heartbeat", {}))["currentTime"]
    # CALLRESULTs, never a CALLERROR the station would retry forever (FIELD-NOTES 7).
    assert bare[0] == 3
    assert bare[2] == {}
    assert with_tag[0] == 3
    assert with_tag[2] == {"idTagInfo": {"status": "Accepted"}}
    logged = await open_node.events("TX-U", "unknown_transaction")
    assert len(logged) == 2
    assert all(e.details and e.details["transaction_id"] == str(transaction_id) for e in logged)
    assert logged[0].details is not None
    assert logged[0].details["meter_stop_wh"] == "42"
    assert await open_node.sessions("TX-U") == []


async def test_transaction_data_is_kept_with_its_contexts(open_node: Node, when: Clock) -> None:
    await open_node.create_token(CARD)
    async with open_node.connect("TX-D") as station:
        await station.boot()
        transaction_id = await start(station, start_payload(when(), meter_start=1000))
        await station.result(
            "StopTransaction",
            stop_payload(
                transaction_id,
                when(20),
                1500,
                transactionData=[
                    {
                        "timestamp": iso(when(10)),
                        "sampledValue": [
                            {"value": "1.25", "unit": "kWh", "context": "Sample.Periodic"}
                        ],
                    },
                    {
                        "timestamp": iso(when(20)),
                        "sampledValue": [
                            {"value": "1.5", "unit": "kWh", "context": "Transaction.End"},
                            {
                                "value": "80",
                                "measurand": "SoC",
                                "unit": "Percent",
                                "context": "Transaction.End",
                                "location": "EV",
                            },
                        ],
                    },
                ],
            ),
        )
    session = await open_node.session(transaction_id)
    samples = await open_node.samples(MeterSample.session_id == session.id)
    kept = {(s.measurand, s.context, s.unit, s.value, s.value_si) for s in samples}
    register = "Energy.Active.Import.Register"
    assert (register, "Sample.Periodic", "kWh", Decimal("1.25"), Decimal(1250)) in kept
    assert (register, "Transaction.End", "kWh", Decimal("1.5"), Decimal(1500)) in kept
    assert ("SoC", "Transaction.End", "Percent", Decimal(80), Decimal(80)) in kept
    (soc,) = [s for s in samples if s.measurand == "SoC"]
    assert soc.location == "EV"
    assert soc.sampled_at == when(20)
    assert session.energy_wh == Decimal(500)
    assert session.status == "COMPLETED"


# Clocks (FIELD-NOTES 11) ---------------------------------------------------------------------


@pytest.mark.parametrize("station_time", ["1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z"])
async def test_a_start_with_an_unbelievable_clock_uses_the_receive_time(
    open_node: Node, station_time: str
) -> None:
    await open_node.create_token(CARD)
    async with open_node.connect("TX-C") as station:
        await station.boot()
        before = utcnow()
        transaction_id = await start(
            station,
            {"connectorId": 1, "idTag": CARD, "meterStart": 0, "timestamp": station_time},
        )
        after = utcnow()
    session = await open_node.session(transaction_id)
    assert before <= session.start_date_time <= after
    assert "station_clock" in session.flags
    assert len(await open_node.events("TX-C", "clock")) == 1


@pytest.mark.parametrize(
    "stop_time",
    [pytest.param(-60, id="an-hour-before-the-start"), pytest.param(None, id="in-1970")],
)
async def test_a_stop_before_its_start_never_gives_a_negative_duration(
    open_node: Node, when: Clock, stop_time: float | None
) -> None:
    await open_node.create_token(CARD)
    async with open_node.connect("TX-N") as station:
        await station.boot()
        transaction_id = await start(station, start_payload(when(), meter_start=100))
        payload = stop_payload(transaction_id, when(stop_time or 0), 300)
        if stop_time is None:
            payload["timestamp"] = "1970-01-01T00:00:00Z"
        await station.result("StopTransaction", payload)
    session = await open_node.session(transaction_id)
    assert session.end_date_time is not None
    assert session.end_date_time >= session.start_date_time
    assert "station_clock" in session.flags
    assert session.status == "COMPLETED"
