"""End to end, OCPP 2.0.1: what a station says about itself, and bad input, through a real node.

Raw OCPP-J frames over a real websocket (subprotocol ``ocpp2.0.1``) to a
``cpms.runtime.Runtime``; each test checks the answer frame (against the 2.0.1 response schema)
and the rows the node wrote. Covered: BootNotification (Accepted with the heartbeat interval and
what the station says about itself, Pending under pending admission), Heartbeat,
StatusNotification (each 2.0.1 connector status to its OCPI EVSE status, EVSEs by evseId),
Authorize (known, blocked and unknown tokens, unknown ones accepted when configured), and
malformed or unexpected input with the 2.0.1 CALLERROR codes: a frame that is not JSON
(RpcFrameworkError, unique id "-1"), each class of schema violation of a TransactionEvent, a
meter value or timestamp the schema lets through but no number or time can be read from, an
action only the CSMS sends (NotSupported) and an unknown one (NotImplemented). After each bad
message the connection still works and nothing it carried was stored.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from e2e.ocpp16.node import HEARTBEAT_INTERVAL, Node, NodeStarter, iso, parse_iso
from raw_station import RawStation

from cpms.admission import AdmissionPolicy
from cpms.model import MeterSample, TransactionEvent, utcnow
from ocpp_gateway.rpc import OcppVersion
from ocpp_gateway.validation import PayloadKind, violations

V201 = "ocpp2.0.1"
STATION = {"model": "M", "vendorName": "V"}
BOOT = {"reason": "PowerUp", "chargingStation": STATION}

# OCPP 2.0.1 ConnectorStatusEnumType -> OCPI 2.2.1 EVSE status, written out here on purpose (not
# read from ocpp_gateway.status_mapping): OCPI's status says whether a driver can use the EVSE.
OCPI_STATUS_OF = {
    "Available": "AVAILABLE",
    "Occupied": "CHARGING",
    "Reserved": "RESERVED",
    "Unavailable": "INOPERATIVE",
    "Faulted": "OUTOFORDER",
}


def assert_valid_answer(action: str, payload: dict[str, Any]) -> None:
    """The answer breaks nothing in the 2.0.1 response schema of ``action``."""
    assert violations(OcppVersion.V201, action, payload, PayloadKind.RESPONSE) == []


def status(evse: int, value: str, connector: int = 1) -> dict[str, Any]:
    """A 2.0.1 StatusNotificationRequest."""
    return {
        "timestamp": iso(utcnow()),
        "connectorStatus": value,
        "evseId": evse,
        "connectorId": connector,
    }


async def boot(station: RawStation, **station_fields: Any) -> dict[str, Any]:
    answer = await station.result(
        "BootNotification", {**BOOT, "chargingStation": {**STATION, **station_fields}}
    )
    assert_valid_answer("BootNotification", answer)
    return answer


async def still_talking(station: RawStation) -> None:
    """The connection survived: a Heartbeat is answered."""
    answer = await station.result("Heartbeat", {})
    assert isinstance(answer["currentTime"], str)


# BootNotification and Heartbeat --------------------------------------------------------------


async def test_boot_is_accepted_with_the_heartbeat_interval_and_keeps_what_the_station_says(
    open_node: Node,
) -> None:
    before = utcnow()
    async with open_node.connect("B201-1", version=V201) as station:
        answer = await boot(
            station,
            serialNumber="SN-0042",
            firmwareVersion="2.0.1-rc3",
            modem={"iccid": "8931000000000000042", "imsi": "204080000000042"},
        )
    assert answer["status"] == "Accepted"
    assert answer["interval"] == HEARTBEAT_INTERVAL
    assert before - timedelta(seconds=1) <= parse_iso(answer["currentTime"]) <= utcnow()
    row = await open_node.station("B201-1")
    assert (row.vendor, row.model) == ("V", "M")
    assert (row.serial_number, row.firmware_version) == ("SN-0042", "2.0.1-rc3")
    assert (row.iccid, row.imsi) == ("8931000000000000042", "204080000000042")
    assert row.boot_status == "Accepted"


async def test_boot_is_pending_until_an_unknown_station_is_approved(
    start_node: NodeStarter,
) -> None:
    node = await start_node(station_admission=AdmissionPolicy.PENDING)
    async with node.connect("W201-1", version=V201) as station:
        answer = await boot(station)
    assert answer["status"] == "Pending"
    assert answer["interval"] == HEARTBEAT_INTERVAL
    row = await node.station("W201-1")
    assert (row.approved, row.boot_status) == (False, "Pending")


async def test_heartbeat_answers_the_time_and_marks_the_station_seen(open_node: Node) -> None:
    async with open_node.connect("H201-1", version=V201) as station:
        await boot(station)
        booted = await open_node.station("H201-1")
        answer = await station.result("Heartbeat", {})
    assert_valid_answer("Heartbeat", answer)
    # last_seen_at is written in bulk every few seconds (cpms.liveness); write it now.
    await open_node.runtime.liveness_writer.flush()
    seen = (await open_node.station("H201-1")).last_seen_at
    assert booted.last_seen_at is not None
    assert seen is not None
    assert seen > booted.last_seen_at
    assert timedelta(0) <= seen - parse_iso(answer["currentTime"]) < timedelta(milliseconds=1)


# StatusNotification --------------------------------------------------------------------------


async def test_every_2_0_1_status_lands_as_its_ocpi_status_on_the_evse_it_names(
    open_node: Node,
) -> None:
    async with open_node.connect("S201-1", version=V201) as station:
        await boot(station)
        for ocpp_status, ocpi_status in OCPI_STATUS_OF.items():
            answer = await station.result("StatusNotification", status(1, ocpp_status))
            assert_valid_answer("StatusNotification", answer)
            assert (await open_node.evse("S201-1", 1)).status == ocpi_status, ocpp_status
            # Back to a different state, so each mapping is seen as a change.
            await station.result("StatusNotification", status(1, "Unavailable"))
            assert (await open_node.evse("S201-1", 1)).status == "INOPERATIVE"
        await station.result("StatusNotification", status(1, "Occupied"))
        await station.result("StatusNotification", status(3, "Faulted"))
    evses = await open_node.evses("S201-1")
    assert [(e.ocpp_evse_id, e.status) for e in evses] == [(1, "CHARGING"), (3, "OUTOFORDER")]


# Authorize -----------------------------------------------------------------------------------


async def test_authorize_answers_from_the_token_table(open_node: Node) -> None:
    await open_node.create_token("CARD-OK", group_id="FLEET-7")
    await open_node.create_token("CARD-OFF", valid=False)
    answers = {}
    async with open_node.connect("A201-1", version=V201) as station:
        await boot(station)
        for uid in ("CARD-OK", "CARD-OFF", "NOBODY"):
            answers[uid] = await station.result(
                "Authorize", {"idToken": {"idToken": uid, "type": "ISO14443"}}
            )
    for answer in answers.values():
        assert_valid_answer("Authorize", answer)
    assert {uid: a["idTokenInfo"]["status"] for uid, a in answers.items()} == {
        "CARD-OK": "Accepted",
        "CARD-OFF": "Blocked",
        "NOBODY": "Unknown",
    }


async def test_authorize_accepts_unknown_tokens_when_configured(start_node: NodeStarter) -> None:
    node = await start_node(station_admission=AdmissionPolicy.OPEN, accept_unknown_tokens=True)
    async with node.connect("A201-2", version=V201) as station:
        await boot(station)
        answer = await station.result(
            "Authorize", {"idToken": {"idToken": "NOBODY", "type": "ISO14443"}}
        )
    assert_valid_answer("Authorize", answer)
    assert answer["idTokenInfo"]["status"] == "Accepted"


# Bad input -----------------------------------------------------------------------------------

NOW = "2024-05-01T10:00:00Z"
GOOD_EVENT: dict[str, Any] = {
    "eventType": "Started",
    "timestamp": NOW,
    "triggerReason": "CablePluggedIn",
    "seqNo": 0,
    "transactionInfo": {"transactionId": "BAD-TX-1"},
    "evse": {"id": 1, "connectorId": 1},
}


def without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != key}


def call(unique_id: str, action: str, payload: Any) -> str:
    """A CALL frame's text."""
    return json.dumps([2, unique_id, action, payload])


