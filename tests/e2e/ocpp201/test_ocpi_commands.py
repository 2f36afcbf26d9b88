"""End to end: OCPI commands and charging profiles from a real eMSP to a raw OCPP 2.0.1 station.

Path under test: the eMSP peer (``tests/ocpi_peer.py``) POSTs ``/ocpi/2.2.1/commands/...`` (or
calls ``chargingprofiles``) on a real node -> ``cpms.remote_control`` -> ``GatewayStationPort.act``
-> ``V201Actions`` -> a raw 2.0.1 station (plain JSON frames) -> its answer -> the
CommandResult (or profile result) the pusher POSTs to the request's ``response_url``.

The mirror of the core of ``tests/e2e/ocpp16/test_ocpi_commands.py`` for 2.0.1, on one station
of one node, one request after another: RESERVE_NOW, CANCEL_RESERVATION, UNLOCK_CONNECTOR,
START_SESSION, a charging profile PUT, GET and DELETE, STOP_SESSION, and an UNLOCK_CONNECTOR
the station never answers. Each must reach the station as the right 2.0.1 message with the
right arguments, and the result the peer receives must map the station's answer, 2.0.1
statuses included (CancelReservation Rejected is UNKNOWN_RESERVATION, UnlockConnector
OngoingAuthorizedTransaction REJECTED), the silence TIMEOUT. The session STOP_SESSION and
the profiles need comes from the station's TransactionEvent; how that event makes sessions
is tested with the 2.0.1 transactions, not here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
from cpms.model import Reservation, Session, utcnow
from ocpp_gateway.station_port import profile_id_of

from support import EXAMPLES

STATION = "OCPI-V201-1"
TRANSACTION = "0d2d6d1e-6f7b-4c61-9f3e-2b8a5c9e4f10"
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
COMMAND_TIMEOUT = STEP / 2
"""Seconds the node waits for the station: every answer here comes at once but the last."""
RFID = json.loads((EXAMPLES / "token_example_2_full_rfid.json").read_text())
"""An official Token example (DE/TNM): uid 12345678905880, group_id DF000-2001-8999."""
CENTRAL_RFID = {"idToken": "12345678905880", "type": "Central"}
CENTRAL_GROUP = {"idToken": "DF000-2001-8999", "type": "Central"}

# What each request became: (OCPI request, 2.0.1 message, station's status, OCPI result).
EXPECTED = [
    ("RESERVE_NOW", "ReserveNow", "Occupied", "EVSE_OCCUPIED"),
    ("RESERVE_NOW", "ReserveNow", "Accepted", "ACCEPTED"),
    ("CANCEL_RESERVATION", "CancelReservation", "Rejected", "UNKNOWN_RESERVATION"),
    ("CANCEL_RESERVATION", "CancelReservation", "Accepted", "ACCEPTED"),
    ("UNLOCK_CONNECTOR", "UnlockConnector", "OngoingAuthorizedTransaction", "REJECTED"),
    ("UNLOCK_CONNECTOR", "UnlockConnector", "Unlocked", "ACCEPTED"),
    ("START_SESSION", "RequestStartTransaction", "Accepted", "ACCEPTED"),
    ("PUT chargingprofiles", "SetChargingProfile", "Accepted", "ACCEPTED"),
    ("GET chargingprofiles", "GetCompositeSchedule", "Accepted", "ACCEPTED"),
    ("DELETE chargingprofiles", "ClearChargingProfile", "Unknown", "UNKNOWN"),
    ("STOP_SESSION", "RequestStopTransaction", "Accepted", "ACCEPTED"),
    ("UNLOCK_CONNECTOR", "UnlockConnector", None, "TIMEOUT"),
]


@dataclass
class Exchange:
    """Drives one eMSP and one station on one node; ``log`` is what each request became."""

    node: Node
    peer: EmspPeer
    station: RawStation
    log: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    async def command(
        self, command: str, body: dict[str, Any], action: str, status: str | None
    ) -> dict[str, Any]:
        """POST an OCPI command; the station answers ``status`` (None: never); return the CALL."""
        url = self.peer.callback_url(f"{len(self.log)}")
        _, envelope, _ = await self.peer.call(
            "POST",
            cpo_url(self.node.runtime, f"commands/{command}"),
            body={**body, "response_url": url},
        )
        assert envelope["status_code"] == 1000, envelope
        check("CommandResponse", envelope["data"])
        assert envelope["data"]["result"] == "ACCEPTED", envelope
        sent = await self._answer(action, status)
        result = await self._result(url)
        check("CommandResult", result)
        self.log.append((command, action, status, result["result"]))
        return sent

    async def profile(
        self, method: str, session_id: str, action: str, status: str, **extra: Any
    ) -> dict[str, Any]:
        """Call ``chargingprofiles`` as the eMSP; the station answers; return the CALL."""
        url = self.peer.callback_url(f"{len(self.log)}")
        query, body = f"?response_url={url}", None
        if method == "GET":
            query += f"&duration={extra.pop('duration')}"
        elif method == "PUT":
            query, body = "", {"charging_profile": extra.pop("profile"), "response_url": url}
        _, envelope, _ = await self.peer.call(
            method,
            cpo_url(self.node.runtime, f"chargingprofiles/{session_id}") + query,
            body=body,
        )
        assert envelope["status_code"] == 1000, envelope
        check("ChargingProfileResponse", envelope["data"])
        assert envelope["data"]["result"] == "ACCEPTED", envelope
        sent = await self._answer(action, status, **extra)
        result = await self._result(url)
        self.log.append((f"{method} chargingprofiles", action, status, result["result"]))
        return sent

    async def _answer(self, action: str, status: str | None, **answer: Any) -> dict[str, Any]:
        call = await self.station.next_call()
        assert call[2] == action, call
        if status is not None:
            await self.station.reply(call[1], {"status": status, **answer})
        return dict(call[3])

    async def _result(self, url: str) -> dict[str, Any]:
        """The body the pusher POSTed to ``url``, waiting for it (bounded)."""
        path = "/callbacks/" + url.rsplit("/", 1)[-1]

        def arrived() -> list[Any]:
            return [c for c in self.peer.callbacks if c.path == path]

        await self.peer.wait_for(arrived, timeout=STEP + COMMAND_TIMEOUT)
        [callback] = arrived()
        assert callback.method == "POST"
        self.results.append(callback.body)
        return dict(callback.body)


@dataclass
class Wired:
    """A booted 2.0.1 station whose EVSE 1 is an EVSE of the default location."""

    station: RawStation
    location_id: str
    evse_uid: str


async def wired_station(node: Node, station: RawStation) -> Wired:
    assert (await station.result("BootNotification", BOOT))["status"] == "Accepted"
    await station.result(
        "StatusNotification",
        {"timestamp": iso(utcnow()), "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    )
    evse = await node.evse(station.station_id, 1)
    return Wired(station, evse.location_id, evse.uid)


async def transaction_started(node: Node, station: RawStation, sent: dict[str, Any]) -> Session:
    """The station starts the transaction RequestStartTransaction asked for; its session."""
    await station.result(
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": iso(utcnow()),
            "triggerReason": "RemoteStart",
            "seqNo": 0,
            "transactionInfo": {
                "transactionId": TRANSACTION,
                "chargingState": "Charging",
                "remoteStartId": sent["remoteStartId"],
            },
            "idToken": sent["idToken"],
            "evse": {"id": 1, "connectorId": 1},
        },
    )
    return await node.one(Session, Session.transaction_id == TRANSACTION)


async def test_ocpi_requests_reach_a_2_0_1_station_and_its_answers_become_the_results(
    start_node: NodeStarter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The profile PUT, GET and DELETE come one after another: no TOO_OFTEN here.
    monkeypatch.setattr(remote_control, "PROFILE_REQUEST_INTERVAL", 0.0)
    node = await start_node(station_admission=AdmissionPolicy.OPEN, command_timeout=COMMAND_TIMEOUT)
    async with (
        EmspPeer(country_code="DE", party_id="TNM", name="TNM") as peer,
        node.connect(STATION, version="ocpp2.0.1") as station,
    ):
        await register_directly(node.runtime, peer, name="TNM")
        wired = await wired_station(node, station)
        drive = Exchange(node, peer, station)
        where = {"location_id": wired.location_id, "evse_uid": wired.evse_uid}
        expiry = format_datetime(utcnow().replace(microsecond=0) + timedelta(minutes=30))

        # Reservations: the 2.0.1 CancelReservation Rejected is "no such reservation".
        reserve = {"token": RFID, "expiry_date": expiry, **where}
        await drive.command(
            "RESERVE_NOW", {**reserve, "reservation_id": "RES-1"}, "ReserveNow", "Occupied"
        )
        reserved = await drive.command(
            "RESERVE_NOW", {**reserve, "reservation_id": "RES-2"}, "ReserveNow", "Accepted"
        )
        cancel = {"reservation_id": "RES-2"}
        not_known = await drive.command(
            "CANCEL_RESERVATION", cancel, "CancelReservation", "Rejected"
        )
        cancelled = await drive.command(
            "CANCEL_RESERVATION", cancel, "CancelReservation", "Accepted"
        )

        # Unlocking names the connector within the EVSE.
        unlock = {**where, "connector_id": "1"}
        unlocked = await drive.command(
            "UNLOCK_CONNECTOR", unlock, "UnlockConnector", "OngoingAuthorizedTransaction"
        )
        await drive.command("UNLOCK_CONNECTOR", unlock, "UnlockConnector", "Unlocked")

        # A session by command, then its charging profile, then its end.
        start = {"token": RFID, "connector_id": "1", "authorization_reference": "AUTH-1", **where}
        started = await drive.command("START_SESSION", start, "RequestStartTransaction", "Accepted")
        session = await transaction_started(node, station, started)
        profile = {
            "charging_rate_unit": "W",
            "min_charging_rate": 1400.0,
            "charging_profile_period": [
                {"start_period": 0, "limit": 11000.0},
                {"start_period": 1800, "limit": 7400.5},
            ],
        }
        set_sent = await drive.profile(
            "PUT", session.id, "SetChargingProfile", "Accepted", profile=profile
        )
        schedule = {
            "evseId": 1,
            "duration": 900,
            "scheduleStart": "2025-03-01T10:00:00.000Z",
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000.0, "numberPhases": 3}],
        }
        get_sent = await drive.profile(
            "GET", session.id, "GetCompositeSchedule", "Accepted", duration=900, schedule=schedule
        )
        get_result = drive.results[-1]
        delete_sent = await drive.profile("DELETE", session.id, "ClearChargingProfile", "Unknown")
        stopped = await drive.command(
            "STOP_SESSION", {"session_id": session.id}, "RequestStopTransaction", "Accepted"
        )

        # A station that never answers: TIMEOUT.
        await drive.command("UNLOCK_CONNECTOR", unlock, "UnlockConnector", None)

    assert drive.log == EXPECTED
    assert peer.problems == []
    reservation = await node.one(Reservation, Reservation.external_id == "RES-2")
    # The eMSP's reservation id is never sent to a station: ours is (CHECKLIST 7.4).
    assert reserved == {
        "id": reservation.id,
        "expiryDateTime": reserved["expiryDateTime"],
        "idToken": CENTRAL_RFID,
        "groupIdToken": CENTRAL_GROUP,
        "evseId": 1,
    }
    assert format_datetime(parse_iso(reserved["expiryDateTime"])) == expiry
    assert not_known == cancelled == {"reservationId": reservation.id}
    assert unlocked == {"evseId": 1, "connectorId": 1}
    assert started == {
        "idToken": CENTRAL_RFID,
        "remoteStartId": started["remoteStartId"],
        "evseId": 1,
    }
    assert 0 < started["remoteStartId"] < 2**31
    profile_id = profile_id_of(TRANSACTION)
    assert set_sent == {
        "evseId": 1,
        "chargingProfile": {
            "id": profile_id,
            "transactionId": TRANSACTION,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [
                {
                    "id": profile_id,
                    "chargingRateUnit": "W",
                    "minChargingRate": 1400.0,
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": 11000.0},
                        {"startPeriod": 1800, "limit": 7400.5},
                    ],
                }
            ],
        },
    }
    assert get_sent == {"duration": 900, "evseId": 1}
    check("ActiveChargingProfileResult", get_result)
    assert get_result["profile"] == {
        "start_date_time": "2025-03-01T10:00:00Z",
        "charging_profile": {
            "charging_rate_unit": "W",
            "duration": 900,
            "start_date_time": "2025-03-01T10:00:00Z",
            "charging_profile_period": [{"start_period": 0, "limit": 11000.0}],
        },
    }
    assert delete_sent == {"chargingProfileId": profile_id}
    assert stopped == {"transactionId": TRANSACTION}
