"""OCPP-J frames as values: building and reading CALL, CALLRESULT and CALLERROR.

Specs: OCPP-J 1.6 section 4 and OCPP 2.0.1 Part 4 section 4. A frame is a JSON array:
``[2, id, action, payload]``, ``[3, id, payload]`` or ``[4, id, code, description, details]``.
No I/O here: ``simulator.link`` moves the text.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALL",
    "CALLERROR",
    "CALLRESULT",
    "Call",
    "CallError",
    "CallResult",
    "Frame",
    "FrameError",
    "MessageIds",
    "encode",
    "parse",
]

CALL, CALLRESULT, CALLERROR = 2, 3, 4


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str
    code: str
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)


Frame = Call | CallResult | CallError


class FrameError(ValueError):
    """The text is not an OCPP-J frame; ``unique_id`` is set when one could still be read."""

    def __init__(self, message: str, unique_id: str | None = None) -> None:
        super().__init__(message)
        self.unique_id = unique_id


def encode(frame: Frame) -> str:
    """The frame as the text sent on the websocket."""
    match frame:
        case Call(unique_id, action, payload):
            message: list[Any] = [CALL, unique_id, action, payload]
        case CallResult(unique_id, payload):
            message = [CALLRESULT, unique_id, payload]
        case CallError(unique_id, code, description, details):
            message = [CALLERROR, unique_id, code, description, details]
    return json.dumps(message, separators=(",", ":"))


def parse(text: str | bytes) -> Frame:
    """Read one frame; raise ``FrameError`` saying what is wrong with it."""
    try:
        message = json.loads(text)
    except ValueError as error:
        raise FrameError(f"not JSON: {error}") from None
    if not isinstance(message, list) or len(message) < 3:
        raise FrameError("not an OCPP-J array")
    kind, unique_id = message[0], message[1]
    if not isinstance(unique_id, str):
        raise FrameError("the message id is not a string")
    if type(kind) is not int:  # 3.0 == 3 in Python, not in OCPP-J
        raise FrameError(f"the message type {kind!r} is not 2, 3 or 4", unique_id)
    if kind == CALL and len(message) == 4 and isinstance(message[2], str):
        if not isinstance(message[3], dict):
            raise FrameError("the CALL payload is not an object", unique_id)
        return Call(unique_id, message[2], message[3])
    if kind == CALLRESULT and len(message) == 3 and isinstance(message[2], dict):
        return CallResult(unique_id, message[2])
    if kind == CALLERROR and len(message) >= 4:
        details = message[4] if len(message) > 4 and isinstance(message[4], dict) else {}
        return CallError(unique_id, str(message[2]), str(message[3]), details)
    raise FrameError(f"not a frame of type 2, 3 or 4: {str(message)[:80]}", unique_id)


class MessageIds:
    """Unique ids for the CALLs of one station: short, and never repeated within a run."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._numbers = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._numbers)}"
