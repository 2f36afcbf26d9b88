"""A minimal raw OCPP-J CSMS for tests, sharing no code with our gateway.

It plays a central system we do not own: a plain ``websockets`` server on 127.0.0.1 that
accepts ``ocpp2.0.1`` and ``ocpp1.6`` stations at ``/ocpp/{station_id}``, records every CALL a
station sends, answers it (configurable per action; sensible defaults otherwise), and lets a test
send a CALL to a connected station and read the answer. Frames are built and read with plain
``json``. Every payload crossing the wire in either direction is checked against the ``ocpp``
package's JSON schemas for the connection's version; what does not validate is recorded in
``problems`` (tests assert it stays empty), not raised, so a test sees everything that went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import FormatChecker
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from support import TIME_UNIT

__all__ = ["STEP", "Answer", "RawCsms", "Received"]

STEP = 5.0 * TIME_UNIT
"""Seconds any single exchange or awaited message may take."""

_VERSIONS = {"ocpp2.0.1": "2.0.1", "ocpp1.6": "1.6"}
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")

_formats = FormatChecker()
_transaction_ids = itertools.count(1)


@_formats.checks("date-time", raises=ValueError)
def _is_date_time(text: object) -> bool:
    """RFC 3339 date-time (the jsonschema default checks none without an extra package)."""
    if not isinstance(text, str):
        return True
    if not _RFC3339.match(text):
        return False
    datetime.fromisoformat(text.replace("Z", "+00:00"))
    return True


@cache
def _validator(version: str, action: str, response: bool) -> Validator | None:
    """The compiled schema of one message, or None when the package has none."""
    if version == "2.0.1":
        folder, name = "v201", f"{action}{'Response' if response else 'Request'}.json"
    else:
        folder, name = "v16", f"{action}{'Response' if response else ''}.json"
    path = resources.files("ocpp") / folder / "schemas" / name
    if not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    cls = validator_for(schema)
    return cls(schema, format_checker=_formats)  # type: ignore[no-any-return]


def schema_errors(version: str, action: str, payload: Any, *, response: bool) -> list[str]:
    """What is wrong with ``payload`` as ``action``'s request (or response) in ``version``."""
    validator = _validator(version, action, response)
    if validator is None:
        return [f"no {version} schema for {action}{' response' if response else ''}"]
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(payload)'}: {error.message}"
        for error in validator.iter_errors(payload)
    ]


@dataclass(frozen=True, slots=True)
class Received:
    """One CALL a station sent."""

    station_id: str
    version: str
    action: str
    payload: dict[str, Any]
    at: float
    """``time.monotonic()`` when it arrived."""
    connection: int
    """Which connection of this station it came on: 1, 2, ... (a reboot opens a new one)."""


