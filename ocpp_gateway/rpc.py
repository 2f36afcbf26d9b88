"""Speak OCPP-J's RPC framework without doing any I/O: frames, unique ids, one CALL in flight.

Owns the three OCPP-J frames (CALL, CALLRESULT, CALLERROR), how text becomes a frame and a frame
becomes text, which CALLERROR code answers which malformed input in each OCPP version, and the
correlation of our outgoing CALL with its response. It holds no socket, loop or clock: the
gateway's connection loop (``ocpp_gateway.server``) feeds it strings, acts on the events it
returns and owns every timeout, as ``websockets.protocol.Protocol`` does under its asyncio layer.

Specs: OCPP-J 1.6 section 4 (RPC framework) and OCPP 2.0.1 Part 4 section 4.

Malformed input and the CALLERROR that answers it (``parse`` raises ``RpcError``):

==========================================  ==================  ========================
what is wrong                               ocpp1.6             ocpp2.0.1
==========================================  ==================  ========================
not JSON, or not a non-empty JSON array     FormationViolation  RpcFrameworkError
message type id is not an integer           FormationViolation  RpcFrameworkError
message type id is an unknown integer       (ignored, no reply) MessageTypeNotSupported
unique id missing or not a non-empty string FormationViolation  RpcFrameworkError
wrong number of elements for the type       ProtocolError       RpcFrameworkError
action/error fields not strings             FormationViolation  RpcFrameworkError
payload or error details not a JSON object  FormationViolation  FormatViolation
==========================================  ==================  ========================

``FormationViolation`` is 1.6's own spelling (kept by its errata); 2.0.1 renamed it
``FormatViolation`` and added ``RpcFrameworkError`` ("not a valid RPC request, e.g. the message
id could not be read") and ``MessageTypeNotSupported``. OCPP-J 1.6 says a message with a type
number outside the list is ignored, so 1.6 gets no reply there. A CALLERROR answers CALLs only:
a malformed CALLRESULT or CALLERROR is dropped (answering a response confuses the peer's
correlation, FIELD-NOTES 13). When the unique id cannot be read the CALLERROR carries ``"-1"``,
as OCPP 2.x prescribes; we do the same for 1.6, which says nothing.

Theory of operation of ``RpcSession``: ``send_call()`` returns the ``Call`` to write and marks it
in flight (OCPP allows one per direction). ``receive()`` turns each incoming text into exactly one
event: ``CallReceived`` (handle it and send the answer), ``CallAnswered`` (the response to our
CALL in flight), ``LateResponse`` or ``UnmatchedResponse`` (drop it, log it) or ``FrameRejected``
(send its ``reply`` if there is one). When the I/O layer's timeout fires it calls
``expire_call()``; a response arriving afterwards is a ``LateResponse`` and never shifts later
responses by one.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "UNREADABLE_UNIQUE_ID",
    "Call",
    "CallAlreadyInFlight",
    "CallAnswered",
    "CallError",
    "CallReceived",
    "CallResult",
    "ErrorCode",
    "Event",
    "Frame",
    "FrameRejected",
    "LateResponse",
    "MessageType",
    "OcppVersion",
    "RpcError",
    "RpcSession",
    "UnmatchedResponse",
    "new_unique_id",
    "parse",
]

UNREADABLE_UNIQUE_ID = "-1"
"""The unique id of a CALLERROR answering a frame whose own id could not be read (OCPP 2.x)."""

MAX_UNIQUE_ID_LENGTH = 36
"""OCPP-J caps unique ids at 36 characters; ours are 32 (uuid4 hex)."""

_REMEMBERED_EXPIRED_CALLS = 16
"""How many expired CALL ids we keep to recognise their late responses.

