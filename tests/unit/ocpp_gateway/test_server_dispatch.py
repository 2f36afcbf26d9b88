"""Unit tests of ocpp_gateway.server.dispatch: the action table that answers incoming CALLs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from ocpp_gateway.rpc import Call, CallError, CallResult, ErrorCode, OcppVersion, RpcError
from ocpp_gateway.server import CallContext, Handler, dispatch

CONTEXT = CallContext("CP1", OcppVersion.V16, datetime(2024, 1, 1, tzinfo=UTC))


async def answer_heartbeat(context: CallContext, call: Call) -> Mapping[str, Any]:
    return {"currentTime": context.received_at.isoformat()}


async def refuse_as_security_error(context: CallContext, call: Call) -> Mapping[str, Any]:
    raise RpcError(ErrorCode.SECURITY_ERROR, "not accepted yet")


async def crash(context: CallContext, call: Call) -> Mapping[str, Any]:
    raise KeyError("bug")


async def answer_with_a_list(context: CallContext, call: Call) -> Mapping[str, Any]:
    return ["not", "a", "mapping"]  # type: ignore[return-value]  # the bug under test


HANDLERS: dict[str, Handler] = {
    "Heartbeat": answer_heartbeat,
    "Authorize": refuse_as_security_error,
    "StatusNotification": crash,
    "MeterValues": answer_with_a_list,
}


async def test_a_call_with_a_handler_gets_its_payload_as_callresult() -> None:
    reply = await dispatch(HANDLERS, CONTEXT, Call("u1", "Heartbeat", {}))
    assert reply == CallResult("u1", {"currentTime": "2024-01-01T00:00:00+00:00"})


async def test_an_action_without_handler_gets_not_implemented_with_its_unique_id() -> None:
    reply = await dispatch(HANDLERS, CONTEXT, Call("u2", "BootNotification", {}))
    assert reply == CallError(
        "u2", ErrorCode.NOT_IMPLEMENTED, "no handler for BootNotification yet", {}
    )


async def test_a_handler_refusing_with_rpc_error_gets_that_callerror() -> None:
    reply = await dispatch(HANDLERS, CONTEXT, Call("u3", "Authorize", {}))
    assert reply == CallError("u3", ErrorCode.SECURITY_ERROR, "not accepted yet", {})


async def test_a_crashing_handler_gets_internal_error_and_is_logged_with_the_station(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="ocpp_gateway"):
        reply = await dispatch(HANDLERS, CONTEXT, Call("u4", "StatusNotification", {}))
    assert isinstance(reply, CallError)
    assert (reply.unique_id, reply.error_code) == ("u4", ErrorCode.INTERNAL_ERROR)
    assert "CP1" in caplog.text
    assert "StatusNotification" in caplog.text


async def test_a_handler_answering_something_other_than_a_mapping_gets_internal_error() -> None:
    reply = await dispatch(HANDLERS, CONTEXT, Call("u5", "MeterValues", {}))
    assert isinstance(reply, CallError)
    assert (reply.unique_id, reply.error_code) == ("u5", ErrorCode.INTERNAL_ERROR)