Answer = dict[str, Any] | Callable[[Received], dict[str, Any] | Awaitable[dict[str, Any]]]
"""What the CSMS answers a CALL: a payload, or a function of the CALL giving one."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _default_answer(call: Received) -> dict[str, Any]:
    """A sensible CALLRESULT payload for ``call``."""
    action, payload = call.action, call.payload
    if action == "BootNotification":
        return {"currentTime": _now(), "interval": 300, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": _now()}
    if call.version == "2.0.1":
        if action == "Authorize" or (action == "TransactionEvent" and "idToken" in payload):
            return {"idTokenInfo": {"status": "Accepted"}}
        if action == "DataTransfer":
            return {"status": "UnknownVendorId"}
        return {}
    if action == "Authorize":
        return {"idTagInfo": {"status": "Accepted"}}
    if action == "StartTransaction":
        return {"transactionId": next(_transaction_ids), "idTagInfo": {"status": "Accepted"}}
    if action == "DataTransfer":
        return {"status": "UnknownVendorId"}
    return {}


@dataclass(eq=False)
class _Connection:
    websocket: ServerConnection
    station_id: str
    version: str
    number: int
    waiting: dict[str, tuple[str, asyncio.Future[list[Any]]]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class RawCsms:
    """See the module docstring. Use as ``async with RawCsms() as csms:``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.problems: list[str] = []
        self._answers: dict[str, list[Answer]] = {}
        self._connections: dict[str, _Connection] = {}
        self._counts: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawCsms:
        self._server = await serve(
            self._serve, "127.0.0.1", 0, subprotocols=list(_VERSIONS), ping_interval=None
        )  # type: ignore[list-item]
        self.port = self._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        """The endpoint without the station id, as ``StationOptions.url`` wants it."""
        return f"ws://127.0.0.1:{self.port}/ocpp"

    # Answers -----------------------------------------------------------------------------

    def respond(self, action: str, *answers: Answer) -> None:
        """Answer ``action`` with these, in turn; the last one is kept for later calls."""
        self._answers[action] = list(answers)

    async def _answer_for(self, call: Received) -> dict[str, Any]:
        queued = self._answers.get(call.action)
        if not queued:
            return _default_answer(call)
        answer = queued.pop(0) if len(queued) > 1 else queued[0]
        if callable(answer):
            result = answer(call)
            return await result if inspect.isawaitable(result) else result
        return answer

    # What stations sent ------------------------------------------------------------------

    def calls(
        self,
        action: str | None = None,
        *,
        station_id: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        since: int = 0,
    ) -> list[Received]:
        """The CALLs received so far (from mark ``since`` on), in order, filtered."""
        return [
            c
            for c in self.received[since:]
            if (action is None or c.action == action)
            and (station_id is None or c.station_id == station_id)
            and (where is None or where(c.payload))
        ]

    async def wait_for(
        self,
        action: str,
        *,
        station_id: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        count: int = 1,
        since: int = 0,
        timeout: float = STEP,  # noqa: ASYNC109
    ) -> list[Received]:
        """Wait until ``count`` matching CALLs have arrived (after mark ``since``); return them."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = self.calls(action, station_id=station_id, where=where, since=since)
                    if len(found) >= count:
                        return found
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            seen = [f"{c.action} {json.dumps(c.payload)[:160]}" for c in self.received[-15:]]
            found = self.calls(action, station_id=station_id, where=where, since=since)
            raise AssertionError(
                f"waited {timeout:.1f} s for {count} {action}, got {len(found)}; last received:\n"
                + "\n".join(seen)
            ) from None

    def mark(self) -> int:
        """A mark to pass as ``since``: only what arrives after now counts."""
        return len(self.received)

    def connected(self, station_id: str) -> bool:
        return station_id in self._connections

    # Calling a station -------------------------------------------------------------------

    async def call(
        self,
        station_id: str,
        action: str,
        payload: dict[str, Any],
        *,
        timeout: float = STEP,  # noqa: ASYNC109
    ) -> list[Any]:
        """Send a CALL to a connected station; return its CALLRESULT or CALLERROR frame."""
        async with asyncio.timeout(timeout):
            while station_id not in self._connections:
                self._changed.clear()
                await self._changed.wait()
            connection = self._connections[station_id]
            for problem in schema_errors(connection.version, action, payload, response=False):
                self.problems.append(f"{station_id}: the test's {action}: {problem}")
            unique_id = f"csms-{next(self._ids)}"
            answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            connection.waiting[unique_id] = (action, answer)
            try:
                await connection.websocket.send(json.dumps([2, unique_id, action, payload]))
                return await answer
            finally:
                connection.waiting.pop(unique_id, None)

    async def result(self, station_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL the station must answer with a CALLRESULT; return its payload."""
        frame = await self.call(station_id, action, payload)
        assert frame[0] == 3, f"{action} was answered {frame}"
        result: dict[str, Any] = frame[2]
        return result

    # The wire ----------------------------------------------------------------------------

    async def _serve(self, websocket: ServerConnection) -> None:
        path = websocket.request.path if websocket.request is not None else ""
        version = _VERSIONS.get(websocket.subprotocol or "")
        if not path.startswith("/ocpp/") or version is None:
            self.problems.append(f"connection to {path!r} with subprotocol {websocket.subprotocol}")
            await websocket.close(1002, "an OCPP subprotocol is required")
            return
        station_id = path.removeprefix("/ocpp/")
        self._counts[station_id] = self._counts.get(station_id, 0) + 1
        connection = _Connection(websocket, station_id, version, self._counts[station_id])
        self._connections[station_id] = connection
        self._changed.set()
        try:
            async for text in websocket:
                self._take(connection, text)
        except ConnectionClosed:
            pass
        finally:
            if self._connections.get(station_id) is connection:
                del self._connections[station_id]
            for task in list(connection.tasks):
                task.cancel()
            self._changed.set()

    def _take(self, connection: _Connection, text: str | bytes) -> None:
        station = connection.station_id
        try:
            frame = json.loads(text)
        except ValueError:
            self.problems.append(f"{station}: not JSON: {text[:80]!r}")
            return
        if not isinstance(frame, list) or len(frame) < 3 or not isinstance(frame[1], str):
            self.problems.append(f"{station}: not an OCPP-J frame: {str(frame)[:80]}")
            return
        if frame[0] == 2 and len(frame) == 4 and isinstance(frame[3], dict):
            call = Received(
                station, connection.version, frame[2], frame[3], time.monotonic(), connection.number
            )
            for problem in schema_errors(call.version, call.action, call.payload, response=False):
                self.problems.append(f"{station}: {call.action}: {problem}")
            self.received.append(call)
            self._changed.set()
            task = asyncio.create_task(self._reply(connection, frame[1], call))
            connection.tasks.add(task)
            task.add_done_callback(connection.tasks.discard)
            return
        waiting = connection.waiting.get(frame[1])
        if waiting is None:
            self.problems.append(f"{station}: an answer to no CALL of ours: {str(frame)[:80]}")
            return
        action, future = waiting
        if frame[0] == 3 and len(frame) == 3 and isinstance(frame[2], dict):
            for problem in schema_errors(connection.version, action, frame[2], response=True):
                self.problems.append(f"{station}: answer to {action}: {problem}")
        elif frame[0] != 4 or len(frame) != 5:
            self.problems.append(f"{station}: a malformed answer to {action}: {str(frame)[:80]}")
        if not future.done():
            future.set_result(frame)

    async def _reply(self, connection: _Connection, unique_id: str, call: Received) -> None:
        answer = await self._answer_for(call)
        for problem in schema_errors(call.version, call.action, answer, response=True):
            self.problems.append(
                f"{call.station_id}: the test's answer to {call.action}: {problem}"
            )
        with contextlib.suppress(ConnectionClosed):
            await connection.websocket.send(json.dumps([3, unique_id, answer]))