One CALL is in flight at a time, so a handful covers any realistic run of timeouts; older late
replies are still dropped, only reported as unmatched instead of late.
"""


class OcppVersion(enum.StrEnum):
    """An OCPP version, spelled as its websocket subprotocol."""

    V16 = "ocpp1.6"
    V201 = "ocpp2.0.1"


class MessageType(enum.IntEnum):
    """The message type id, first element of every OCPP-J frame."""

    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4


class ErrorCode(enum.StrEnum):
    """CALLERROR codes of OCPP-J 1.6 and OCPP 2.0.1; some exist in one version only."""

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"
    SECURITY_ERROR = "SecurityError"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"
    FORMATION_VIOLATION = "FormationViolation"
    """1.6 only (its spelling)."""
    OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
    """1.6 only (its spelling)."""
    FORMAT_VIOLATION = "FormatViolation"
    """2.0.1 only."""
    OCCURRENCE_CONSTRAINT_VIOLATION = "OccurrenceConstraintViolation"
    """2.0.1 only."""
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"
    """2.0.1 only."""
    RPC_FRAMEWORK_ERROR = "RpcFrameworkError"
    """2.0.1 only."""


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""Compact and UTF-8 as-is: stations parse JSON, not ASCII escapes, and bytes are airtime.
One encoder for every frame: ``json.dumps`` with options builds a new one each call."""


def _json_text(frame: list[Any]) -> str:
    return _ENCODER.encode(frame)


@dataclass(frozen=True, slots=True)
class Call:
    """A request: ``[2, uniqueId, action, payload]``."""

    unique_id: str
    action: str
    payload: dict[str, Any]

    def serialize(self) -> str:
        """Return the frame as OCPP-J text, ready to send."""
        return _json_text([MessageType.CALL, self.unique_id, self.action, self.payload])


@dataclass(frozen=True, slots=True)
class CallResult:
    """A successful response: ``[3, uniqueId, payload]``."""

    unique_id: str
    payload: dict[str, Any]

    def serialize(self) -> str:
        """Return the frame as OCPP-J text, ready to send."""
        return _json_text([MessageType.CALLRESULT, self.unique_id, self.payload])


@dataclass(frozen=True, slots=True)
class CallError:
    """An error response: ``[4, uniqueId, errorCode, errorDescription, errorDetails]``."""

    unique_id: str
    error_code: str
    error_description: str = ""
    error_details: dict[str, Any] = field(default_factory=dict)

    def serialize(self) -> str:
        """Return the frame as OCPP-J text, ready to send."""
        return _json_text(
            [
                MessageType.CALLERROR,
                self.unique_id,
                self.error_code,
                self.error_description,
                self.error_details,
            ]
        )


Frame = Call | CallResult | CallError


class RpcError(Exception):
    """Input broke the RPC framework, or a handler refuses a CALL; carries the CALLERROR to send.

    ``unique_id`` is the id of the offending frame when it could be read. ``answerable`` is False
    when the rules say not to answer at all (a malformed response, or an unknown message type in
    1.6). A message handler may raise ``RpcError(code, description)`` to answer its CALL with a
    CALLERROR; the dispatcher fills in the unique id.
    """

    def __init__(
        self,
        error_code: ErrorCode,
        description: str,
        *,
        unique_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        answerable: bool = True,
    ) -> None:
        super().__init__(error_code, description)
        self.error_code = error_code
        self.description = description
        self.unique_id = unique_id
        self.details: dict[str, Any] = dict(details or {})
        self.answerable = answerable

    def __str__(self) -> str:
        about = f" (unique id {self.unique_id!r})" if self.unique_id is not None else ""
        return f"{self.error_code}: {self.description}{about}"

    def to_call_error(self, unique_id: str | None = None) -> CallError:
        """Build the CALLERROR answering the frame, for ``unique_id`` or the one we read."""
        answered_id = unique_id or self.unique_id or UNREADABLE_UNIQUE_ID
        return CallError(answered_id, self.error_code, self.description, self.details)


class _Problem(enum.Enum):
    """Kinds of malformed input; the table in the module docstring maps them to codes."""

    NOT_AN_RPC_ARRAY = enum.auto()
    TYPE_ID_NOT_INTEGER = enum.auto()
    TYPE_ID_UNKNOWN = enum.auto()
    UNIQUE_ID_UNREADABLE = enum.auto()
    WRONG_ELEMENT_COUNT = enum.auto()
    FIELD_NOT_STRING = enum.auto()
    PAYLOAD_NOT_OBJECT = enum.auto()


