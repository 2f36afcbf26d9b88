"""Unit tests of ocpp_gateway.server.dispatch: the action table that answers incoming CALLs.

Covers the order of the checks (a handler must exist, then the payload must pass its OCPP
schema, then the handler answers), NotSupported versus NotImplemented, how a handler's failure
becomes a CALLERROR, and leniency: what it tolerates, and that each tolerance is reported once
per connection state through ``on_tolerated``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from ocpp_gateway.rpc import Call, CallError, CallResult, ErrorCode, OcppVersion, RpcError
from ocpp_gateway.server import CallContext, ConnectionState, Handler, dispatch
from ocpp_gateway.validation import Violation

RECEIVED_AT = datetime(2024, 1, 1, tzinfo=UTC)
CONTEXT = CallContext("CP1", OcppVersion.V16, RECEIVED_AT)

BOOT = {"chargePointVendor": "Vendor", "chargePointModel": "Model"}
LONG_SERIAL = "S" * 26
"""One character over the 25 the 1.6 schema allows for ``chargePointSerialNumber``."""
STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
METER_VALUES = {
    "connectorId": 1,
    "meterValue": [{"timestamp": "2024-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]}],
}

handled: list[tuple[str, dict[str, Any]]] = []
"""(action, payload) of every CALL a handler of this module was given; reset per test."""


@pytest.fixture(autouse=True)
def _fresh_record() -> None:
    handled.clear()


async def answer_heartbeat(context: CallContext, call: Call) -> Mapping[str, Any]:
    handled.append((call.action, call.payload))
    return {"currentTime": context.received_at.isoformat()}


async def accept_boot(context: CallContext, call: Call) -> Mapping[str, Any]:
    handled.append((call.action, call.payload))
    context.state.boot_status = "Accepted"
    return {"status": "Accepted", "currentTime": context.received_at.isoformat(), "interval": 300}


async def refuse_as_security_error(context: CallContext, call: Call) -> Mapping[str, Any]:
    handled.append((call.action, call.payload))
    raise RpcError(ErrorCode.SECURITY_ERROR, "not accepted yet")


async def crash(context: CallContext, call: Call) -> Mapping[str, Any]:
    handled.append((call.action, call.payload))
    raise KeyError("bug")


async def answer_with_a_list(context: CallContext, call: Call) -> Mapping[str, Any]:
    handled.append((call.action, call.payload))
    return ["not", "a", "mapping"]  # type: ignore[return-value]  # the bug under test


HANDLERS: dict[str, Handler] = {
    "Heartbeat": answer_heartbeat,
    "BootNotification": accept_boot,
    "Authorize": refuse_as_security_error,
    "StatusNotification": crash,
    "MeterValues": answer_with_a_list,
}


class ToleranceLog:
    """An ``on_tolerated`` callback that remembers what it was told."""

    def __init__(self, *, fails: bool = False) -> None:
        self.reports: list[tuple[str, str, list[Violation]]] = []
        self.fails = fails

    async def __call__(self, station_id: str, action: str, found: list[Violation]) -> None:
        self.reports.append((station_id, action, found))
        if self.fails:
            raise ConnectionError("database is down")


def lenient_context() -> CallContext:
    return CallContext("CP1", OcppVersion.V16, RECEIVED_AT, ConnectionState(lenient=True))


# Which answer


async def test_a_call_with_a_handler_gets_its_payload_as_callresult() -> None:
    reply = await dispatch(HANDLERS, CONTEXT, Call("u1", "Heartbeat", {}))
    assert reply == CallResult("u1", {"currentTime": "2024-01-01T00:00:00+00:00"})


async def test_an_action_ocpp_defines_without_handler_gets_not_supported() -> None:
    reply = await dispatch({}, CONTEXT, Call("u2", "BootNotification", BOOT))
    assert reply == CallError(
        "u2",
        ErrorCode.NOT_SUPPORTED,
        "BootNotification is not something a station sends to this server",
        {},
    )


async def test_an_action_only_the_csms_sends_gets_not_supported_from_a_station() -> None:
    reply = await dispatch(HANDLERS, CONTEXT, Call("u2", "Reset", {"type": "Hard"}))
    assert isinstance(reply, CallError)
    assert (reply.unique_id, reply.error_code) == ("u2", ErrorCode.NOT_SUPPORTED)


@pytest.mark.parametrize("version", list(OcppVersion))
async def test_an_action_ocpp_does_not_define_gets_not_implemented(version: OcppVersion) -> None:
    context = CallContext("CP1", version, RECEIVED_AT)
    reply = await dispatch(HANDLERS, context, Call("u2", "FlyToTheMoon", {}))
    assert reply == CallError("u2", ErrorCode.NOT_IMPLEMENTED, "unknown action FlyToTheMoon", {})


async def test_a_handler_for_an_action_its_version_lacks_is_never_called() -> None:
    # DiagnosticsStatusNotification is 1.6 only; a table mixing versions must not run it.
    context = CallContext("CP1", OcppVersion.V201, RECEIVED_AT)
    handlers: dict[str, Handler] = {"DiagnosticsStatusNotification": answer_heartbeat}
    call = Call("u2", "DiagnosticsStatusNotification", {"status": "Idle"})
    reply = await dispatch(handlers, context, call)
    assert isinstance(reply, CallError)
    assert (reply.unique_id, reply.error_code) == ("u2", ErrorCode.NOT_IMPLEMENTED)
    assert handled == []


async def test_a_handler_refusing_with_rpc_error_gets_that_callerror() -> None:
    reply = await dispatch(HANDLERS, CONTEXT, Call("u3", "Authorize", {"idTag": "TAG1"}))
    assert reply == CallError("u3", ErrorCode.SECURITY_ERROR, "not accepted yet", {})


async def test_a_crashing_handler_gets_internal_error_and_is_logged_with_the_station(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="ocpp_gateway"):
        reply = await dispatch(HANDLERS, CONTEXT, Call("u4", "StatusNotification", STATUS))
    assert reply == CallError("u4", ErrorCode.INTERNAL_ERROR, "internal error", {})
    assert handled == [("StatusNotification", STATUS)]
    assert "CP1" in caplog.text
    assert "StatusNotification" in caplog.text


async def test_a_handler_answering_something_other_than_a_mapping_gets_internal_error() -> None:
    reply = await dispatch(HANDLERS, CONTEXT, Call("u5", "MeterValues", METER_VALUES))
    assert isinstance(reply, CallError)
    assert (reply.unique_id, reply.error_code) == ("u5", ErrorCode.INTERNAL_ERROR)
    assert handled == [("MeterValues", METER_VALUES)]


async def test_a_handler_records_the_boot_answer_in_the_connection_state() -> None:
    state = ConnectionState()
    context = CallContext("CP1", OcppVersion.V16, RECEIVED_AT, state)
    reply = await dispatch(HANDLERS, context, Call("u6", "BootNotification", BOOT))
    assert isinstance(reply, CallResult)
    assert state.boot_status == "Accepted"


def test_each_context_without_a_state_gets_its_own() -> None:
    first = CallContext("CP1", OcppVersion.V16, RECEIVED_AT)
    second = CallContext("CP2", OcppVersion.V16, RECEIVED_AT)
    first.state.boot_status = "Accepted"
    assert second.state.boot_status is None


# The schema, before the handler


@pytest.mark.parametrize(
    ("version", "action", "payload", "code", "path", "rule"),
    [
        (OcppVersion.V16, "Authorize", {}, "OccurenceConstraintViolation", "idTag", "required"),
        (OcppVersion.V16, "Authorize", {"idTag": 5}, "TypeConstraintViolation", "idTag", "type"),
        (
            OcppVersion.V16,
            "Authorize",
            {"idTag": "TAG1", "colour": "red"},
            "FormationViolation",
            "colour",
            "additionalProperties",
        ),
        (
            OcppVersion.V16,
            "Authorize",
            {"idTag": "T" * 21},
            "PropertyConstraintViolation",
            "idTag",
            "maxLength",
        ),
        (
            OcppVersion.V201,
            "Authorize",
            {},
            "OccurrenceConstraintViolation",
            "idToken",
            "required",
        ),
        (
            OcppVersion.V201,
            "Authorize",
            {"idToken": "TAG1"},
            "TypeConstraintViolation",
            "idToken",
            "type",
        ),
        (
            OcppVersion.V201,
            "Authorize",
            {"idToken": {"idToken": "TAG1", "type": "ISO14443"}, "colour": "red"},
            "FormatViolation",
            "colour",
            "additionalProperties",
        ),
    ],
    ids=[
        "1.6 missing",
        "1.6 wrong type",
        "1.6 extra",
        "1.6 too long",
        "2.0.1 missing",
        "2.0.1 wrong type",
        "2.0.1 extra",
    ],
)
async def test_a_payload_breaking_its_schema_never_reaches_the_handler(
    version: OcppVersion, action: str, payload: dict[str, Any], code: str, path: str, rule: str
) -> None:
    context = CallContext("CP1", version, RECEIVED_AT)
    reply = await dispatch(HANDLERS, context, Call("u7", action, payload))
    assert isinstance(reply, CallError)
    assert (reply.unique_id, reply.error_code) == ("u7", code)
    assert reply.error_details == {"path": path, "rule": rule}
    assert handled == []


async def test_without_a_handler_the_payload_is_not_looked_at() -> None:
    reply = await dispatch({}, CONTEXT, Call("u8", "BootNotification", {"nonsense": True}))
    assert isinstance(reply, CallError)
    assert reply.error_code == ErrorCode.NOT_SUPPORTED


# Leniency


async def test_a_strict_station_gets_property_constraint_violation_for_an_over_long_serial() -> (
    None
):
    tolerated = ToleranceLog()
    call = Call("u9", "BootNotification", BOOT | {"chargePointSerialNumber": LONG_SERIAL})
    reply = await dispatch(HANDLERS, CONTEXT, call, tolerated)
    assert isinstance(reply, CallError)
    assert reply.error_code == ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert reply.error_details == {"path": "chargePointSerialNumber", "rule": "maxLength"}
    assert handled == []
    assert tolerated.reports == []


async def test_a_lenient_station_has_an_over_long_serial_tolerated_and_reported_once() -> None:
    tolerated = ToleranceLog()
    context = lenient_context()
    payload = BOOT | {"chargePointSerialNumber": LONG_SERIAL}
    first = await dispatch(HANDLERS, context, Call("u10", "BootNotification", payload), tolerated)
    second = await dispatch(HANDLERS, context, Call("u11", "BootNotification", payload), tolerated)

    assert isinstance(first, CallResult)
    assert isinstance(second, CallResult)
    assert handled == [("BootNotification", payload)] * 2  # the handler sees the value as sent
    assert len(tolerated.reports) == 1
    station_id, action, found = tolerated.reports[0]
    assert (station_id, action) == ("CP1", "BootNotification")
    assert [(v.path, v.rule) for v in found] == [("chargePointSerialNumber", "maxLength")]
    assert context.state.tolerated == {("BootNotification", "chargePointSerialNumber", "maxLength")}


async def test_a_new_tolerance_is_reported_even_after_an_old_one() -> None:
    tolerated = ToleranceLog()
    context = lenient_context()
    serial = BOOT | {"chargePointSerialNumber": LONG_SERIAL}
    both = serial | {"firmwareVersion": "F" * 51}
    await dispatch(HANDLERS, context, Call("u12", "BootNotification", serial), tolerated)
    await dispatch(HANDLERS, context, Call("u13", "BootNotification", both), tolerated)
    reported = [[(v.path, v.rule) for v in found] for _, _, found in tolerated.reports]
    assert reported == [
        [("chargePointSerialNumber", "maxLength")],
        [("firmwareVersion", "maxLength")],
    ]


async def test_leniency_tolerates_an_unknown_enum_value() -> None:
    tolerated = ToleranceLog()
    payload = STATUS | {"errorCode": "Error"}
    handlers: dict[str, Handler] = {"StatusNotification": answer_heartbeat}
    reply = await dispatch(
        handlers, lenient_context(), Call("u14", "StatusNotification", payload), tolerated
    )
    assert isinstance(reply, CallResult)
    assert [(v.path, v.rule) for _, _, found in tolerated.reports for v in found] == [
        ("errorCode", "enum")
    ]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"chargePointVendor": 5, "chargePointModel": "M"}, "TypeConstraintViolation"),
        (
            {"chargePointVendor": "V", "chargePointSerialNumber": LONG_SERIAL},
            "OccurenceConstraintViolation",
        ),
    ],
    ids=["wrong type", "missing field beside a tolerable one"],
)
async def test_leniency_tolerates_nothing_but_length_and_enum(
    payload: dict[str, Any], code: str
) -> None:
    tolerated = ToleranceLog()
    reply = await dispatch(
        HANDLERS, lenient_context(), Call("u15", "BootNotification", payload), tolerated
    )
    assert isinstance(reply, CallError)
    assert reply.error_code == code
    assert handled == []
    assert tolerated.reports == []


async def test_a_failing_tolerance_report_is_logged_and_the_call_still_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tolerated = ToleranceLog(fails=True)
    payload = BOOT | {"chargePointSerialNumber": LONG_SERIAL}
    with caplog.at_level(logging.ERROR, logger="ocpp_gateway"):
        reply = await dispatch(
            HANDLERS, lenient_context(), Call("u16", "BootNotification", payload), tolerated
        )
    assert isinstance(reply, CallResult)
    assert len(tolerated.reports) == 1
    assert "recording what was tolerated failed" in caplog.text
