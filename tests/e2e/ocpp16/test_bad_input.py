"""End to end, OCPP 1.6: malformed and unexpected input through a whole running node.

Raw text frames over a real websocket to a ``cpms.runtime.Runtime``. Covered: a frame that is
not JSON (CALLERROR with unique id "-1"), an unknown action (NotImplemented), an action only
the CSMS may send (NotSupported), each class of schema violation with its 1.6 error code, and
leniency (FIELD-NOTES 12): a lenient station's ``errorCode: "Error"`` is accepted and logged
as tolerated, once per connection, where a strict station gets PropertyConstraintViolation.
After every bad message the connection stays open and a Heartbeat still works, and nothing a
refused message carried was stored.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e.ocpp16.node import Node
from raw_station import RawStation


async def still_talking(station: RawStation) -> None:
    """The connection survived: a Heartbeat is answered."""
    answer = await station.result("Heartbeat", {})
    assert isinstance(answer["currentTime"], str)


def assert_call_error(frame: list[Any], unique_id: str, code: str) -> None:
    assert frame[0] == 4, frame
    assert frame[1] == unique_id
    assert frame[2] == code, frame
    assert isinstance(frame[3], str)
    assert isinstance(frame[4], dict)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("this is not json", id="not-json"),
        pytest.param('[2, "x1", "Heartbeat", {}', id="truncated-json"),
        pytest.param('{"Heartbeat": {}}', id="an-object-not-an-array"),
    ],
)
async def test_a_frame_that_is_not_an_rpc_array_gets_formation_violation(
    open_node: Node, text: str
) -> None:
    async with open_node.connect("BAD-J") as station:
        await station.boot()
        await station.send_text(text)
        frame = await station.receive()
        assert_call_error(frame, "-1", "FormationViolation")
        await still_talking(station)


async def test_an_unknown_action_gets_not_implemented(open_node: Node) -> None:
    async with open_node.connect("BAD-A") as station:
        await station.boot()
        frame = await station.call("MakeCoffee", {"sugar": 2}, unique_id="coffee-1")
        assert_call_error(frame, "coffee-1", "NotImplemented")
        await still_talking(station)


async def test_an_action_only_the_csms_sends_gets_not_supported(open_node: Node) -> None:
    async with open_node.connect("BAD-R") as station:
        await station.boot()
        frame = await station.call("Reset", {"type": "Hard"}, unique_id="reset-1")
        assert_call_error(frame, "reset-1", "NotSupported")
        await still_talking(station)
    assert (await open_node.station("BAD-R")).boot_status == "Accepted"


SCHEMA_VIOLATIONS = [
    pytest.param(
        "StatusNotification",
        {"connectorId": 1, "status": "Available"},
        "OccurenceConstraintViolation",  # sic: OCPP-J 1.6's spelling
        id="required-property-missing",
    ),
    pytest.param(
        "StatusNotification",
        {"connectorId": "one", "status": "Available", "errorCode": "NoError"},
        "TypeConstraintViolation",
        id="wrong-type",
    ),
    pytest.param(
        "StatusNotification",
        {"connectorId": 1, "status": "Sleeping", "errorCode": "NoError"},
        "PropertyConstraintViolation",
        id="not-in-enum",
    ),
    pytest.param(
        "StatusNotification",
        {"connectorId": 1, "status": "Available", "errorCode": "NoError", "info": "x" * 51},
        "PropertyConstraintViolation",
        id="too-long",
    ),
    pytest.param(
        "StatusNotification",
        {"connectorId": 1, "status": "Available", "errorCode": "NoError", "mood": "happy"},
        "FormationViolation",
        id="unexpected-property",
    ),
]


@pytest.mark.parametrize(("action", "payload", "code"), SCHEMA_VIOLATIONS)
async def test_a_schema_violation_gets_its_error_code_and_changes_nothing(
    open_node: Node, action: str, payload: dict[str, Any], code: str
) -> None:
    async with open_node.connect("BAD-S") as station:
        await station.boot()
        frame = await station.call(action, payload, unique_id="bad-1")
        assert_call_error(frame, "bad-1", code)
        await still_talking(station)
    assert await open_node.evses("BAD-S") == []


async def test_a_schema_violation_in_a_start_opens_no_session(open_node: Node) -> None:
    async with open_node.connect("BAD-T") as station:
        await station.boot()
        frame = await station.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "X" * 21, "meterStart": 0, "timestamp": "2024-01-01T0"},
            unique_id="start-1",
        )
        assert_call_error(frame, "start-1", "PropertyConstraintViolation")
        await still_talking(station)
    assert await open_node.sessions("BAD-T") == []


async def test_an_unreadable_timestamp_of_a_strict_station_is_refused(open_node: Node) -> None:
    async with open_node.connect("BAD-TS") as station:
        await station.boot()
        frame = await station.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "CARD", "meterStart": 0, "timestamp": "yesterday noon"},
            unique_id="start-2",
        )
        assert_call_error(frame, "start-2", "PropertyConstraintViolation")
        await still_talking(station)
    assert await open_node.sessions("BAD-TS") == []


ERROR_STATUS = {"connectorId": 1, "status": "Faulted", "errorCode": "Error"}
"""What real firmware sends: ``Error`` is no 1.6 ChargePointErrorCode."""


async def test_a_lenient_station_gets_error_code_error_tolerated(known_node: Node) -> None:
    await known_node.create_station("LENIENT-1", lenient=True)
    async with known_node.connect("LENIENT-1") as station:
        await station.boot()
        assert await station.result("StatusNotification", ERROR_STATUS) == {}
        await still_talking(station)
    assert (await known_node.evse("LENIENT-1", 1)).status == "OUTOFORDER"
    (fault,) = await known_node.events("LENIENT-1", "fault")
    assert fault.details is not None
    assert fault.details["error_code"] == "Error"


async def test_what_leniency_tolerated_is_logged_once_per_connection(known_node: Node) -> None:
    await known_node.create_station("LENIENT-2", lenient=True)
    async with known_node.connect("LENIENT-2") as station:
        await station.boot()
        assert await station.result("StatusNotification", ERROR_STATUS) == {}
        assert await station.result("StatusNotification", ERROR_STATUS) == {}
    tolerated = await known_node.events("LENIENT-2", "tolerated")
    assert len(tolerated) == 1  # once per connection, not once per message
    assert tolerated[0].details is not None
    assert tolerated[0].details["action"] == "StatusNotification"
    assert [(v["path"], v["rule"]) for v in tolerated[0].details["violations"]] == [
        ("errorCode", "enum")
    ]


async def test_a_strict_station_gets_error_code_error_refused(known_node: Node) -> None:
    await known_node.create_station("STRICT-1")
    async with known_node.connect("STRICT-1") as station:
        await station.boot()
        frame = await station.call("StatusNotification", ERROR_STATUS, unique_id="err-1")
        assert_call_error(frame, "err-1", "PropertyConstraintViolation")
        await still_talking(station)
    assert await known_node.evses("STRICT-1") == []
    assert await known_node.events("STRICT-1", "tolerated") == []
    assert await known_node.events("STRICT-1", "fault") == []