_CODES: dict[OcppVersion, dict[_Problem, ErrorCode]] = {
    OcppVersion.V16: {
        _Problem.NOT_AN_RPC_ARRAY: ErrorCode.FORMATION_VIOLATION,
        _Problem.TYPE_ID_NOT_INTEGER: ErrorCode.FORMATION_VIOLATION,
        # Never sent: 1.6 ignores unknown message types. Named for the log line only.
        _Problem.TYPE_ID_UNKNOWN: ErrorCode.PROTOCOL_ERROR,
        _Problem.UNIQUE_ID_UNREADABLE: ErrorCode.FORMATION_VIOLATION,
        _Problem.WRONG_ELEMENT_COUNT: ErrorCode.PROTOCOL_ERROR,
        _Problem.FIELD_NOT_STRING: ErrorCode.FORMATION_VIOLATION,
        _Problem.PAYLOAD_NOT_OBJECT: ErrorCode.FORMATION_VIOLATION,
    },
    OcppVersion.V201: {
        _Problem.NOT_AN_RPC_ARRAY: ErrorCode.RPC_FRAMEWORK_ERROR,
        _Problem.TYPE_ID_NOT_INTEGER: ErrorCode.RPC_FRAMEWORK_ERROR,
        _Problem.TYPE_ID_UNKNOWN: ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED,
        _Problem.UNIQUE_ID_UNREADABLE: ErrorCode.RPC_FRAMEWORK_ERROR,
        _Problem.WRONG_ELEMENT_COUNT: ErrorCode.RPC_FRAMEWORK_ERROR,
        _Problem.FIELD_NOT_STRING: ErrorCode.RPC_FRAMEWORK_ERROR,
        _Problem.PAYLOAD_NOT_OBJECT: ErrorCode.FORMAT_VIOLATION,
    },
}

_ELEMENT_COUNTS = {MessageType.CALL: 4, MessageType.CALLRESULT: 3, MessageType.CALLERROR: 5}


def parse(text: str | bytes, *, version: OcppVersion) -> Frame:
    """Turn one websocket message into a frame, or raise ``RpcError`` saying how to answer.

    ``bytes`` are accepted (decoded as UTF-8 JSON) for firmware that sends binary frames;
    OCPP-J itself uses text frames.
    """

    def fail(
        problem: _Problem,
        description: str,
        unique_id: str | None = None,
        message_type: int | None = None,
    ) -> RpcError:
        is_response = message_type in (MessageType.CALLRESULT, MessageType.CALLERROR)
        ignored_type = problem is _Problem.TYPE_ID_UNKNOWN and version is OcppVersion.V16
        return RpcError(
            _CODES[version][problem],
            description,
            unique_id=unique_id,
            answerable=not (is_response or ignored_type),
        )

    try:
        message = json.loads(text)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are ValueErrors
        raise fail(_Problem.NOT_AN_RPC_ARRAY, "message is not JSON") from None
    except RecursionError:  # "[[[[...": nesting deeper than the parser's stack
        raise fail(_Problem.NOT_AN_RPC_ARRAY, "message nests too deeply") from None
    if not isinstance(message, list) or not message:
        raise fail(_Problem.NOT_AN_RPC_ARRAY, "message is not a non-empty JSON array")

    type_id = message[0]
    # bool is an int subclass in Python, but `true` is not a message type id.
    if type(type_id) is not int:
        raise fail(_Problem.TYPE_ID_NOT_INTEGER, "message type id is not an integer")

    # Read the id before judging the type, so even an unknown type's CALLERROR can carry it.
    unique_id = message[1] if len(message) > 1 else None
    if not isinstance(unique_id, str) or not unique_id:
        unique_id = None

    if type_id not in _ELEMENT_COUNTS:
        raise fail(
            _Problem.TYPE_ID_UNKNOWN, f"message type id {type_id} is not supported", unique_id
        )
    message_type = MessageType(type_id)
    if unique_id is None:
        raise fail(
            _Problem.UNIQUE_ID_UNREADABLE,
            "unique id is missing or not a non-empty string",
            message_type=message_type,
        )
    expected = _ELEMENT_COUNTS[message_type]
    if len(message) != expected:
        raise fail(
            _Problem.WRONG_ELEMENT_COUNT,
            f"{message_type.name} has {len(message)} elements, expected {expected}",
            unique_id,
            message_type,
        )

    if message_type is MessageType.CALL:
        _, _, action, payload = message
        if not isinstance(action, str) or not action:
            raise fail(_Problem.FIELD_NOT_STRING, "action is not a non-empty string", unique_id)
        if not isinstance(payload, dict):
            raise fail(_Problem.PAYLOAD_NOT_OBJECT, "payload is not a JSON object", unique_id)
        return Call(unique_id, action, payload)

    if message_type is MessageType.CALLRESULT:
        payload = message[2]
        if not isinstance(payload, dict):
            raise fail(
                _Problem.PAYLOAD_NOT_OBJECT,
                "payload is not a JSON object",
                unique_id,
                message_type,
            )
        return CallResult(unique_id, payload)

    _, _, error_code, description, details = message
    if not isinstance(error_code, str) or not isinstance(description, str):
        raise fail(
            _Problem.FIELD_NOT_STRING,
            "error code or description is not a string",
            unique_id,
            message_type,
        )
    if not isinstance(details, dict):
        raise fail(
            _Problem.PAYLOAD_NOT_OBJECT,
            "error details are not a JSON object",
            unique_id,
            message_type,
        )
    return CallError(unique_id, error_code, description, details)