def with_reading(timestamp: str, value: float) -> dict[str, Any]:
    """The good event with one meter value of ``value`` at ``timestamp``."""
    reading = {"timestamp": timestamp, "sampledValue": [{"value": value}]}
    return {**GOOD_EVENT, "meterValue": [reading]}


BAD_CALLS: list[tuple[str, str, str]] = [
    # (what is wrong, the frame's text, the CALLERROR code OCPP 2.0.1 wants)
    (
        "seqNo-missing",
        call("bad-1", "TransactionEvent", without(GOOD_EVENT, "seqNo")),
        "OccurrenceConstraintViolation",
    ),
    (
        "transactionId-missing",
        call("bad-2", "TransactionEvent", {**GOOD_EVENT, "transactionInfo": {}}),
        "OccurrenceConstraintViolation",
    ),
    (
        "seqNo-not-an-integer",
        call("bad-3", "TransactionEvent", {**GOOD_EVENT, "seqNo": "zero"}),
        "TypeConstraintViolation",
    ),
    (
        "eventType-not-in-enum",
        call("bad-4", "TransactionEvent", {**GOOD_EVENT, "eventType": "Paused"}),
        "PropertyConstraintViolation",
    ),
    (
        "transactionId-too-long",
        call(
            "bad-5",
            "TransactionEvent",
            {**GOOD_EVENT, "transactionInfo": {"transactionId": "T" * 37}},
        ),
        "PropertyConstraintViolation",
    ),
    (
        "unexpected-property",
        call("bad-6", "TransactionEvent", {**GOOD_EVENT, "mood": "happy"}),
        "FormatViolation",
    ),
    (
        "payload-not-an-object",
        call("bad-7", "TransactionEvent", [GOOD_EVENT]),
        "FormatViolation",
    ),
    (
        # Python's JSON reader takes NaN, and it passes "type": "number": no number to bill.
        "meter-value-NaN",
        call("bad-8", "TransactionEvent", with_reading(NOW, float("nan"))),
        "PropertyConstraintViolation",
    ),
    (
        # The schema does not check formats; a strict station's unreadable time is refused.
        "meter-value-timestamp-unreadable",
        call("bad-9", "TransactionEvent", with_reading("yesterday", 1)),
        "PropertyConstraintViolation",
    ),
    (
        "event-timestamp-unreadable",
        call("bad-10", "TransactionEvent", {**GOOD_EVENT, "timestamp": "noon"}),
        "PropertyConstraintViolation",
    ),
    (
        "an-action-only-the-CSMS-sends",
        call(
            "bad-11",
            "RequestStartTransaction",
            {"idToken": {"idToken": "CARD", "type": "ISO14443"}, "remoteStartId": 1},
        ),
        "NotSupported",
    ),
    (
        "an-unknown-action",
        call("bad-12", "MakeCoffee", {"sugar": 2}),
        "NotImplemented",
    ),
]
"""Bad CALLs, each answered with its own unique id."""

