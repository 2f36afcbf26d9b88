"""End to end: OCPI commands and charging profiles from a real eMSP to a raw OCPP 1.6 station.

Path under test: the eMSP peer (``tests/ocpi_peer.py``) POSTs ``/ocpi/2.2.1/commands/...`` (or
calls ``chargingprofiles``) on a real node -> ``cpms.remote_control`` -> ``GatewayStationPort.act``
-> a raw station (plain JSON frames) -> its answer -> the CommandResult (or profile result)
queued for the request's ``response_url``.

For every command: the CommandResponse comes at once (checked with ocpi-types), the station
receives the right OCPP 1.6 CALL, and its answer becomes the result queued as an ``OcpiPush``
(checked with ocpi-types); delivery of that push to the peer is the pusher's work and is
checked in ``test_results_reach_the_emsp``. Then the rules: a station that never answers gives
TIMEOUT; an unknown location 2003/REJECTED; another partner's session REJECTED and an unknown
one UNKNOWN_SESSION; a partner cannot cancel another's reservation; an offline station is
REJECTED; the station's start with the idTag it was sent opens an ACTIVE session with the
command's token (auth_method COMMAND); a reservation opens a RESERVATION session and its
cancellation completes it; the same reservation id again replaces it at the station; long
token uids reach the station as a 20-character alias.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from e2e.ocpp16.node import Node, NodeStarter, iso, parse_iso
from ocpi_models import check
from ocpi_peer import EmspPeer
from ocpi_support import cpo_url, register_directly
from raw_station import STEP, RawStation

from cpms import remote_control
from cpms.admission import AdmissionPolicy
from cpms.documents.datetimes import format_datetime
from cpms.model import OcpiCommand, OcpiPush, Reservation, Session, utcnow
from cpms.reservations import EXPIRED, expire_reservations

from support import EXAMPLES

QUIET = STEP / 5
"""How long we listen to conclude that the node sent the station nothing."""
STATION = "OCPI-CP-1"


def example_token(name: str = "token_example_2_full_rfid.json") -> dict[str, Any]:
    """An official Token example (DE/TNM)."""
    return json.loads((EXAMPLES / name).read_text())


RFID = example_token()  # uid 12345678905880, group_id DF000-2001-8999
APP_USER = example_token("token_example_1_app_user.json")  # uid of 36 characters


@dataclass
class Emsp:
    """A registered eMSP peer."""

    peer: EmspPeer
    partner_id: int


@asynccontextmanager
async def registered(node: Node, party_id: str) -> AsyncIterator[Emsp]:
    async with EmspPeer(country_code="DE", party_id=party_id, name=party_id) as peer:
        yield Emsp(peer, await register_directly(node.runtime, peer, name=party_id))


@pytest.fixture
async def tnm(open_node: Node) -> AsyncIterator[Emsp]:
    """The eMSP of the official token examples (DE/TNM)."""
    async with registered(open_node, "TNM") as emsp:
        yield emsp


@dataclass
class Wired:
    """A booted raw station whose connector 1 is an EVSE of the default location."""

    station: RawStation
    location_id: str
    evse_uid: str


@asynccontextmanager
async def wired_station(node: Node, station_id: str = STATION) -> AsyncIterator[Wired]:
    async with node.connect(station_id) as station:
        assert (await station.boot())["status"] == "Accepted"
        await station.result(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        )
        evse = await node.evse(station_id, 1)
        yield Wired(station, evse.location_id, evse.uid)


async def post_command(
    node: Node, emsp: Emsp, command: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """POST a command as the eMSP; the CommandResponse (if any) is checked with ocpi-types."""
    status, envelope, _ = await emsp.peer.call(
        "POST", cpo_url(node.runtime, f"commands/{command}"), body=body
    )
    if "data" in envelope:
        check("CommandResponse", envelope["data"])
    return status, envelope


async def accepted(node: Node, emsp: Emsp, command: str, body: dict[str, Any]) -> None:
    status, envelope = await post_command(node, emsp, command, body)
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    assert envelope["data"] == {"result": "ACCEPTED", "timeout": 60}


async def answer_call(
    station: RawStation, action: str, answer: dict[str, Any] | None
) -> dict[str, Any]:
    """Receive the node's next CALL, check its action, answer it; return its payload."""
    call = await station.next_call()
    assert call[2] == action, call
    if answer is not None:
        await station.reply(call[1], answer)
    return call[3]


