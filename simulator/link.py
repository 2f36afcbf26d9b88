"""One websocket from a station to the CSMS: correlated CALLs out, the CSMS's CALLs in.

A station has at most one CALL of its own in flight (OCPP-J: one per direction), matched to
its answer by message id; a late answer to a CALL that already timed out is dropped, never
taken for the next one's (FIELD-NOTES 13). CALLs from the CSMS are answered by the station's
handler in their own task, so the reader keeps reading while a handler waits. Replies a handler
wants followed by an action (a remote start leads to a transaction) hand that action to the
station once the reply is on the wire: never a CALL from inside the handler of a CALL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from simulator.faults import Faults
from simulator.figures import Figures
from simulator.ocppj import Call, CallError, CallResult, FrameError, MessageIds, encode, parse

__all__ = [
    "CallRefused",
    "ConnectFailed",
    "Link",
    "LinkClosed",
    "Reply",
    "open_link",
]

log = logging.getLogger("simulator")


class ConnectFailed(Exception):
    """The CSMS refused the websocket (HTTP status) or could not be reached."""


class LinkClosed(Exception):
    """The websocket closed while a CALL waited for its answer."""


class CallRefused(Exception):
    """The CSMS answered a CALL with a CALLERROR."""

    def __init__(self, action: str, code: str, description: str) -> None:
        super().__init__(f"{action}: {code} {description}".strip())
        self.code = code


@dataclass(slots=True)
class Reply:
    """A handler's answer to a CSMS call, and what to do once it is sent."""

    payload: dict[str, Any]
    then: Callable[[], Coroutine[Any, Any, None]] | None = None


Handler = Callable[[Call], Awaitable[Reply]]


