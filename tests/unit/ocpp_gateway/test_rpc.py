"""Unit tests of ocpp_gateway.rpc: frames as literal strings, error codes, call correlation."""

from __future__ import annotations

import itertools
import json

import pytest

from ocpp_gateway.rpc import (
    Call,
    CallAlreadyInFlight,
    CallAnswered,
    CallError,
    CallReceived,
    CallResult,
    ErrorCode,
    FrameRejected,
    LateResponse,
    OcppVersion,
    RpcError,
    RpcSession,
    UnmatchedResponse,
    new_unique_id,
    parse,
)

V16 = OcppVersion.V16
V201 = OcppVersion.V201


def counting_ids() -> RpcSession:
    """A 2.0.1 session whose unique ids are "1", "2", ..."""
    counter = itertools.count(1)
    return RpcSession(V201, unique_ids=lambda: str(next(counter)))


# Frames


@pytest.mark.parametrize(
    ("text", "frame"),
    [
        ('[2,"19223201","Heartbeat",{}]', Call("19223201", "Heartbeat", {})),
        (
            '[2,"a1","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"M"}}]',
            Call(
                "a1", "BootNotification", {"reason": "PowerUp", "chargingStation": {"model": "M"}}
            ),
        ),
        (
            '[3,"19223201",{"currentTime":"2024-01-01T00:00:00Z"}]',
            CallResult("19223201", {"currentTime": "2024-01-01T00:00:00Z"}),
        ),
        (
            '[4,"19223201","NotImplemented","no handler for Foo yet",{"hint":1}]',
            CallError("19223201", "NotImplemented", "no handler for Foo yet", {"hint": 1}),
        ),
        (
            '[2,"id","DataTransfer",{"data":"Åsa ⚡"}]',
            Call("id", "DataTransfer", {"data": "Åsa ⚡"}),
        ),
    ],
)
@pytest.mark.parametrize("version", [V16, V201])
def test_frames_parse_from_and_serialize_to_the_same_text(
    text: str, frame: Call | CallResult | CallError, version: OcppVersion
) -> None:
    assert parse(text, version=version) == frame
    assert frame.serialize() == text


def test_parse_accepts_whitespace_between_elements() -> None:
    assert parse('[ 2 , "x" , "Heartbeat" , { } ]', version=V16) == Call("x", "Heartbeat", {})


def test_parse_accepts_utf8_bytes_from_binary_frames() -> None:
    assert parse('[3,"x",{"a":"é"}]'.encode(), version=V201) == CallResult("x", {"a": "é"})


def test_call_error_without_description_or_details_serializes_empty_ones() -> None:
    assert CallError("x", ErrorCode.GENERIC_ERROR).serialize() == '[4,"x","GenericError","",{}]'