async def nothing_arrives(station: RawStation) -> None:
    try:
        frame = await station.receive(timeout=QUIET)
    except TimeoutError:
        return
    pytest.fail(f"the station received {frame}")


async def queued_result(node: Node, url: str) -> dict[str, Any]:
    """The body queued for ``url`` (an ``OcpiPush`` callback), waiting for it (bounded)."""

    async def pushes() -> list[OcpiPush]:
        rows = await node.rows(OcpiPush, OcpiPush.kind == "callback", order_by=OcpiPush.id)
        return [row for row in rows if row.payload["url"] == url]

    found = await node.eventually(pushes, lambda rows: len(rows) > 0)
    assert len(found) == 1
    return dict(found[0].payload["body"])


async def command_row(node: Node, url: str) -> OcpiCommand:
    return await node.one(OcpiCommand, OcpiCommand.response_url == url)


def start_body(emsp: Emsp, wired: Wired, token: dict[str, Any] = RFID) -> dict[str, Any]:
    return {
        "response_url": emsp.peer.callback_url(),
        "token": token,
        "location_id": wired.location_id,
        "evse_uid": wired.evse_uid,
        "connector_id": "1",
        "authorization_reference": "AUTH-REF-0001",
    }


async def started_session(
    node: Node, emsp: Emsp, wired: Wired, token: dict[str, Any] = RFID
) -> Session:
    """Start a session by command, as a driver would get one: START_SESSION, then plug in."""
    body = start_body(emsp, wired, token)
    await accepted(node, emsp, "START_SESSION", body)
    sent = await answer_call(wired.station, "RemoteStartTransaction", {"status": "Accepted"})
    assert await queued_result(node, body["response_url"]) == {"result": "ACCEPTED"}
    answer = await wired.station.result(
        "StartTransaction",
        {"connectorId": 1, "idTag": sent["idTag"], "meterStart": 1000, "timestamp": iso(utcnow())},
    )
    assert answer["idTagInfo"]["status"] == "Accepted"
    return await node.session(answer["transactionId"])


# START_SESSION


