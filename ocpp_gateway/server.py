"""Serve OCPP stations over websockets: handshake, one registry entry per station, frame loop.

Owns the ``websockets`` server (new asyncio API), the registry of connected stations keyed by
station id, and each connection's loop: read frames, feed ``rpc.RpcSession``, answer incoming
CALLs through a dispatch table of handlers, correlate our own CALLs and time them out. The rules
live in ``rpc`` and ``handshake``; this module owns sockets, tasks and time. It knows the core
only through the callables it is given (``admit``, ``on_connected``, ``on_disconnected``).

A second connection for a station id replaces the first (FIELD-NOTES 5): the new one is
registered, then the old one is closed with 1000 "replaced by a new connection". Connect and
disconnect bookkeeping for one station id runs one at a time, in a per-station turn:

- a connection reports ``on_disconnected`` only if it is still the registered one, so a replaced
  connection never marks its station offline;
- ``on_connected`` of a new connection waits for a running ``on_disconnected`` of the old one, so
  the core always hears the two in the order the registry changed (never "online" overtaken by
  a slow "offline").

Incoming CALLs are answered one after another by a per-connection task, while the reader keeps
matching responses to our own CALL; that is why a handler must never call its own station
(DESIGN, FIELD-NOTES 13): it would wait for itself, so ``call`` refuses to run from there.
Every incoming CALL is checked against its OCPP schema (``validation``) before its handler
runs; a station marked lenient has over-long strings and unknown enum values tolerated, and
each tolerance is reported once per connection (``on_tolerated``).

Liveness (FIELD-NOTES 1, 2): websocket pings with their own interval and timeout find dead
TCP connections; independently, a station that sends no message at all for ``silence_limit``
seconds (twice its heartbeat interval) is disconnected, which takes it offline in the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import http
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from cpms.admission import Admission
from ocpp_gateway import validation
from ocpp_gateway.handshake import (
    Rejection,
    check_request,
    choose_subprotocol,
    parse_station_path,
    reject_admission,
    split_subprotocols,
)
from ocpp_gateway.rpc import (
    Call,
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
)

__all__ = [
    "ACCEPT_BACKLOG",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "REPLACED_REASON",
    "Admit",
    "CallContext",
    "CallFromHandler",
    "ConnectionState",
    "Handler",
    "OcppServer",
    "StationConnected",
    "StationDisconnected",
    "StationNotConnected",
    "StationProfile",
    "Tolerated",
    "dispatch",
]

logger = logging.getLogger("ocpp_gateway")

ACCEPT_BACKLOG = 4096
"""Connections the kernel may hold for us to accept (capped by ``net.core.somaxconn``).

asyncio's default is 100. When a network outage ends, thousands of stations connect within
a second; beyond the backlog the kernel drops their SYNs, and each waits out TCP's
retransmission back-off (1, 3, 7, 15 s) before trying again: the reconnect storm at 5,000
stations lost 1,102 reconnects to 30-second timeouts that way (docs/PERFORMANCE.md)."""

DEFAULT_MAX_MESSAGE_SIZE = 2**20
"""1 MiB: room for a large 2.0.1 NotifyReport or charging profile, not for a memory attack."""

REPLACED_REASON = "replaced by a new connection"

MAX_QUEUED_INCOMING_CALLS = 8
"""Incoming CALLs waiting for their answer; OCPP allows one, a few absorb a misbehaving station.

When full, the reader stops reading, which pushes back on the station through TCP.
"""

FOLLOW_UP_TIMEOUT = 30.0
"""Seconds a follow-up CALL (``CallContext.follow_up``) may wait for the station's answer."""

SILENCE_CHECKS_PER_LIMIT = 4
"""How often per ``silence_limit`` the watchdog looks: a silent station is caught within 1.25x."""


@dataclass(frozen=True, slots=True)
class StationProfile:
    """What the core tells the gateway about a station when it connects."""

    boot_status: str | None = None
    """Its last boot answer (Accepted, Pending, Rejected), None if it never booted."""
    lenient: bool = False
    """Tolerate over-long strings and unknown enum values from it (FIELD-NOTES 12)."""