NOT_RPC = ["this is not json", '[2, "x1", "Heartbeat", {}', '{"Heartbeat": {}}']
"""Frames whose message id cannot be read: RpcFrameworkError, unique id "-1"."""


async def test_bad_input_gets_the_2_0_1_error_code_and_changes_nothing(open_node: Node) -> None:
    wrong: list[str] = []
    async with open_node.connect("BAD201", version=V201) as station:
        await boot(station)
        for text in NOT_RPC:
            await station.send_text(text)
            frame = await station.receive()
            if frame[:3] != [4, "-1", "RpcFrameworkError"]:
                wrong.append(f"{text!r}: {frame}")
            await still_talking(station)
        for name, text, code in BAD_CALLS:
            unique_id = json.loads(text)[1]
            await station.send_text(text)
            frame = await station.response_to(unique_id)
            if frame[0] != 4 or frame[2] != code:
                wrong.append(f"{name}: wanted {code}, got {frame}")
            elif not (isinstance(frame[3], str) and isinstance(frame[4], dict)):
                wrong.append(f"{name}: malformed CALLERROR {frame}")
            await still_talking(station)
    assert wrong == []
    assert await open_node.sessions("BAD201") == []
    assert await open_node.rows(TransactionEvent, TransactionEvent.station_id == "BAD201") == []
    assert await open_node.samples(MeterSample.station_id == "BAD201") == []