async def test_start_session_sends_remote_start_and_the_answer_becomes_the_result(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        body = start_body(tnm, wired)
        await accepted(open_node, tnm, "START_SESSION", body)
        sent = await answer_call(wired.station, "RemoteStartTransaction", {"status": "Accepted"})
        result = await queued_result(open_node, body["response_url"])

    assert sent == {"connectorId": 1, "idTag": "12345678905880"}
    check("CommandResult", result)
    assert result == {"result": "ACCEPTED"}
    command = await command_row(open_node, body["response_url"])
    assert (command.command, command.state, command.result) == ("START_SESSION", "DONE", "ACCEPTED")
    assert (command.partner_id, command.station_id) == (tnm.partner_id, STATION)
    assert command.id_tag == "12345678905880"
    assert command.request == body
    [entry] = await open_node.events(STATION, "command")
    assert entry.summary.startswith("START_SESSION by OCPI partner")


async def test_the_stations_start_with_the_sent_id_tag_is_an_active_command_session(
    open_node: Node, tnm: Emsp
) -> None:
    """The token was never pushed to us: the command is what authorizes it (CHECKLIST 7.4)."""
    async with wired_station(open_node) as wired:
        session = await started_session(open_node, tnm, wired)

    assert session.status == "ACTIVE"
    assert session.auth_method == "COMMAND"
    assert session.authorization_reference == "AUTH-REF-0001"
    assert session.partner_id == tnm.partner_id
    assert session.cdr_token == {
        key: RFID[key] for key in ("country_code", "party_id", "uid", "type", "contract_id")
    }


async def test_a_uid_longer_than_an_ocpp_id_tag_reaches_the_station_as_a_stable_alias(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        tags = []
        for _ in range(2):
            body = start_body(tnm, wired, APP_USER)
            await accepted(open_node, tnm, "START_SESSION", body)
            sent = await answer_call(
                wired.station, "RemoteStartTransaction", {"status": "Rejected"}
            )
            assert await queued_result(open_node, body["response_url"]) == {"result": "REJECTED"}
            tags.append(sent["idTag"])

    assert len(APP_USER["uid"]) == 36
    assert tags[0] == tags[1]
    assert 1 <= len(tags[0]) <= 20
    assert (await command_row(open_node, body["response_url"])).id_tag == tags[0]


async def test_start_session_for_a_token_of_another_party_is_rejected(
    open_node: Node, tnm: Emsp
) -> None:
    """CHECKLIST 7.4: an eMSP commands only with its own tokens."""
    foreign = {**RFID, "party_id": "OTH"}
    async with wired_station(open_node) as wired:
        status, envelope = await post_command(
            open_node, tnm, "START_SESSION", start_body(tnm, wired, foreign)
        )
        await nothing_arrives(wired.station)

    assert (status, envelope["status_code"]) == (200, 1000)
    assert envelope["data"]["result"] == "REJECTED"
    assert await open_node.rows(OcpiCommand) == []


async def test_unknown_location_is_2003_rejected_and_nothing_is_sent(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        for body in (
            {**start_body(tnm, wired), "location_id": "NO-SUCH-LOCATION"},
            {**start_body(tnm, wired), "evse_uid": "NO-SUCH-EVSE"},
            {**start_body(tnm, wired), "connector_id": "9"},
        ):
            status, envelope = await post_command(open_node, tnm, "START_SESSION", body)
            assert (status, envelope["status_code"]) == (200, 2003), envelope
            assert envelope["data"]["result"] == "REJECTED"
            assert envelope["data"]["timeout"] == 60
        await nothing_arrives(wired.station)

    assert await open_node.rows(OcpiCommand) == []


async def test_a_station_that_is_offline_is_rejected(open_node: Node, tnm: Emsp) -> None:
    async with wired_station(open_node) as wired:
        body = start_body(tnm, wired)

    async def connection() -> object:
        return open_node.runtime.gateway.connection_state(STATION)

    await open_node.eventually(connection, lambda state: state is None)

    status, envelope = await post_command(open_node, tnm, "START_SESSION", body)

    assert (status, envelope["status_code"]) == (200, 1000)
    assert envelope["data"]["result"] == "REJECTED"
    assert "offline" in envelope["data"]["message"][0]["text"]
    assert await open_node.rows(OcpiCommand) == []


async def test_a_station_that_never_answers_gives_timeout(
    start_node: NodeStarter,
) -> None:
    node = await start_node(
        station_admission=AdmissionPolicy.OPEN, command_timeout=QUIET, ocpi_command_timeout=2.5
    )
    async with registered(node, "TNM") as emsp, wired_station(node) as wired:
        body = start_body(emsp, wired)
        _, envelope = await post_command(node, emsp, "START_SESSION", body)
        assert envelope["data"] == {"result": "ACCEPTED", "timeout": 3}
        call = await wired.station.next_call()
        result = await queued_result(node, body["response_url"])
        # A late answer changes nothing: the eMSP was told TIMEOUT.
        await wired.station.reply(call[1], {"status": "Accepted"})
        await nothing_arrives(wired.station)
        # ... but the driver plugs in: the command still authorizes the session (FIELD-NOTES 15).
        answer = await wired.station.result(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": call[3]["idTag"],
                "meterStart": 10,
                "timestamp": iso(utcnow()),
            },
        )
        assert answer["idTagInfo"]["status"] == "Accepted"
        session = await node.session(answer["transactionId"])
        assert (session.auth_method, session.partner_id) == ("COMMAND", emsp.partner_id)

    check("CommandResult", result)
    assert result["result"] == "TIMEOUT"
    command = await command_row(node, body["response_url"])
    assert (command.state, command.result) == ("TIMEOUT", "TIMEOUT")
    assert len(await node.rows(OcpiPush, OcpiPush.kind == "callback")) == 1


# STOP_SESSION


async def test_stop_session_sends_remote_stop_with_the_transaction_id(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        session = await started_session(open_node, tnm, wired)
        body = {"response_url": tnm.peer.callback_url(), "session_id": session.id}
        await accepted(open_node, tnm, "STOP_SESSION", body)
        sent = await answer_call(wired.station, "RemoteStopTransaction", {"status": "Accepted"})
        result = await queued_result(open_node, body["response_url"])

    assert sent == {"transactionId": int(session.transaction_id or "")}
    check("CommandResult", result)
    assert result == {"result": "ACCEPTED"}


async def test_stop_session_of_another_partner_is_rejected_and_unknown_is_unknown_session(
    open_node: Node, tnm: Emsp
) -> None:
    async with (
        wired_station(open_node) as wired,
        registered(open_node, "OTH") as other,
    ):
        session = await started_session(open_node, tnm, wired)
        theirs = {"response_url": other.peer.callback_url(), "session_id": session.id}
        _, foreign = await post_command(open_node, other, "STOP_SESSION", theirs)
        unknown = {"response_url": tnm.peer.callback_url(), "session_id": "NO-SUCH-SESSION"}
        _, missing = await post_command(open_node, tnm, "STOP_SESSION", unknown)
        await nothing_arrives(wired.station)

    assert (foreign["status_code"], foreign["data"]["result"]) == (1000, "REJECTED")
    assert (missing["status_code"], missing["data"]["result"]) == (1000, "UNKNOWN_SESSION")
    assert [c.command for c in await open_node.rows(OcpiCommand)] == ["START_SESSION"]


# RESERVE_NOW and CANCEL_RESERVATION


def reserve_body(
    emsp: Emsp, wired: Wired, reservation_id: str, minutes: int = 30
) -> dict[str, Any]:
    return {
        "response_url": emsp.peer.callback_url(),
        "token": RFID,
        "expiry_date": format_datetime(
            utcnow().replace(microsecond=0) + timedelta(minutes=minutes)
        ),
        "reservation_id": reservation_id,
        "location_id": wired.location_id,
        "evse_uid": wired.evse_uid,
        "authorization_reference": "RES-REF-1",
    }


async def test_reserve_now_opens_a_reservation_session_and_cancel_completes_it(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        reserve = reserve_body(tnm, wired, "res-0001")
        await accepted(open_node, tnm, "RESERVE_NOW", reserve)
        sent = await answer_call(wired.station, "ReserveNow", {"status": "Accepted"})
        reserved = await queued_result(open_node, reserve["response_url"])
        [session] = await open_node.sessions(STATION)

        cancel = {"response_url": tnm.peer.callback_url(), "reservation_id": "RES-0001"}
        await accepted(open_node, tnm, "CANCEL_RESERVATION", cancel)
        cancelled = await answer_call(wired.station, "CancelReservation", {"status": "Accepted"})
        result = await queued_result(open_node, cancel["response_url"])

    [reservation] = await open_node.rows(Reservation)
    # The eMSP's id is never sent to a station: ours is (CHECKLIST 7.4).
    assert sent == {
        "connectorId": 1,
        "expiryDate": sent["expiryDate"],
        "idTag": "12345678905880",
        "parentIdTag": "DF000-2001-8999",
        "reservationId": reservation.id,
    }
    assert format_datetime(parse_iso(sent["expiryDate"])) == reserve["expiry_date"]
    assert cancelled == {"reservationId": reservation.id}
    for body in (reserved, result):
        check("CommandResult", body)
        assert body == {"result": "ACCEPTED"}
    assert (reservation.external_id, reservation.partner_id) == ("res-0001", tnm.partner_id)
    assert reservation.status == "CANCELLED"
    assert (session.status, session.reservation_id) == ("RESERVATION", reservation.id)
    assert (session.auth_method, session.authorization_reference) == ("COMMAND", "RES-REF-1")
    assert session.partner_id == tnm.partner_id
    [ended] = await open_node.sessions(STATION)
    assert (ended.id, ended.status) == (session.id, "COMPLETED")


async def test_the_same_reservation_id_at_the_same_location_replaces_the_reservation(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        first = reserve_body(tnm, wired, "RES-2", minutes=20)
        await accepted(open_node, tnm, "RESERVE_NOW", first)
        sent_first = await answer_call(wired.station, "ReserveNow", {"status": "Accepted"})
        await queued_result(open_node, first["response_url"])
        second = reserve_body(tnm, wired, "RES-2", minutes=45)
        await accepted(open_node, tnm, "RESERVE_NOW", second)
        sent_second = await answer_call(wired.station, "ReserveNow", {"status": "Accepted"})
        assert await queued_result(open_node, second["response_url"]) == {"result": "ACCEPTED"}

    assert sent_second["reservationId"] == sent_first["reservationId"]
    [reservation] = await open_node.rows(Reservation)
    assert format_datetime(reservation.expiry_date) == second["expiry_date"]
    assert len(await open_node.sessions(STATION)) == 1


@pytest.mark.parametrize(
    ("answer", "result"),
    [("Occupied", "EVSE_OCCUPIED"), ("Faulted", "EVSE_INOPERATIVE"), ("Rejected", "REJECTED")],
)
async def test_a_reservation_the_station_refuses_opens_no_session(
    open_node: Node, tnm: Emsp, answer: str, result: str
) -> None:
    async with wired_station(open_node) as wired:
        body = reserve_body(tnm, wired, "RES-3")
        await accepted(open_node, tnm, "RESERVE_NOW", body)
        await answer_call(wired.station, "ReserveNow", {"status": answer})
        queued = await queued_result(open_node, body["response_url"])

    check("CommandResult", queued)
    assert queued == {"result": result}
    [reservation] = await open_node.rows(Reservation)
    assert reservation.status == "REJECTED"
    assert await open_node.sessions(STATION) == []


async def test_a_partner_cannot_cancel_another_partners_reservation(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired, registered(open_node, "OTH") as other:
        reserve = reserve_body(tnm, wired, "RES-4")
        await accepted(open_node, tnm, "RESERVE_NOW", reserve)
        await answer_call(wired.station, "ReserveNow", {"status": "Accepted"})
        await queued_result(open_node, reserve["response_url"])

        cancel = {"response_url": other.peer.callback_url(), "reservation_id": "RES-4"}
        await accepted(open_node, other, "CANCEL_RESERVATION", cancel)
        result = await queued_result(open_node, cancel["response_url"])
        await nothing_arrives(wired.station)

    check("CommandResult", result)
    assert result["result"] == "UNKNOWN_RESERVATION"
    [reservation] = await open_node.rows(Reservation)
    assert reservation.status == "ACCEPTED"
    [session] = await open_node.sessions(STATION)
    assert session.status == "RESERVATION"


async def test_a_reservation_that_expires_unused_completes_its_session(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        body = reserve_body(tnm, wired, "RES-5", minutes=10)
        await accepted(open_node, tnm, "RESERVE_NOW", body)
        await answer_call(wired.station, "ReserveNow", {"status": "Accepted"})
        await queued_result(open_node, body["response_url"])
    [reservation] = await open_node.rows(Reservation)

    async with open_node.runtime.uow() as uow:
        early = await expire_reservations(uow, now=reservation.expiry_date)
        late = await expire_reservations(uow, now=reservation.expiry_date + timedelta(seconds=1))
        await uow.commit()

    assert (early, late) == (0, 1)
    [session] = await open_node.sessions(STATION)
    assert (session.status, session.end_date_time) == ("COMPLETED", reservation.expiry_date)
    assert EXPIRED in session.flags
    [expired] = await open_node.rows(Reservation)
    assert expired.status == "EXPIRED"


# UNLOCK_CONNECTOR


@pytest.mark.parametrize(
    ("answer", "result"),
    [("Unlocked", "ACCEPTED"), ("UnlockFailed", "FAILED"), ("NotSupported", "NOT_SUPPORTED")],
)
async def test_unlock_connector_sends_unlock_and_maps_the_answer(
    open_node: Node, tnm: Emsp, answer: str, result: str
) -> None:
    async with wired_station(open_node) as wired:
        body = {
            "response_url": tnm.peer.callback_url(),
            "location_id": wired.location_id,
            "evse_uid": wired.evse_uid,
            "connector_id": "1",
        }
        await accepted(open_node, tnm, "UNLOCK_CONNECTOR", body)
        sent = await answer_call(wired.station, "UnlockConnector", {"status": answer})
        queued = await queued_result(open_node, body["response_url"])

    assert sent == {"connectorId": 1}
    check("CommandResult", queued)
    assert queued == {"result": result}


# Charging profiles


async def call_profiles(
    node: Node, emsp: Emsp, method: str, session_id: str, *, query: str = "", body: Any = None
) -> dict[str, Any]:
    url = cpo_url(node.runtime, f"chargingprofiles/{session_id}") + query
    status, envelope, _ = await emsp.peer.call(method, url, body=body)
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    check("ChargingProfileResponse", envelope["data"])
    return dict(envelope["data"])


async def test_charging_profile_put_get_delete_round_trip_to_the_station(
    open_node: Node, tnm: Emsp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three requests in a row: no TOO_OFTEN here (test_ocpi_charging_profile_push.py).
    monkeypatch.setattr(remote_control, "PROFILE_REQUEST_INTERVAL", 0.0)
    async with wired_station(open_node) as wired:
        session = await started_session(open_node, tnm, wired)
        transaction_id = int(session.transaction_id or "")
        put_url = tnm.peer.callback_url()
        profile = {
            "charging_rate_unit": "W",
            "min_charging_rate": 1400.0,
            "charging_profile_period": [
                {"start_period": 0, "limit": 11000.0},
                {"start_period": 1800, "limit": 7400.5},
            ],
        }
        answer = await call_profiles(
            open_node,
            tnm,
            "PUT",
            session.id,
            body={"charging_profile": profile, "response_url": put_url},
        )
        assert answer == {"result": "ACCEPTED", "timeout": 60}
        set_sent = await answer_call(wired.station, "SetChargingProfile", {"status": "Accepted"})
        set_result = await queued_result(open_node, put_url)

        get_url = tnm.peer.callback_url()
        await call_profiles(
            open_node, tnm, "GET", session.id, query=f"?duration=900&response_url={get_url}"
        )
        get_sent = await answer_call(
            wired.station,
            "GetCompositeSchedule",
            {
                "status": "Accepted",
                "connectorId": 1,
                "scheduleStart": "2025-03-01T10:00:00.000Z",
                "chargingSchedule": {
                    "duration": 900,
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000.0}],
                },
            },
        )
        get_result = await queued_result(open_node, get_url)

        delete_url = tnm.peer.callback_url()
        await call_profiles(
            open_node, tnm, "DELETE", session.id, query=f"?response_url={delete_url}"
        )
        delete_sent = await answer_call(
            wired.station, "ClearChargingProfile", {"status": "Accepted"}
        )
        delete_result = await queued_result(open_node, delete_url)

    assert set_sent == {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": transaction_id,
            "transactionId": transaction_id,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "minChargingRate": 1400.0,
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 11000.0},
                    {"startPeriod": 1800, "limit": 7400.5},
                ],
            },
        },
    }
    check("ChargingProfileResult", set_result)
    assert set_result == {"result": "ACCEPTED"}
    assert get_sent == {"connectorId": 1, "duration": 900}
    check("ActiveChargingProfileResult", get_result)
    assert get_result == {
        "result": "ACCEPTED",
        "profile": {
            "start_date_time": "2025-03-01T10:00:00Z",
            "charging_profile": {
                "charging_rate_unit": "W",
                "duration": 900,
                "start_date_time": "2025-03-01T10:00:00Z",
                "charging_profile_period": [{"start_period": 0, "limit": 11000.0}],
            },
        },
    }
    assert delete_sent == {"id": transaction_id}
    check("ClearProfileResult", delete_result)
    assert delete_result == {"result": "ACCEPTED"}


async def test_active_profile_without_limits_is_the_evses_full_power(
    open_node: Node, tnm: Emsp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OCPI 8: with no limit active, the profile reflects the EVSE's maximum capacity."""
    monkeypatch.setattr(remote_control, "PROFILE_REQUEST_INTERVAL", 0.0)  # two GETs in a row
    async with wired_station(open_node) as wired:
        session = await started_session(open_node, tnm, wired)
        url, refused_url = tnm.peer.callback_url(), tnm.peer.callback_url()
        await call_profiles(
            open_node, tnm, "GET", session.id, query=f"?duration=600&response_url={url}"
        )
        await answer_call(wired.station, "GetCompositeSchedule", {"status": "Accepted"})
        result = await queued_result(open_node, url)
        await call_profiles(
            open_node, tnm, "GET", session.id, query=f"?duration=600&response_url={refused_url}"
        )
        await answer_call(wired.station, "GetCompositeSchedule", {"status": "Rejected"})
        refused = await queued_result(open_node, refused_url)

    [evse] = await open_node.evses(STATION)
    check("ActiveChargingProfileResult", result)
    assert result["result"] == "ACCEPTED"
    assert result["profile"]["charging_profile"] == {
        "charging_rate_unit": "W",
        "duration": 600,
        "charging_profile_period": [
            {"start_period": 0, "limit": float(evse.connectors[0].max_electric_power or 0)}
        ],
    }
    check("ActiveChargingProfileResult", refused)
    assert refused == {"result": "REJECTED"}


async def test_clearing_a_profile_the_station_does_not_know_is_unknown(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        session = await started_session(open_node, tnm, wired)
        url = tnm.peer.callback_url()
        await call_profiles(open_node, tnm, "DELETE", session.id, query=f"?response_url={url}")
        await answer_call(wired.station, "ClearChargingProfile", {"status": "Unknown"})
        result = await queued_result(open_node, url)

    check("ClearProfileResult", result)
    assert result == {"result": "UNKNOWN"}


async def test_charging_profiles_of_unknown_or_foreign_sessions_are_refused(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired, registered(open_node, "OTH") as other:
        session = await started_session(open_node, tnm, wired)
        url = other.peer.callback_url()
        foreign = await call_profiles(
            open_node, other, "DELETE", session.id, query=f"?response_url={url}"
        )
        unknown = await call_profiles(
            open_node, tnm, "DELETE", "NO-SUCH-SESSION", query=f"?response_url={url}"
        )
        await nothing_arrives(wired.station)

    assert foreign["result"] == "REJECTED"
    assert unknown["result"] == "UNKNOWN_SESSION"


# Delivery (by the pusher)


async def test_results_reach_the_emsp(open_node: Node, tnm: Emsp) -> None:
    async with wired_station(open_node) as wired:
        body = {
            "response_url": tnm.peer.callback_url("unlock-1"),
            "location_id": wired.location_id,
            "evse_uid": wired.evse_uid,
            "connector_id": "1",
        }
        await accepted(open_node, tnm, "UNLOCK_CONNECTOR", body)
        await answer_call(wired.station, "UnlockConnector", {"status": "Unlocked"})
        await tnm.peer.wait_for(lambda: tnm.peer.callbacks, timeout=STEP)

    [callback] = tnm.peer.callbacks
    assert callback.method == "POST"
    assert callback.path == "/callbacks/unlock-1"
    check("CommandResult", callback.body)
    assert callback.body == {"result": "ACCEPTED"}
    assert tnm.peer.problems == []
