"""OCPP-J frames of the simulator (``simulator.ocppj``): encoding, parsing, and what is refused.

Round trips of CALL, CALLRESULT and CALLERROR (a property test over arbitrary JSON payloads),
the exact text on the wire, and every malformed input: each raises ``FrameError``, carrying the
message id whenever one could still be read, so the station can answer with a CALLERROR.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.ocppj import (
    CALL,
    CALLERROR,
    CALLRESULT,
    Call,
    CallError,
    CallResult,
    FrameError,
    MessageIds,
    encode,
    parse,
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
PAYLOADS = st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=6)
IDS = st.text(min_size=1, max_size=36)


@given(unique_id=IDS, action=st.text(min_size=1, max_size=30), payload=PAYLOADS)
def test_call_round_trips(unique_id: str, action: str, payload: dict[str, Any]) -> None:
    frame = Call(unique_id, action, payload)
    assert parse(encode(frame)) == frame


@given(unique_id=IDS, payload=PAYLOADS)
def test_call_result_round_trips(unique_id: str, payload: dict[str, Any]) -> None:
    frame = CallResult(unique_id, payload)
    assert parse(encode(frame)) == frame


@given(unique_id=IDS, code=st.text(max_size=30), description=st.text(max_size=60), details=PAYLOADS)
def test_call_error_round_trips(
    unique_id: str, code: str, description: str, details: dict[str, Any]
) -> None:
    frame = CallError(unique_id, code, description, details)
    assert parse(encode(frame)) == frame


def test_encoded_frames_are_the_ocpp_j_arrays() -> None:
    assert json.loads(encode(Call("1", "Heartbeat", {}))) == [CALL, "1", "Heartbeat", {}]
    assert json.loads(encode(CallResult("1", {"a": 1}))) == [CALLRESULT, "1", {"a": 1}]
    assert json.loads(encode(CallError("1", "NotImplemented", "no"))) == [
        CALLERROR,
        "1",
        "NotImplemented",
        "no",
        {},
    ]
    # Compact: no spaces a station would have to send for nothing.
    assert encode(Call("1", "Heartbeat", {})) == '[2,"1","Heartbeat",{}]'


def test_bytes_are_read_as_text() -> None:
    assert parse(b'[3,"7",{"status":"Accepted"}]') == CallResult("7", {"status": "Accepted"})


def test_call_error_without_details_or_with_non_object_details_has_empty_details() -> None:
    assert parse('[4,"9","GenericError","boom"]') == CallError("9", "GenericError", "boom", {})
    assert parse('[4,"9","GenericError","boom",[1]]') == CallError("9", "GenericError", "boom")


@pytest.mark.parametrize(
    ("text", "unique_id"),
    [
        pytest.param('[2, "x", "Heartbeat", {', None, id="not-json"),
        pytest.param("", None, id="empty"),
        pytest.param('{"a": 1}', None, id="object-not-array"),
        pytest.param('"text"', None, id="string"),
        pytest.param("[]", None, id="empty-array"),
        pytest.param('[2, "1"]', None, id="too-short"),
        pytest.param('[2, 17, "Heartbeat", {}]', None, id="numeric-id"),
        pytest.param('[2, null, "Heartbeat", {}]', None, id="null-id"),
        pytest.param('[2, "a1", "Heartbeat", []]', "a1", id="call-payload-array"),
        pytest.param('[2, "a2", "Heartbeat", "x"]', "a2", id="call-payload-string"),
        pytest.param('[2, "a3", 5, {}]', "a3", id="call-action-not-string"),
        pytest.param('[2, "a4", "Heartbeat"]', "a4", id="call-without-payload"),
        pytest.param('[2, "a5", "Heartbeat", {}, {}]', "a5", id="call-too-long"),
        pytest.param('[3, "b1", []]', "b1", id="result-payload-array"),
        pytest.param('[3, "b2", {}, {}]', "b2", id="result-too-long"),
        pytest.param('[4, "c1", "GenericError"]', "c1", id="error-too-short"),
        pytest.param('[5, "d1", {}]', "d1", id="unknown-type"),
        pytest.param('["2", "d2", "Heartbeat", {}]', "d2", id="type-as-string"),
    ],
)
def test_malformed_text_raises_frame_error(text: str, unique_id: str | None) -> None:
    with pytest.raises(FrameError) as raised:
        parse(text)
    assert raised.value.unique_id == unique_id
    assert str(raised.value)


def test_frame_error_is_a_value_error() -> None:
    assert issubclass(FrameError, ValueError)


def test_message_ids_never_repeat_and_carry_their_prefix() -> None:
    ids = MessageIds("S1-")
    drawn = [ids.next() for _ in range(1000)]
    assert len(set(drawn)) == len(drawn)
    assert all(unique_id.startswith("S1-") for unique_id in drawn)
    assert all(len(unique_id) <= 36 for unique_id in drawn)  # OCPP-J: at most 36 characters