def test_new_unique_ids_fit_ocpp_and_do_not_repeat() -> None:
    ids = {new_unique_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(1 <= len(unique_id) <= 36 for unique_id in ids)


# Malformed input: the CALLERROR code per version (table in the rpc module docstring)

# Literal spellings on purpose: the test checks the wire strings, not the enum.
FORMATION = "FormationViolation"  # 1.6
FORMAT = "FormatViolation"  # 2.0.1
PROTOCOL = "ProtocolError"
RPC = "RpcFrameworkError"  # 2.0.1
TYPE = "MessageTypeNotSupported"  # 2.0.1
IGNORED = None  # 1.6 ignores unknown message types: no CALLERROR at all

MALFORMED = [
    # (label, text, 1.6 code, 2.0.1 code, unique id read from the frame)
    ("not JSON", "hello", FORMATION, RPC, None),
    ("truncated JSON", '[2,"a","Heartbeat",{', FORMATION, RPC, None),
    ("a JSON object", '{"id":"a"}', FORMATION, RPC, None),
    ("an empty array", "[]", FORMATION, RPC, None),
    ("a type id string", '["2","a","Heartbeat",{}]', FORMATION, RPC, None),
    ("a type id true", '[true,"a","Heartbeat",{}]', FORMATION, RPC, None),
    ("an unknown type id", '[7,"a","Heartbeat",{}]', IGNORED, TYPE, "a"),
    ("a 2.1 SEND frame", '[6,"a","Heartbeat",{}]', IGNORED, TYPE, "a"),
    ("no unique id", "[2]", FORMATION, RPC, None),
    ("a numeric unique id", '[2,17,"Heartbeat",{}]', FORMATION, RPC, None),
    ("an empty unique id", '[2,"","Heartbeat",{}]', FORMATION, RPC, None),
    ("a CALL too short", '[2,"a","Heartbeat"]', PROTOCOL, RPC, "a"),
    ("a CALL too long", '[2,"a","Heartbeat",{},{}]', PROTOCOL, RPC, "a"),
    ("a numeric action", '[2,"a",5,{}]', FORMATION, RPC, "a"),
    ("an empty action", '[2,"a","",{}]', FORMATION, RPC, "a"),
    ("a list payload", '[2,"a","Heartbeat",[]]', FORMATION, FORMAT, "a"),
    ("a null payload", '[2,"a","Heartbeat",null]', FORMATION, FORMAT, "a"),
]


@pytest.mark.parametrize(
    ("text", "code", "unique_id"),
    [pytest.param(text, v16, uid, id=label) for label, text, v16, _, uid in MALFORMED],
)
def test_malformed_frames_raise_the_ocpp16_callerror_code(
    text: str, code: str | None, unique_id: str | None
) -> None:
    with pytest.raises(RpcError) as raised:
        parse(text, version=V16)
    assert raised.value.unique_id == unique_id
    if code is None:
        assert raised.value.answerable is False
    else:
        assert raised.value.answerable is True
        assert raised.value.error_code == code


@pytest.mark.parametrize(
    ("text", "code", "unique_id"),
    [pytest.param(text, v201, uid, id=label) for label, text, _, v201, uid in MALFORMED],
)
def test_malformed_frames_raise_the_ocpp201_callerror_code(
    text: str, code: str, unique_id: str | None
) -> None:
    with pytest.raises(RpcError) as raised:
        parse(text, version=V201)
    assert raised.value.answerable is True
    assert raised.value.error_code == code
    assert raised.value.unique_id == unique_id


@pytest.mark.parametrize(
    "text",
    [
        '[3,"a"]',
        '[3,"a",[]]',
        '[3,"a",{},{}]',
        '[4,"a","GenericError",""]',
        '[4,"a",5,"",{}]',
        '[4,"a","GenericError","",[]]',
        "[3]",
    ],
)
@pytest.mark.parametrize("version", [V16, V201])
def test_malformed_responses_are_never_answered(text: str, version: OcppVersion) -> None:
    with pytest.raises(RpcError) as raised:
        parse(text, version=version)
    assert raised.value.answerable is False


@pytest.mark.parametrize("version", [V16, V201])
def test_json_nested_deeper_than_the_parser_can_go_is_not_json(version: OcppVersion) -> None:
    with pytest.raises(RpcError) as raised:
        parse("[" * 100_000 + "]" * 100_000, version=version)
    assert raised.value.error_code in (ErrorCode.FORMATION_VIOLATION, ErrorCode.RPC_FRAMEWORK_ERROR)
    assert raised.value.answerable is True


def test_a_callerror_for_an_unreadable_unique_id_carries_minus_one() -> None:
    with pytest.raises(RpcError) as raised:
        parse("nonsense", version=V201)
    assert raised.value.to_call_error().unique_id == "-1"


def test_rpc_error_says_what_happened_and_to_which_frame() -> None:
    error = RpcError(ErrorCode.PROTOCOL_ERROR, "CALL has 3 elements, expected 4", unique_id="a")
    assert str(error) == "ProtocolError: CALL has 3 elements, expected 4 (unique id 'a')"


# RpcSession


def test_session_reports_an_incoming_call_to_handle() -> None:
    session = counting_ids()
    event = session.receive('[2,"s1","Heartbeat",{}]')
    assert event == CallReceived(Call("s1", "Heartbeat", {}))


def test_session_matches_the_response_to_its_call_in_flight() -> None:
    session = counting_ids()
    call = session.send_call("Reset", {"type": "Immediate"})
    assert call.serialize() == '[2,"1","Reset",{"type":"Immediate"}]'
    event = session.receive('[3,"1",{"status":"Accepted"}]')
    assert event == CallAnswered(call, CallResult("1", {"status": "Accepted"}))
    assert session.call_in_flight is None


def test_session_matches_a_callerror_to_its_call_in_flight() -> None:
    session = counting_ids()
    call = session.send_call("Reset", {"type": "Immediate"})
    event = session.receive('[4,"1","NotSupported","",{}]')
    assert event == CallAnswered(call, CallError("1", "NotSupported"))


def test_session_refuses_a_second_call_while_one_is_in_flight() -> None:
    session = counting_ids()
    first = session.send_call("Reset", {"type": "Immediate"})
    with pytest.raises(CallAlreadyInFlight) as raised:
        session.send_call("GetVariables", {})
    assert raised.value.in_flight == first
    assert session.call_in_flight == first


def test_session_allows_the_next_call_once_the_first_is_answered() -> None:
    session = counting_ids()
    session.send_call("Reset", {"type": "Immediate"})
    session.receive('[3,"1",{"status":"Accepted"}]')
    assert session.send_call("Reset", {"type": "OnIdle"}).unique_id == "2"


def test_session_drops_a_late_response_and_matches_the_next_one_correctly() -> None:
    session = counting_ids()
    session.send_call("Reset", {"type": "Immediate"})
    expired = session.expire_call()
    assert expired is not None
    assert expired.unique_id == "1"
    second = session.send_call("Reset", {"type": "OnIdle"})

    late = session.receive('[3,"1",{"status":"Rejected"}]')
    assert late == LateResponse(CallResult("1", {"status": "Rejected"}))
    assert session.call_in_flight == second  # the late reply did not answer the second CALL

    answer = session.receive('[3,"2",{"status":"Accepted"}]')
    assert answer == CallAnswered(second, CallResult("2", {"status": "Accepted"}))


def test_session_reports_a_response_to_a_call_it_never_sent_as_unmatched() -> None:
    session = counting_ids()
    call = session.send_call("Reset", {"type": "Immediate"})
    event = session.receive('[3,"999",{}]')
    assert event == UnmatchedResponse(CallResult("999", {}))
    assert session.call_in_flight == call


def test_expiring_with_nothing_in_flight_returns_none() -> None:
    assert counting_ids().expire_call() is None


def test_session_turns_a_malformed_call_into_a_callerror_reply() -> None:
    session = RpcSession(V16)
    event = session.receive('[2,"s1","Heartbeat"]')
    assert isinstance(event, FrameRejected)
    assert event.reply is not None
    assert json.loads(event.reply.serialize())[:3] == [4, "s1", "ProtocolError"]


def test_session_does_not_reply_to_a_malformed_response() -> None:
    session = counting_ids()
    session.send_call("Reset", {"type": "Immediate"})
    event = session.receive('[3,"1","Accepted"]')
    assert isinstance(event, FrameRejected)
    assert event.reply is None


def test_session_refuses_generated_ids_longer_than_ocpp_allows() -> None:
    session = RpcSession(V201, unique_ids=lambda: "x" * 37)
    with pytest.raises(ValueError, match="36"):
        session.send_call("Reset", {})
    assert session.call_in_flight is None