@dataclass(slots=True)
class ConnectionState:
    """What the gateway knows about one connection; handlers update ``boot_status``."""

    boot_status: str | None = None
    lenient: bool = False
    last_heard: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` of the last frame received."""
    tolerated: set[tuple[str, str, str]] = field(default_factory=set)
    """(action, path, rule) already reported for this connection."""
    memo: dict[str, Any] = field(default_factory=dict)
    """What a version's handlers remember for the life of this connection, by their own keys."""


Admit = Callable[[str, str | None], Awaitable[Admission]]
"""The core's admission: ``(station_id, basic_auth_password_or_None) -> Admission``."""
StationConnected = Callable[[str, OcppVersion], Awaitable[StationProfile | None]]
StationDisconnected = Callable[[str, str], Awaitable[None]]
"""``(station_id, reason)``."""
Tolerated = Callable[[str, str, list[validation.Violation]], Awaitable[None]]
"""``(station_id, action, violations)``: leniency let these through, first time this connection."""


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler knows about the CALL it answers, besides the CALL itself."""

    station_id: str
    version: OcppVersion
    received_at: datetime
    """When the gateway read the frame (UTC): station clocks lie, ours is the reference."""
    state: ConnectionState = field(default_factory=ConnectionState)
    """The connection's state; a BootNotification handler records the boot answer here."""
    follow_ups: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """CALLs to send the station once this CALL is answered (see ``follow_up``)."""

    def follow_up(self, action: str, payload: dict[str, Any]) -> None:
        """Send the station ``action`` after the answer to this CALL is on the wire.

        The one way a handler makes the station act on what it just reported (a CostUpdated
        after a TransactionEvent): calling from inside the handler would make the station wait
        for itself. Sent in order, each with ``FOLLOW_UP_TIMEOUT``; a failure is logged, never
        raised, since the CALL it follows has been answered already.
        """
        self.follow_ups.append((action, payload))


Handler = Callable[[CallContext, Call], Awaitable[Mapping[str, Any]]]
"""Answer one CALL with its CALLRESULT payload, or raise ``RpcError`` to answer a CALLERROR."""


class CallFromHandler(RuntimeError):
    """A handler tried to call its own station; the station would wait for itself."""


class _Answering:
    """Marks the context of a handler at work, so calls from it (and its child tasks) are seen.

    A ``ContextVar`` rather than a task check: ``gather`` and ``wait_for`` run the awaited
    call in a child task, which inherits the context. Once the answer is sent, ``answered``
    lets tasks the handler scheduled go ahead.
    """

    __slots__ = ("answered", "connection")

    def __init__(self, connection: _StationConnection) -> None:
        self.connection = connection
        self.answered = False


_ANSWERING: contextvars.ContextVar[_Answering | None] = contextvars.ContextVar(
    "ocpp_gateway_answering", default=None
)


class StationNotConnected(LookupError):
    """The station has no open connection to this gateway (or lost it while we waited)."""

    def __init__(self, station_id: str) -> None:
        super().__init__(f"station {station_id!r} is not connected")
        self.station_id = station_id


async def dispatch(
    handlers: Mapping[str, Handler],
    context: CallContext,
    call: Call,
    on_tolerated: Tolerated | None = None,
) -> CallResult | CallError:
    """Check an incoming CALL against its schema and answer it with its action's handler.

    An action OCPP does not define gets ``NotImplemented``; one it defines that a station may
    not send us (or we do not handle) gets ``NotSupported``; a payload breaking the schema gets
    the CALLERROR ``validation`` names. A handler's ``RpcError`` becomes its CALLERROR; any
    other exception is logged and answered ``InternalError``, so one bad message never takes
    the connection down.
    """
    handler = handlers.get(call.action)
    if handler is None:
        if validation.has_schema(context.version, call.action):
            return CallError(
                call.unique_id,
                ErrorCode.NOT_SUPPORTED,
                f"{call.action} is not something a station sends to this server",
            )
        return CallError(call.unique_id, ErrorCode.NOT_IMPLEMENTED, f"unknown action {call.action}")
    try:
        tolerated = validation.check_call(
            context.version, call.action, call.payload, lenient=context.state.lenient
        )
        if tolerated:
            await _report_tolerated(context, call.action, tolerated, on_tolerated)
        payload = await handler(context, call)
        result = CallResult(call.unique_id, dict(payload))
    except RpcError as error:
        return error.to_call_error(call.unique_id)
    except Exception:
        logger.exception(
            "station %s: handler for %s (%s) failed",
            context.station_id,
            call.action,
            call.unique_id,
        )
        return CallError(call.unique_id, ErrorCode.INTERNAL_ERROR, "internal error")
    return result


async def _report_tolerated(
    context: CallContext,
    action: str,
    violations: list[validation.Violation],
    on_tolerated: Tolerated | None,
) -> None:
    new = [v for v in violations if (action, v.path, v.rule) not in context.state.tolerated]
    if not new:
        return
    context.state.tolerated.update((action, v.path, v.rule) for v in new)
    logger.warning(
        "station %s: lenient, tolerated in %s: %s",
        context.station_id,
        action,
        "; ".join(f"{v.path}: {v.message}" for v in new),
    )
    if on_tolerated is not None:
        try:
            await on_tolerated(context.station_id, action, new)
        except Exception:
            logger.exception("station %s: recording what was tolerated failed", context.station_id)


class _StationConnection:
    """One accepted websocket of one station: its RPC session, reader and answering task."""

    def __init__(
        self,
        station_id: str,
        version: OcppVersion,
        websocket: ServerConnection,
        handlers: Mapping[str, Handler],
        on_tolerated: Tolerated | None = None,
    ) -> None:
        self.station_id = station_id
        self.websocket = websocket
        self.session = RpcSession(version)
        self.state = ConnectionState()
        self.close_reason: str | None = None
        """Why we closed it, when we did (replaced, silent); else the peer's doing."""
        self._handlers = handlers
        self._on_tolerated = on_tolerated
        self._incoming: asyncio.Queue[tuple[Call, datetime]] = asyncio.Queue(
            MAX_QUEUED_INCOMING_CALLS
        )
        self._our_turn = asyncio.Lock()  # one outgoing CALL in flight, others wait their turn
        self._awaited_response: asyncio.Future[CallResult | CallError] | None = None
        self._follow_ups: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Read frames until the connection closes; answer CALLs meanwhile."""
        answering = asyncio.create_task(self._answer_calls())
        try:
            async for message in self.websocket:
                await self._receive(message)
        except ConnectionClosedError as closed:
            logger.info("station %s: connection lost: %s", self.station_id, closed)
        except ConnectionClosed:
            pass  # closed normally while we were sending a reply: same as the loop ending
        finally:
            answering.cancel()
            for follow_up in self._follow_ups:
                follow_up.cancel()
            await asyncio.wait([answering])  # unlike awaiting it, never swallows our own cancel
            if self._awaited_response is not None and not self._awaited_response.done():
                self._awaited_response.set_exception(StationNotConnected(self.station_id))

    async def call(
        self,
        action: str,
        payload: Mapping[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 - required on purpose, see OcppServer.call
    ) -> CallResult | CallError:
        """Send a CALL when our previous one is done; return its response within ``timeout``."""
        answering = _ANSWERING.get()
        if answering is not None and answering.connection is self and not answering.answered:
            raise CallFromHandler(
                f"station {self.station_id}: {action} called from inside the handler of one of "
                "its own calls; schedule it after the answer instead"
            )
        async with asyncio.timeout(timeout), self._our_turn:
            return await self._call_in_our_turn(action, payload)

    async def _call_in_our_turn(
        self, action: str, payload: Mapping[str, Any]
    ) -> CallResult | CallError:
        call = self.session.send_call(action, payload)
        response = self._awaited_response = asyncio.get_running_loop().create_future()
        try:
            await self.websocket.send(call.serialize())
            return await response
        except ConnectionClosed:
            raise StationNotConnected(self.station_id) from None
        finally:
            self._awaited_response = None
            # Timed out, cancelled or disconnected: its response, if it comes, is late.
            if self.session.call_in_flight is call:
                self.session.expire_call()

    async def _receive(self, message: str | bytes) -> None:
        received_at = datetime.now(UTC)
        self.state.last_heard = time.monotonic()
        if isinstance(message, bytes):
            logger.warning("station %s: binary frame tolerated; OCPP-J uses text", self.station_id)
        try:
            event = self.session.receive(message)
            match event:
                case CallReceived(call):
                    await self._incoming.put((call, received_at))
                case CallAnswered(call, response):
                    if self._awaited_response is not None and not self._awaited_response.done():
                        self._awaited_response.set_result(response)
                case LateResponse(response):
                    logger.warning(
                        "station %s: late response to %s dropped",
                        self.station_id,
                        response.unique_id,
                    )
                case UnmatchedResponse(response):
                    logger.warning(
                        "station %s: response to unknown call %s dropped",
                        self.station_id,
                        response.unique_id,
                    )
                case FrameRejected(error, reply):
                    logger.warning(
                        "station %s: rejected frame (%s): %.200r", self.station_id, error, message
                    )
                    if reply is not None:
                        await self.websocket.send(reply.serialize())
        except ConnectionClosed:
            raise
        except Exception:
            # A bug here must cost one message, not the station's connection.
            logger.exception("station %s: failed to process a frame", self.station_id)

    async def _answer_calls(self) -> None:
        while True:
            call, received_at = await self._incoming.get()
            context = CallContext(self.station_id, self.session.version, received_at, self.state)
            marker = _Answering(self)
            _ANSWERING.set(marker)
            reply = await dispatch(self._handlers, context, call, self._on_tolerated)
            try:
                text = reply.serialize()
            except (TypeError, ValueError):
                # A payload JSON cannot carry (a datetime, a set) is a handler bug; the station
                # still gets an answer, and this task lives on for the next CALL.
                logger.exception(
                    "station %s: answer to %s (%s) is not JSON",
                    self.station_id,
                    call.action,
                    call.unique_id,
                )
                text = CallError(
                    call.unique_id, ErrorCode.INTERNAL_ERROR, "internal error"
                ).serialize()
            try:
                await self.websocket.send(text)
            except ConnectionClosed:
                return
            finally:
                marker.answered = True
            if context.follow_ups:
                task = asyncio.create_task(self._send_follow_ups(context.follow_ups))
                self._follow_ups.add(task)
                task.add_done_callback(self._follow_ups.discard)

    async def _send_follow_ups(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        for action, payload in calls:
            try:
                answer = await self.call(action, payload, timeout=FOLLOW_UP_TIMEOUT)
            except (TimeoutError, StationNotConnected) as failed:
                logger.info(
                    "station %s: follow-up %s not answered: %r", self.station_id, action, failed
                )
                return
            except Exception:
                logger.exception("station %s: follow-up %s failed", self.station_id, action)
                return
            if isinstance(answer, CallError):
                logger.info(
                    "station %s: follow-up %s answered %s",
                    self.station_id,
                    action,
                    answer.error_code,
                )


class _Turns:
    """Per-key asyncio locks that disappear when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


async def _do_nothing(*_: object) -> None:
    return None


class OcppServer:
    """The OCPP websocket endpoint ``ws(s)://host:port/ocpp/{station_id}``."""

    def __init__(
        self,
        *,
        # Listening
        host: str = "127.0.0.1",
        port: int = 9000,
        ssl_context: ssl.SSLContext | None = None,
        # The core
        admit: Admit,
        on_connected: StationConnected = _do_nothing,
        on_disconnected: StationDisconnected = _do_nothing,
        on_tolerated: Tolerated | None = None,
        handlers: Mapping[OcppVersion, Mapping[str, Handler]] | None = None,
        silence_limit: float | None = None,
        # Timeouts (keepalive is independent of the OCPP HeartbeatInterval, FIELD-NOTES 2)
        ping_interval: float | None = 30.0,
        ping_timeout: float | None = 30.0,
        open_timeout: float | None = 10.0,
        close_timeout: float | None = 10.0,
        # Limits
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        """Configure the server; ``start()`` binds it. ``port=0`` picks a free port."""
        self._host = host
        self._configured_port = port
        self._ssl_context = ssl_context
        self._admit = admit
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_tolerated = on_tolerated
        self._silence_limit = silence_limit
        self._watchdog: asyncio.Task[None] | None = None
        self._handlers: Mapping[OcppVersion, Mapping[str, Handler]] = handlers or {}
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._max_message_size = max_message_size

        self._server: Server | None = None
        self._bound_port: int | None = None
        self._connections: dict[str, _StationConnection] = {}
        self._lifecycle = _Turns()
        self._closing: set[asyncio.Task[None]] = set()

    # Lifecycle

    async def start(self) -> None:
        """Bind and start accepting stations."""
        if self._server is not None:
            raise RuntimeError("OcppServer is already started")
        validation.preload()
        self._server = await serve(
            self._serve_station,
            self._host,
            self._configured_port,
            ssl=self._ssl_context,
            process_request=self._check_handshake,
            select_subprotocol=self._select_subprotocol,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            open_timeout=self._open_timeout,
            close_timeout=self._close_timeout,
            max_size=self._max_message_size,
            logger=logging.getLogger("ocpp_gateway.websockets"),
            backlog=ACCEPT_BACKLOG,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
        if self._silence_limit is not None:
            self._watchdog = asyncio.create_task(self._watch_silence(self._silence_limit))
        logger.info("listening for OCPP stations on %s:%d", self._host, self._bound_port)

    async def stop(self) -> None:
        """Stop accepting, close every connection with 1001 (going away) and wait for them."""
        if self._server is None:
            return
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.wait([self._watchdog])
            self._watchdog = None
        self._server.close(code=CloseCode.GOING_AWAY, reason="server shutting down")
        await self._server.wait_closed()
        if self._closing:
            await asyncio.wait(self._closing)
        self._server = None
        self._bound_port = None
        logger.info("stopped serving OCPP stations")

    @property
    def listening(self) -> bool:
        """Whether the server accepts new connections."""
        return self._server is not None and self._server.is_serving()

    @property
    def port(self) -> int:
        """The bound port once started (useful with ``port=0``), else the configured one."""
        return self._bound_port if self._bound_port is not None else self._configured_port

    @property
    def connection_count(self) -> int:
        """How many stations are connected (a replaced connection no longer counts)."""
        return len(self._connections)

    def stations(self) -> list[str]:
        """Return the ids of the connected stations, sorted."""
        return sorted(self._connections)

    def connection_state(self, station_id: str) -> ConnectionState | None:
        """The state of a station's connection, None when it is not connected."""
        connection = self._connections.get(station_id)
        return connection.state if connection is not None else None

    def version_of(self, station_id: str) -> OcppVersion | None:
        """The OCPP version a connected station speaks."""
        connection = self._connections.get(station_id)
        return connection.session.version if connection is not None else None

    # Calling stations

    async def call(
        self,
        station_id: str,
        action: str,
        payload: Mapping[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 - required on purpose, see the docstring
    ) -> CallResult | CallError:
        """Send a CALL to a station and return its response; one CALL per station at a time.

        Waits for the station's previous CALL to finish; ``timeout`` covers the wait too. Raises
        ``TimeoutError`` (the late response will be dropped) or ``StationNotConnected``. The
        deadline is a required argument rather than left to the caller's ``asyncio.timeout``
        because a caller without one would block every later command to the station.
        """
        connection = self._connections.get(station_id)
        if connection is None:
            raise StationNotConnected(station_id)
        try:
            return await connection.call(action, payload, timeout=timeout)
        except TimeoutError:
            logger.warning(
                "station %s: no response to %s within %.1f s", station_id, action, timeout
            )
            raise

    # Handshake

    async def _check_handshake(
        self, websocket: ServerConnection, request: Request
    ) -> Response | None:
        decision = check_request(
            path=request.path,
            authorization=request.headers.get_all("Authorization"),
            offered_subprotocols=split_subprotocols(
                request.headers.get_all("Sec-WebSocket-Protocol")
            ),
        )
        if isinstance(decision, Rejection):
            logger.info("refused %r: %d %s", request.path, decision.status, decision.body.strip())
            return self._respond(websocket, decision)
        try:
            admission = await self._admit(decision.station_id, decision.password)
        except Exception:
            logger.exception("station %s: admission failed", decision.station_id)
            return websocket.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "Admission is unavailable; retry later.\n"
            )
        rejection = reject_admission(admission)
        if rejection is not None:
            logger.info(
                "station %s: refused (%s) %s",
                decision.station_id,
                admission.verdict.name,
                admission.reason,
            )
            return self._respond(websocket, rejection)
        if admission.registered:
            logger.info("station %s: registered on first connection", decision.station_id)
        return None

    @staticmethod
    def _respond(websocket: ServerConnection, rejection: Rejection) -> Response:
        response = websocket.respond(rejection.status, rejection.body)
        for name, value in rejection.headers:
            response.headers[name] = value
        return response

    @staticmethod
    def _select_subprotocol(
        websocket: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        version = choose_subprotocol(offered)
        return None if version is None else Subprotocol(version.value)

    # Connections

    async def _serve_station(self, websocket: ServerConnection) -> None:
        # The handshake already vetted path and subprotocol; read them back rather than keeping
        # per-handshake state that a failed handshake would leak.
        request = websocket.request
        station_id = parse_station_path(request.path) if request is not None else None
        if station_id is None or websocket.subprotocol is None:
            logger.error("connection without a vetted handshake; closing it")
            await websocket.close(CloseCode.INTERNAL_ERROR, "handshake state lost")
            return
        version = OcppVersion(websocket.subprotocol)
        connection = _StationConnection(
            station_id, version, websocket, self._handlers.get(version, {}), self._on_tolerated
        )

        async with self._lifecycle.turn(station_id):
            replaced = self._connections.get(station_id)
            self._connections[station_id] = connection
            if replaced is not None:
                logger.info("station %s: new connection replaces the previous one", station_id)
                self._close_replaced(replaced)
            logger.info("station %s: connected (%s)", station_id, version)
            recorded = await self._connected(connection, version)
        if not recorded:
            # The core does not know the station is here; let it reconnect and try again.
            await websocket.close(CloseCode.INTERNAL_ERROR, "could not record the connection")

        try:
            await connection.run()
        finally:
            async with self._lifecycle.turn(station_id):
                if self._connections.get(station_id) is connection:
                    del self._connections[station_id]
                    reason = connection.close_reason or _close_reason(websocket)
                    logger.info("station %s: disconnected (%s)", station_id, reason)
                    await self._notify_core(
                        "on_disconnected", station_id, self._on_disconnected(station_id, reason)
                    )
                else:
                    logger.info("station %s: replaced connection closed", station_id)

    async def _connected(self, connection: _StationConnection, version: OcppVersion) -> bool:
        try:
            profile = await self._on_connected(connection.station_id, version)
        except Exception:
            logger.exception("station %s: on_connected failed", connection.station_id)
            return False
        if profile is not None:
            connection.state.boot_status = profile.boot_status
            connection.state.lenient = profile.lenient
        return True

    async def _watch_silence(self, limit: float) -> None:
        while True:
            await asyncio.sleep(limit / SILENCE_CHECKS_PER_LIMIT)
            deadline = time.monotonic() - limit
            for connection in list(self._connections.values()):
                if connection.state.last_heard < deadline and connection.close_reason is None:
                    logger.warning(
                        "station %s: silent for over %.0f s; disconnecting it",
                        connection.station_id,
                        limit,
                    )
                    connection.close_reason = f"silent for over {limit:g} s"
                    self._close_in_background(
                        connection, CloseCode.GOING_AWAY, "no message within the heartbeat deadline"
                    )

    def _close_replaced(self, replaced: _StationConnection) -> None:
        # In the background: the old socket may be dead and take close_timeout to give up,
        # and the new connection must not wait for that before its BootNotification.
        replaced.close_reason = REPLACED_REASON
        self._close_in_background(replaced, CloseCode.NORMAL_CLOSURE, REPLACED_REASON)

    def _close_in_background(
        self, connection: _StationConnection, code: CloseCode, reason: str
    ) -> None:
        task = asyncio.create_task(connection.websocket.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _notify_core(callback: str, station_id: str, notification: Awaitable[None]) -> bool:
        try:
            await notification
        except Exception:
            logger.exception("station %s: %s failed", station_id, callback)
            return False
        return True


def _close_reason(websocket: ServerConnection) -> str:
    received, sent = websocket.protocol.close_rcvd, websocket.protocol.close_sent
    if received is None and sent is not None:
        # We closed first: e.g. 1011 "keepalive ping timeout" when pongs stopped coming.
        return f"closed by the server ({sent.code} {sent.reason})".replace(" )", ")")
    if received is None:
        return "connection lost"
    return f"connection closed ({received.code} {received.reason})".replace(" )", ")")