async def open_link(
    url: str,
    station_id: str,
    subprotocol: str,
    *,
    password: str | None,
    handler: Handler,
    figures: Figures,
    faults: Faults,
    rng: random.Random,
    call_timeout: float,
    spawn: Callable[[Coroutine[Any, Any, None]], object],
) -> Link:
    """Open the station's websocket at ``{url}/{station_id}`` speaking ``subprotocol``."""
    headers = {}
    if password is not None:
        basic = base64.b64encode(f"{station_id}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    try:
        websocket = await connect(
            f"{url.rstrip('/')}/{station_id}",
            subprotocols=[subprotocol],  # type: ignore[list-item]
            additional_headers=headers,
            open_timeout=call_timeout,
            ping_interval=None,  # the CSMS pings; a station that also pings doubles the load
            close_timeout=2.0,
            max_queue=64,
        )
    except InvalidStatus as error:
        raise ConnectFailed(f"HTTP {error.response.status_code}") from None
    except (OSError, InvalidHandshake, TimeoutError) as error:
        raise ConnectFailed(f"{type(error).__name__}: {error}") from None
    if websocket.subprotocol != subprotocol:
        await websocket.close()
        raise ConnectFailed(f"the CSMS did not agree to speak {subprotocol}")
    link = Link(websocket, station_id, handler, figures, faults, rng, call_timeout, spawn)
    link.start()
    return link


class Link:
    """An open websocket; see the module docstring."""

    def __init__(
        self,
        websocket: ClientConnection,
        station_id: str,
        handler: Handler,
        figures: Figures,
        faults: Faults,
        rng: random.Random,
        timeout: float,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
    ) -> None:
        self.websocket = websocket
        self.station_id = station_id
        self._handler = handler
        self._figures = figures
        self._faults = faults
        self._rng = rng
        self._timeout = timeout
        self._spawn = spawn
        self._ids = MessageIds()
        self._one_at_a_time = asyncio.Lock()
        self._waiting: tuple[str, asyncio.Future[CallResult | CallError]] | None = None
        self._abandoned: set[str] = set()
        """Ids of CALLs nobody waits for any more: their late answers are dropped."""
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name=f"link-{self.station_id}")

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL and return its CALLRESULT payload.

        Raises ``CallRefused`` on a CALLERROR, ``TimeoutError`` when no answer comes in time,
        ``LinkClosed`` when the websocket closes first.
        """
        async with self._one_at_a_time:
            if self.closed.is_set():
                raise LinkClosed(action)
            unique_id = self._ids.next()
            answer: asyncio.Future[CallResult | CallError] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiting = (unique_id, answer)
            if self._faults.malformed_rate and self._rng.random() < self._faults.malformed_rate:
                await self.send_text('[2, "broken", "Heartbeat", {')
                self._figures.sent["(malformed frame)"] += 1
            sent_at = time.perf_counter()
            try:
                await self.websocket.send(encode(Call(unique_id, action, payload)))
                self._figures.sent[action] += 1
                async with asyncio.timeout(self._timeout):
                    closed = asyncio.ensure_future(self.closed.wait())
                    try:
                        await asyncio.wait({answer, closed}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        closed.cancel()
            except TimeoutError:
                self._figures.errors["timeout"] += 1
                self._abandoned.add(unique_id)
                raise
            except asyncio.CancelledError:
                # Whoever called gave up (a run ending); its answer may still come.
                self._abandoned.add(unique_id)
                raise
            except ConnectionClosed:
                raise LinkClosed(action) from None
            finally:
                self._waiting = None
            if not answer.done():
                raise LinkClosed(action)
            self._figures.latencies.append(time.perf_counter() - sent_at)
            reply = answer.result()
            if isinstance(reply, CallError):
                self._figures.errors[f"CALLERROR {reply.code}"] += 1
                raise CallRefused(action, reply.code, reply.description)
            return reply.payload

    async def send_text(self, text: str) -> None:
        """Put raw text on the wire (fault injection)."""
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(text)

    async def close(self) -> None:
        """Close the websocket and stop reading."""
        with contextlib.suppress(Exception):
            await self.websocket.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for task in list(self._tasks):
            task.cancel()
        self.closed.set()

    async def abort(self) -> None:
        """Drop the connection without a closing handshake, as a power cut does."""
        self.websocket.transport.abort()
        await self.close()

    async def _read(self) -> None:
        try:
            async for text in self.websocket:
                self._take(text)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    def _take(self, text: str | bytes) -> None:
        try:
            frame = parse(text)
        except FrameError as error:
            self._figures.errors["malformed frame from CSMS"] += 1
            log.warning("%s: CSMS sent %s", self.station_id, error)
            return
        if isinstance(frame, Call):
            self._figures.received[frame.action] += 1
            task = asyncio.create_task(self._answer(frame))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        waiting = self._waiting
        if waiting is None or waiting[0] != frame.unique_id or waiting[1].done():
            if frame.unique_id in self._abandoned:
                self._abandoned.discard(frame.unique_id)
                return  # the late answer to a call that timed out or was given up: dropped
            self._figures.errors["unmatched reply"] += 1
            return
        waiting[1].set_result(frame)

    async def _answer(self, call: Call) -> None:
        faults = self._faults
        if faults.missing_reply_rate and self._rng.random() < faults.missing_reply_rate:
            return
        if faults.reply_delay:
            await asyncio.sleep(faults.reply_delay)
        try:
            reply = await self._handler(call)
            frame: CallResult | CallError = CallResult(call.unique_id, reply.payload)
        except NotImplementedError:
            reply = None
            frame = CallError(call.unique_id, "NotImplemented", f"{call.action} is not simulated")
        except Exception as error:  # a simulator bug must not kill the station's reader
            log.exception("%s: answering %s failed", self.station_id, call.action)
            reply = None
            frame = CallError(call.unique_id, "InternalError", str(error)[:255])
        try:
            await self.websocket.send(encode(frame))
        except ConnectionClosed:
            return
        if reply is not None and reply.then is not None:
            # The station owns what follows: it may close this very link (a reset).
            self._spawn(reply.then())