def new_unique_id() -> str:
    """Return a fresh unique id: 32 hex characters, unique across connections and restarts."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class CallReceived:
    """The peer sent a CALL: handle it and send one CALLRESULT or CALLERROR with its id."""

    call: Call


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The peer answered our CALL in flight; we may send the next one."""

    call: Call
    response: CallResult | CallError


@dataclass(frozen=True, slots=True)
class LateResponse:
    """A response to a CALL we already gave up on (``expire_call``): drop it."""

    response: CallResult | CallError


@dataclass(frozen=True, slots=True)
class UnmatchedResponse:
    """A response whose unique id matches no CALL of ours: drop it."""

    response: CallResult | CallError


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """The message broke the RPC framework: send ``reply`` if it is not None, and log."""

    error: RpcError
    reply: CallError | None


Event = CallReceived | CallAnswered | LateResponse | UnmatchedResponse | FrameRejected


class CallAlreadyInFlight(RuntimeError):
    """A CALL was sent while the previous one is still unanswered (OCPP allows one)."""

    def __init__(self, in_flight: Call) -> None:
        super().__init__(f"{in_flight.action} ({in_flight.unique_id}) is still awaiting a response")
        self.in_flight = in_flight


class RpcSession:
    """The RPC state of one connection, fed strings and asked for frames; no I/O, no clock."""

    def __init__(
        self,
        version: OcppVersion,
        *,
        unique_ids: Callable[[], str] = new_unique_id,
    ) -> None:
        self.version = version
        self._unique_ids = unique_ids
        self._in_flight: Call | None = None
        self._expired_ids: deque[str] = deque(maxlen=_REMEMBERED_EXPIRED_CALLS)

    @property
    def call_in_flight(self) -> Call | None:
        """Our CALL awaiting its response, if any."""
        return self._in_flight

    def send_call(self, action: str, payload: Mapping[str, Any]) -> Call:
        """Start a CALL; you must send ``call.serialize()`` to the peer.

        Raises ``CallAlreadyInFlight`` while the previous CALL is unanswered and unexpired.
        """
        if self._in_flight is not None:
            raise CallAlreadyInFlight(self._in_flight)
        unique_id = self._unique_ids()
        if not unique_id or len(unique_id) > MAX_UNIQUE_ID_LENGTH:
            raise ValueError(f"unique id {unique_id!r} must be 1..{MAX_UNIQUE_ID_LENGTH} chars")
        call = Call(unique_id, action, dict(payload))
        self._in_flight = call
        return call

    def expire_call(self) -> Call | None:
        """Give up on the CALL in flight (your timeout fired); return it, or None if none was.

        Its response, should it still come, will be reported as ``LateResponse``.
        """
        expired, self._in_flight = self._in_flight, None
        if expired is not None:
            self._expired_ids.append(expired.unique_id)
        return expired

    def receive(self, text: str | bytes) -> Event:
        """Take one websocket message from the peer and return what it means; see the events."""
        try:
            frame = parse(text, version=self.version)
        except RpcError as error:
            return FrameRejected(error, error.to_call_error() if error.answerable else None)
        if isinstance(frame, Call):
            return CallReceived(frame)
        in_flight = self._in_flight
        if in_flight is not None and frame.unique_id == in_flight.unique_id:
            self._in_flight = None
            return CallAnswered(in_flight, frame)
        if frame.unique_id in self._expired_ids:
            return LateResponse(frame)
        return UnmatchedResponse(frame)
