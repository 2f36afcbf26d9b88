"""The load generator: N raw OCPP-J 1.6 stations, each with one CALL in flight, in its own process.

The scenarios start it with ``LoadProcess(spec)``: a spawned process, so the server under test
and the generator share the machine's cores the way a real deployment and its stations would
not share one event loop. It raises its open-files soft limit to the hard limit, connects the
stations (``connect_concurrency`` handshakes at a time), prepares them (boot; for meter values
a transaction), says it is ready, then measures for ``duration`` seconds or ``max_messages``
CALLs, whichever ends first, and sends back one JSON-ready result.

Workloads (``LoadSpec.workload``):

- ``mix``: every station sends Heartbeat and StatusNotification (share ``status_share``,
  connector 1 alternating Available and Preparing) back to back, one in flight;
- ``meter``: every station is in a transaction and sends MeterValues back to back, each with
  ``meter_samples`` sampled values and a register that grows as an 11 kW charge would;
- ``idle``: every station sends one Heartbeat every ``heartbeat_every`` seconds (random
  phase); the server's memory is sampled while they sit there;
- ``storm``: every station is in a transaction; all drop their connection at once, queue what
  happens while offline (MeterValues, StopTransaction, then a whole offline transaction),
  reconnect together (within ``reconnect_jitter`` s), boot, replay the queue in order (a
  ``duplicate_share`` of them first replays their online StartTransaction, as a station that
  never saw its answer; a message not answered within ``call_timeout`` is sent again and a
  lost link reconnected, as stations do), and the time until every station is done is
  measured, for at most ``duration`` seconds.

A station is a thin ``asyncio.Protocol`` (``Link``) that frames websocket messages itself
rather than the ``websockets`` client: the generator must cost far less CPU per message than
any server it drives, or the limit measured would be its own. It speaks the RFC 6455 subset
a station needs (masked text frames out, ping answered with pong, close echoed) and checks
the handshake (101, the ``ocpp1.6`` subprotocol).

Latency is the time from writing a CALL to reading its CALLRESULT (or CALLERROR) off the
socket, before any awaiting coroutine runs. ``python -m bench.load --url ...`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from websockets.speedups import apply_mask

from bench.measure import ProcessSample, raise_open_files_limit, sample_process, summarize

__all__ = [
    "WORKLOADS",
    "CallFailed",
    "Link",
    "LoadProcess",
    "LoadSpec",
    "build_parser",
    "connect",
    "generate",
    "main",
    "spec_from_args",
]

WORKLOADS = ("mix", "meter", "idle", "storm")

SUBPROTOCOL = "ocpp1.6"
CHARGE_POWER_W = 11_000.0
"""The power the meter workload's register grows with: a plausible 11 kW AC charge, so a node
that flags impossible jumps (FIELD-NOTES) sees ordinary readings."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What the generator does; every field has a flag of ``python -m bench.load``."""

    url: str
    """The station endpoint, ``ws://HOST:PORT/ocpp``; ``/{station_id}`` is appended."""
    stations: int = 100
    workload: str = "mix"
    duration: float = 10.0
    """Seconds of measurement (after ``warmup``); for ``storm``, the longest wait for the storm."""
    max_messages: int = 5_000_000
    """Measured CALLs after which the run ends early (the count bound)."""
    warmup: float = 1.0
    """Seconds of load before measuring starts (caches, connection pools, JIT of the server)."""
    status_share: float = 0.5
    heartbeat_every: float = 30.0
    meter_samples: int = 4
    connect_concurrency: int = 200
    setup_timeout: float = 180.0
    """Seconds connecting and preparing may take; the stations ready by then are measured."""
    call_timeout: float = 30.0
    prefix: str = "BENCH-"
    id_tag: str = "BENCHTAG01"
    watch_pid: int | None = None
    """A server process whose CPU time and memory are sampled during the measurement."""
    offline: float = 2.0
    """storm: seconds between the drop and the first reconnect."""
    reconnect_jitter: float = 1.0
    """storm: reconnects are spread uniformly over this many seconds."""
    duplicate_share: float = 0.1
    seed: int = 1

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload {self.workload!r}: one of {', '.join(WORKLOADS)}")
        if self.stations < 1:
            raise ValueError("stations must be at least 1")
        if not 0.0 <= self.status_share <= 1.0:
            raise ValueError("status_share must be between 0 and 1")
        if not 1 <= self.meter_samples <= 4:
            raise ValueError("meter_samples must be 1 to 4")


# --------------------------------------------------------------------------- the link


class CallFailed(Exception):
    """A CALL got no answer: the connection closed or ``call_timeout`` passed."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class HandshakeFailed(Exception):
    """The server did not switch to websocket with subprotocol ocpp1.6."""


Answered = Callable[[list[Any] | None, float, str | None], None]
"""``(frame, latency_seconds, failure)``: the answer to a CALL, or None and why it was lost."""

_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 5.2); the mask is random as 5.3 asks, not secret."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    mask = random.getrandbits(32).to_bytes(4, "big")
    return header + mask + apply_mask(payload, mask)


class Link(asyncio.Protocol):
    """One station's websocket: handshake, frames, one CALL in flight; see the module doc."""

    def __init__(self, host: str, path: str, *, on_call: Callable[[list[Any]], Any] | None) -> None:
        loop = asyncio.get_running_loop()
        self._host = host
        self._path = path
        self._on_call = on_call
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._pending_id: str | None = None
        self._pending: Answered | None = None
        self.sent_at = 0.0
        """``time.perf_counter()`` when the CALL in flight was written; 0 when none is."""
        self._ids = itertools.count(1)
        self.server_calls = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport, hence no isinstance).
        self._transport = transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(random.randbytes(16)).decode()
        transport.write(
            (
                f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        received = time.perf_counter()
        buffer = self._buffer
        buffer += data
        if not self._opened.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).decode("latin-1").lower()
            del buffer[: end + 4]
            lines = head.split("\r\n")
            if not lines[0].startswith("http/1.1 101"):
                self._fail_open(HandshakeFailed(lines[0][9:12] or "no status"))
                return
            if f"sec-websocket-protocol: {SUBPROTOCOL}" not in lines:
                self._fail_open(HandshakeFailed("no ocpp1.6 subprotocol"))
                return
            self._opened.set_result(None)
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length = second & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length = int.from_bytes(buffer[2:4], "big")
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length = int.from_bytes(buffer[2:10], "big")
                offset = 10
            if second & 0x80:  # servers must not mask (5.1); tolerate it anyway
                offset += 4
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            if second & 0x80:
                payload = apply_mask(payload, bytes(buffer[offset - 4 : offset]))
            del buffer[: offset + length]
            self._frame_received(first & 0x0F, bool(first & 0x80), payload, received)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_open(HandshakeFailed("connection closed during the handshake"))
        self._fail_pending("closed")
        if not self.closed.done():
            self.closed.set_result(None)

    # frames

    def _frame_received(self, opcode: int, fin: bool, payload: bytes, received: float) -> None:
        if opcode in (_OP_TEXT, _OP_BINARY, _OP_CONT):
            self._fragments.append(payload)
            if fin:
                text = b"".join(self._fragments)
                self._fragments = []
                self._message(text, received)
        elif opcode == _OP_PING:
            self._write(_frame(_OP_PONG, payload))
        elif opcode == _OP_CLOSE:
            self._write(_frame(_OP_CLOSE, payload[:2]))
            if self._transport is not None:
                self._transport.close()

    def _message(self, text: bytes, received: float) -> None:
        frame = json.loads(text)
        if frame[0] == 2:
            self.server_calls += 1
            if self._on_call is not None:
                self._on_call(frame)
            # A station answers what it does not support; OCPP-J's code for that.
            self.send([4, frame[1], "NotSupported", "not supported by the load generator", {}])
            return
        if frame[1] == self._pending_id and self._pending is not None:
            answered, self._pending, self._pending_id = self._pending, None, None
            latency = received - self.sent_at
            self.sent_at = 0.0
            answered(frame, latency, None)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _fail_open(self, error: Exception) -> None:
        if not self._opened.done():
            self._opened.set_exception(error)
            if self._transport is not None:
                self._transport.close()

    def _fail_pending(self, kind: str) -> None:
        if self._pending is not None:
            answered, self._pending, self._pending_id = self._pending, None, None
            self.sent_at = 0.0
            answered(None, 0.0, kind)

    # what a station does

    async def opened(self) -> None:
        """Wait for the handshake; raise ``HandshakeFailed`` if the server refused it."""
        await self._opened

    @property
    def is_open(self) -> bool:
        return self._opened.done() and not self.closed.done()

    def send(self, frame: list[Any]) -> None:
        """Send one OCPP-J frame."""
        self._write(_frame(_OP_TEXT, json.dumps(frame, separators=(",", ":")).encode()))

    def send_call(self, action: str, payload: dict[str, Any], answered: Answered) -> None:
        """Send a CALL; ``answered`` is called from the protocol when it is answered or lost.

        The generator's hot loops chain CALLs through this callback with no task switch in
        between, which halves what a message costs the generator.
        """
        if self._pending is not None:
            raise RuntimeError("one CALL in flight per station")
        if self.closed.done():
            answered(None, 0.0, "closed")
            return
        unique_id = str(next(self._ids))
        self._pending, self._pending_id = answered, unique_id
        self.sent_at = time.perf_counter()
        self.send([2, unique_id, action, payload])

    async def call(self, action: str, payload: dict[str, Any]) -> tuple[list[Any], float]:
        """Send a CALL; return the answering frame and its latency in seconds."""
        future: asyncio.Future[tuple[list[Any], float]] = asyncio.get_running_loop().create_future()

        def answered(frame: list[Any] | None, latency: float, failure: str | None) -> None:
            if future.done():
                return
            if frame is None:
                future.set_exception(CallFailed(failure or "closed"))
            else:
                future.set_result((frame, latency))

        self.send_call(action, payload, answered)
        return await future

    def expire(self, now: float, timeout: float) -> None:
        """Fail the CALL in flight if it waited longer than ``timeout`` (the generator's sweep)."""
        if self.sent_at and now - self.sent_at > timeout:
            self._fail_pending("timeout")

    def abort(self) -> None:
        """Drop the TCP connection at once, no close frame: a station losing its network."""
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Close politely (1000) and let the server close TCP."""
        self._write(_frame(_OP_CLOSE, (1000).to_bytes(2, "big")))
        if self._transport is not None:
            self._transport.close()


async def connect(
    url: str,
    station_id: str,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - the handshake's own bound
    on_call: Callable[[list[Any]], Any] | None = None,
) -> Link:
    """Open ``{url}/{station_id}`` with subprotocol ocpp1.6; the open ``Link``."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise ValueError(f"{url!r}: a ws:// URL is needed")
    port = parts.port or 80
    loop = asyncio.get_running_loop()
    host = f"{parts.hostname}:{port}"
    path = f"{parts.path.rstrip('/')}/{station_id}"
    async with asyncio.timeout(timeout):
        _, link = await loop.create_connection(
            lambda: Link(host, path, on_call=on_call), parts.hostname, port
        )
        try:
            await link.opened()
        except BaseException:
            link.abort()
            raise
    return link


# --------------------------------------------------------------------------- payloads


def _now_text(at: datetime | None = None) -> str:
    moment = at or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


BOOT = {"chargePointVendor": "BenchVendor", "chargePointModel": "BenchModel-1"}


def status(connector: int, state: str, at: datetime | None = None) -> dict[str, Any]:
    """A 1.6 StatusNotification payload."""
    return {
        "connectorId": connector,
        "errorCode": "NoError",
        "status": state,
        "timestamp": _now_text(at),
    }


def meter_value(
    transaction_id: int | None, register_wh: float, at: datetime, samples: int
) -> dict[str, Any]:
    """A 1.6 MeterValues payload with ``samples`` sampled values (register first)."""
    values = [
        {
            "value": f"{register_wh:.1f}",
            "context": "Sample.Periodic",
            "measurand": "Energy.Active.Import.Register",
            "unit": "Wh",
        },
        {"value": f"{CHARGE_POWER_W:.0f}", "measurand": "Power.Active.Import", "unit": "W"},
        {"value": "16.0", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
        {"value": "230.0", "measurand": "Voltage", "unit": "V", "phase": "L1-N"},
    ][:samples]
    payload: dict[str, Any] = {
        "connectorId": 1,
        "meterValue": [{"timestamp": _now_text(at), "sampledValue": values}],
    }
    if transaction_id is not None:
        payload["transactionId"] = transaction_id
    return payload


# --------------------------------------------------------------------------- the generator


@dataclass
class _Recorder:
    """Latencies and errors of the measured window; stations report here."""

    max_messages: int
    measuring: bool = False
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    """Counted events that are not errors (duplicates sent on purpose)."""
    acked: dict[str, int] = field(default_factory=dict)
    """CALLRESULTs by action over the whole run, set-up and warm-up included."""
    count: int = 0
    full: asyncio.Event = field(default_factory=asyncio.Event)

    def answered(self, action: str, frame: list[Any], latency: float) -> None:
        if frame[0] == 3:
            self.acked[action] = self.acked.get(action, 0) + 1
        if not self.measuring:
            return
        if frame[0] == 4:
            self.error(f"CALLERROR {frame[2]}")
        self.latencies.setdefault(action, []).append(latency)
        self.count += 1
        if self.count >= self.max_messages:
            self.full.set()

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def note(self, kind: str) -> None:
        self.notes[kind] = self.notes.get(kind, 0) + 1


@dataclass
class _Station:
    """One generated station and its transaction state."""

    id: str
    link: Link | None = None
    transaction_id: int | None = None
    register_wh: float = 0.0
    meter_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status_toggle: bool = False
    done_at: float | None = None
    """storm: perf_counter when every replayed message was answered."""
    transactions: list[int] = field(default_factory=list)
    start_payload: dict[str, Any] | None = None
    """The StartTransaction sent online, resent as it was by a station that lost its answer."""
    reconnect_tries: int = 0


class _Generator:
    def __init__(self, spec: LoadSpec, on_ready: Callable[[dict[str, Any]], None]) -> None:
        self.spec = spec
        self.on_ready = on_ready
        self.recorder = _Recorder(spec.max_messages)
        self.stations = [
            _Station(f"{spec.prefix}{number:05d}") for number in range(1, spec.stations + 1)
        ]
        self.setup_errors: dict[str, int] = {}
        """Stations that could not be prepared, by why."""
        self.connect_retries: dict[str, int] = {}
        """Handshakes refused or dropped during set-up and tried again, by why."""
        self.began = time.perf_counter()

    # helpers

    def _setup_error(self, kind: str) -> None:
        self.setup_errors[kind] = self.setup_errors.get(kind, 0) + 1

    async def _sweep(self) -> None:
        """Fail CALLs that waited longer than the call timeout (one timer for all stations)."""
        while True:
            await asyncio.sleep(0.5)
            now = time.perf_counter()
            for station in self.stations:
                if station.link is not None:
                    station.link.expire(now, self.spec.call_timeout)

    async def _call(self, station: _Station, action: str, payload: dict[str, Any]) -> list[Any]:
        assert station.link is not None
        frame, latency = await station.link.call(action, payload)
        self.recorder.answered(action, frame, latency)
        return frame

    async def _connect(self, station: _Station) -> None:
        station.link = await connect(self.spec.url, station.id, timeout=self.spec.call_timeout)

    def _next_meter(self, station: _Station) -> tuple[float, datetime]:
        """The register and time of the next reading: 11 kW since the last, time increasing."""
        now = datetime.now(UTC)
        if now <= station.meter_at:
            now = station.meter_at + timedelta(milliseconds=1)
        station.register_wh += CHARGE_POWER_W * (now - station.meter_at).total_seconds() / 3600
        station.meter_at = now
        return station.register_wh, now

    async def _start_transaction(self, station: _Station) -> None:
        # Set-up is not measured: only what the measured phase needs (no Preparing/Charging).
        station.meter_at = datetime.now(UTC)
        station.start_payload = {
            "connectorId": 1,
            "idTag": self.spec.id_tag,
            "meterStart": int(station.register_wh),
            "timestamp": _now_text(station.meter_at),
        }
        frame = await self._call(station, "StartTransaction", station.start_payload)
        if frame[0] != 3 or frame[2].get("idTagInfo", {}).get("status") != "Accepted":
            raise CallFailed(f"StartTransaction answered {json.dumps(frame)[:120]}")
        station.transaction_id = int(frame[2]["transactionId"])
        station.transactions.append(station.transaction_id)

    # phases

    async def _connect_patiently(self, station: _Station, gate: asyncio.Semaphore) -> None:
        """Connect as a real station does: a refused or dropped handshake is tried again
        after a growing, jittered pause, until the set-up time is up (each retry counted)."""
        rng = random.Random(f"{self.spec.seed}:{station.id}:connect")
        deadline = self.began + self.spec.setup_timeout
        backoff = 0.5
        while True:
            try:
                async with gate:
                    await self._connect(station)
                return
            except (OSError, TimeoutError, HandshakeFailed) as error:
                if time.perf_counter() + backoff >= deadline:
                    raise
                self.connect_retries[_kind(error)] = self.connect_retries.get(_kind(error), 0) + 1
                await asyncio.sleep(rng.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, 8.0)

    async def _prepare(self, station: _Station, gate: asyncio.Semaphore) -> bool:
        try:
            await self._connect_patiently(station, gate)
            frame = await self._call(station, "BootNotification", BOOT)
            if frame[0] != 3 or frame[2].get("status") != "Accepted":
                raise CallFailed(f"BootNotification answered {json.dumps(frame)[:120]}")
            await self._call(station, "StatusNotification", status(1, "Available"))
            if self.spec.workload in ("meter", "storm"):
                await self._start_transaction(station)
            return True
        except (OSError, TimeoutError, HandshakeFailed, CallFailed) as error:
            self._setup_error(_kind(error))
            if station.link is not None:
                station.link.abort()
                station.link = None
            return False

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        sweeper = asyncio.create_task(self._sweep())
        began = self.began = time.perf_counter()
        server_before = _sample(spec.watch_pid)
        gate = asyncio.Semaphore(spec.connect_concurrency)
        tasks = [asyncio.create_task(self._prepare(s, gate)) for s in self.stations]
        _, pending = await asyncio.wait(tasks, timeout=spec.setup_timeout)
        for task in pending:
            task.cancel()
        if pending:
            self.setup_errors["setup timeout"] = len(pending)
            await asyncio.wait(pending)
        ready = []
        for task, station in zip(tasks, self.stations, strict=True):
            prepared = not task.cancelled() and task.result()
            if prepared and station.link is not None and station.link.is_open:
                ready.append(station)
            elif station.link is not None:  # cut short mid-way: not one of the fleet
                station.link.abort()
                station.link = None
        setup_seconds = time.perf_counter() - began
        server_ready = _sample(spec.watch_pid)
        self.on_ready({"ready": len(ready), "setup_seconds": round(setup_seconds, 2)})
        result: dict[str, Any] = {
            "workload": spec.workload,
            "stations": spec.stations,
            "ready": len(ready),
            "setup_seconds": round(setup_seconds, 2),
            "setup_errors": dict(self.setup_errors),
            "connect_retries": dict(self.connect_retries),
            "server_before": _process_dict(server_before),
            "server_ready": _process_dict(server_ready),
        }
        try:
            if spec.workload == "storm":
                result |= await self._storm(ready)
            else:
                result |= await self._measure(ready)
            result["acked"] = dict(self.recorder.acked)
        finally:
            sweeper.cancel()
            for station in self.stations:
                if station.link is not None:
                    station.link.close()
            await asyncio.sleep(0.2)  # let the close frames go out
        return result

    async def _measure(self, ready: Sequence[_Station]) -> dict[str, Any]:
        spec = self.spec
        loop_for = {"mix": self._mix, "meter": self._meter, "idle": self._idle}[spec.workload]
        drivers = [asyncio.create_task(loop_for(s)) for s in ready]
        if spec.workload != "idle":
            await asyncio.sleep(spec.warmup)
        samples: list[ProcessSample] = []
        sampler = asyncio.create_task(_sample_every(spec.watch_pid, 0.5, samples))
        cpu_before = time.process_time()
        server_start = _sample(spec.watch_pid)
        window_began = time.perf_counter()
        self.recorder.measuring = True
        full = asyncio.create_task(self.recorder.full.wait())
        await asyncio.wait([full], timeout=spec.duration)
        self.recorder.measuring = False
        window = time.perf_counter() - window_began
        server_end = _sample(spec.watch_pid)
        cpu_used = time.process_time() - cpu_before
        full.cancel()
        sampler.cancel()
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        connected_at_end = sum(1 for s in ready if s.link is not None and s.link.is_open)
        everything = [x for values in self.recorder.latencies.values() for x in values]
        result: dict[str, Any] = {
            "window_seconds": round(window, 3),
            "calls": self.recorder.count,
            "msg_per_s": round(self.recorder.count / window, 1) if window > 0 else None,
            "latency": summarize(everything).as_dict(),
            "by_action": {
                action: summarize(values).as_dict()
                for action, values in sorted(self.recorder.latencies.items())
            },
            "errors": dict(self.recorder.errors),
            "connected_at_end": connected_at_end,
            "generator_cpu_share": round(cpu_used / window, 3) if window > 0 else None,
            "server_cpu_share": _cpu_share(server_start, server_end, window),
            "server_rss_peak": max((s.rss_bytes for s in samples), default=None),
            "server_end": _process_dict(server_end),
        }
        return result

    async def _guarded(self, station: _Station, action: str, payload: dict[str, Any]) -> bool:
        """One measured CALL; False (and the error counted) if the station lost its link."""
        try:
            await self._call(station, action, payload)
            return True
        except CallFailed as error:
            if self.recorder.measuring:
                self.recorder.error(error.kind)
            return error.kind != "closed"

    async def _chain(
        self, station: _Station, next_call: Callable[[], tuple[str, dict[str, Any]]]
    ) -> None:
        """Send ``next_call()`` back to back, each as soon as the last is answered, until
        cancelled or the link closes. Runs in the protocol's callbacks, not in a task."""
        link = station.link
        assert link is not None
        recorder = self.recorder
        lost = asyncio.get_running_loop().create_future()
        action = ""

        def fire() -> None:
            nonlocal action
            action, payload = next_call()
            link.send_call(action, payload, answered)

        def answered(frame: list[Any] | None, latency: float, failure: str | None) -> None:
            if frame is not None:
                recorder.answered(action, frame, latency)
            else:
                if recorder.measuring:
                    recorder.error(failure or "closed")
                if failure == "closed":
                    if not lost.done():
                        lost.set_result(None)
                    return
            if not lost.done():  # cancelled drivers stop chaining
                fire()

        fire()
        try:
            await lost
        finally:
            if not lost.done():
                lost.cancel()

    async def _mix(self, station: _Station) -> None:
        rng = random.Random(f"{self.spec.seed}:{station.id}")
        share = self.spec.status_share

        def next_call() -> tuple[str, dict[str, Any]]:
            if rng.random() < share:
                station.status_toggle = not station.status_toggle
                state = "Preparing" if station.status_toggle else "Available"
                return "StatusNotification", status(1, state)
            return "Heartbeat", {}

        await self._chain(station, next_call)

    async def _meter(self, station: _Station) -> None:
        samples = self.spec.meter_samples

        def next_call() -> tuple[str, dict[str, Any]]:
            register, at = self._next_meter(station)
            return "MeterValues", meter_value(station.transaction_id, register, at, samples)

        await self._chain(station, next_call)

    async def _idle(self, station: _Station) -> None:
        rng = random.Random(f"{self.spec.seed}:{station.id}")
        every = self.spec.heartbeat_every
        await asyncio.sleep(rng.uniform(0, every))
        while True:
            if not await self._guarded(station, "Heartbeat", {}):
                return
            await asyncio.sleep(every)

    # the storm

    async def _storm(self, ready: Sequence[_Station]) -> dict[str, Any]:
        spec = self.spec
        cpu_before = time.process_time()
        server_start = _sample(spec.watch_pid)
        dropped_at = time.perf_counter()
        dropped_wall = datetime.now(UTC)
        for station in ready:
            assert station.link is not None
            station.link.abort()
        await asyncio.sleep(spec.offline)
        back_at = time.perf_counter()
        self.recorder.measuring = True
        replays = [asyncio.create_task(self._come_back(s, dropped_wall)) for s in ready]
        late: set[asyncio.Task[None]] = set()
        if replays:  # no station ready: nothing to storm, the figures say so
            _, late = await asyncio.wait(replays, timeout=spec.duration)
        self.recorder.measuring = False
        for task in late:
            task.cancel()
        await asyncio.gather(*replays, return_exceptions=True)
        ended = time.perf_counter()
        server_end = _sample(spec.watch_pid)
        finished = [s.done_at - back_at for s in ready if s.done_at is not None]
        all_done = len(finished) == len(ready) and bool(ready)
        everything = [x for values in self.recorder.latencies.values() for x in values]
        window = ended - back_at
        return {
            "offline_seconds": round(back_at - dropped_at, 3),
            "done": len(finished),
            "not_done": len(ready) - len(finished),
            "all_done_seconds": round(max(finished), 3) if all_done else None,
            "done_after": summarize(finished).as_dict(),
            "calls": self.recorder.count,
            "latency": summarize(everything).as_dict(),
            "by_action": {
                action: summarize(values).as_dict()
                for action, values in sorted(self.recorder.latencies.items())
            },
            "errors": dict(self.recorder.errors),
            "notes": dict(self.recorder.notes),
            "reconnect_retries": sum(s.reconnect_tries for s in ready),
            "generator_cpu_share": round((time.process_time() - cpu_before) / window, 3),
            "server_cpu_share": _cpu_share(server_start, server_end, window),
            "transactions": {s.id: s.transactions for s in ready},
            "unfinished": [s.id for s in ready if s.done_at is None],
        }

    async def _come_back(self, station: _Station, dropped: datetime) -> None:
        """Reconnect, boot, replay the queue the drop left, in order."""
        rng = random.Random(f"{self.spec.seed}:{station.id}:storm")
        await asyncio.sleep(rng.uniform(0, self.spec.reconnect_jitter))
        await self._reconnect(station, rng)
        await self._storm_calls(station, dropped, rng)
        station.done_at = time.perf_counter()

    async def _reconnect(self, station: _Station, rng: random.Random) -> None:
        """Connect and boot, trying again after a growing, jittered pause, as stations do."""
        backoff = 0.25
        while True:
            try:
                await self._connect(station)
                boot = await self._call(station, "BootNotification", BOOT)
                if boot[0] == 3:
                    return
                self.recorder.error("reconnect: boot refused")
            except (OSError, TimeoutError, HandshakeFailed, CallFailed) as error:
                self.recorder.error(f"reconnect: {_kind(error)}")
            if station.link is not None:
                station.link.abort()
            station.reconnect_tries += 1
            await asyncio.sleep(rng.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, 4.0)

    async def _replay(
        self, station: _Station, rng: random.Random, action: str, payload: dict[str, Any]
    ) -> list[Any]:
        """Deliver one queued message: a station resends it until it is answered (OCPP 1.6
        4.7: transaction messages are retried), reconnecting if its link is lost."""
        while True:
            try:
                return await self._call(station, action, payload)
            except CallFailed as error:
                self.recorder.error(f"replay: {error.kind}, sent again")
                if error.kind == "closed":
                    await self._reconnect(station, rng)

    async def _storm_calls(
        self,
        station: _Station,
        dropped: datetime,
        rng: random.Random,
    ) -> None:
        spec = self.spec
        tx1 = station.transaction_id
        if station.start_payload is not None and rng.random() < spec.duplicate_share:
            # The station never saw the answer to its StartTransaction: it sends it again,
            # unchanged. The same transaction must come back, not a second one.
            again = await self._replay(station, rng, "StartTransaction", station.start_payload)
            self.recorder.note("duplicate StartTransaction sent")
            if again[0] != 3 or again[2].get("transactionId") != tx1:
                self.recorder.note("duplicate StartTransaction got another transactionId")
        # Registers grow as an 11 kW charge could (about 3 Wh a second): nothing is flagged.
        ms = timedelta(milliseconds=1)
        await self._replay(
            station,
            rng,
            "MeterValues",
            meter_value(tx1, 1.0, dropped + 100 * ms, spec.meter_samples),
        )
        await self._replay(
            station,
            rng,
            "StopTransaction",
            {
                "transactionId": tx1,
                "meterStop": 2,
                "timestamp": _now_text(dropped + 200 * ms),
                "reason": "EVDisconnected",
            },
        )
        start = await self._replay(
            station,
            rng,
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": spec.id_tag,
                "meterStart": 2,
                "timestamp": _now_text(dropped + 500 * ms),
            },
        )
        if start[0] != 3:
            self.recorder.error("replay: offline StartTransaction refused")
            return
        tx2 = int(start[2]["transactionId"])
        station.transactions.append(tx2)
        await self._replay(
            station,
            rng,
            "MeterValues",
            meter_value(tx2, 2.5, dropped + 800 * ms, spec.meter_samples),
        )
        await self._replay(
            station,
            rng,
            "StopTransaction",
            {
                "transactionId": tx2,
                "meterStop": 3,
                "timestamp": _now_text(dropped + 1000 * ms),
                "reason": "Local",
            },
        )
        await self._replay(station, rng, "StatusNotification", status(1, "Available"))


def _kind(error: BaseException) -> str:
    if isinstance(error, CallFailed):
        return error.kind
    if isinstance(error, HandshakeFailed):
        return f"handshake {error}"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return type(error).__name__


def _sample(pid: int | None) -> ProcessSample | None:
    return None if pid is None else sample_process(pid)


def _process_dict(sample: ProcessSample | None) -> dict[str, float] | None:
    if sample is None:
        return None
    return {"cpu_seconds": round(sample.cpu_seconds, 2), "rss_bytes": sample.rss_bytes}


def _cpu_share(
    start: ProcessSample | None, end: ProcessSample | None, seconds: float
) -> float | None:
    if start is None or end is None or seconds <= 0:
        return None
    return round((end.cpu_seconds - start.cpu_seconds) / seconds, 3)


async def _sample_every(pid: int | None, every: float, into: list[ProcessSample]) -> None:
    if pid is None:
        return
    while True:
        sample = sample_process(pid)
        if sample is not None:
            into.append(sample)
        await asyncio.sleep(every)


async def generate(
    spec: LoadSpec, on_ready: Callable[[dict[str, Any]], None] = lambda _: None
) -> dict[str, Any]:
    """Run the load ``spec`` describes in this process; its JSON-ready figures."""
    limit = raise_open_files_limit()
    result = await _Generator(spec, on_ready).run()
    result["open_files_limit"] = limit
    return result


# --------------------------------------------------------------------------- its own process


def _child(spec: LoadSpec, pipe: multiprocessing.connection.Connection) -> None:
    try:
        result = asyncio.run(generate(spec, on_ready=lambda info: pipe.send(("ready", info))))
        pipe.send(("result", result))
    except BaseException as error:
        pipe.send(("crashed", f"{type(error).__name__}: {error}"))
        raise
    finally:
        pipe.close()


class LoadProcess:
    """The generator in a spawned process: ``start``, ``wait_ready``, ``result``."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        context = multiprocessing.get_context("spawn")
        self._pipe, child_end = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child, args=(spec, child_end), name="bench-load", daemon=True
        )
        self._child_end = child_end
        self.ready: dict[str, Any] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> LoadProcess:
        self._process.start()
        self._child_end.close()  # ours is only the reading end
        return self

    def _receive(self, timeout: float) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pipe.poll(0.2):
                try:
                    kind, value = self._pipe.recv()
                except EOFError:
                    break
                return kind, value
            if not self._process.is_alive() and not self._pipe.poll(0):
                break
        if self._process.is_alive():
            return "crashed", f"no word from the load generator within {timeout:.0f} s"
        return "crashed", f"the load generator exited with {self._process.exitcode}"

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Block until the stations are prepared; their count and the setup time."""
        kind, value = self._receive(timeout)
        if kind == "ready":
            self.ready = value
            return dict(value)
        return {"crashed": value}

    def result(self, timeout: float) -> dict[str, Any]:
        """Block until the measurement ends; the figures (``{"crashed": why}`` if it died)."""
        kind, value = self._receive(timeout)
        if kind == "ready":  # result() without wait_ready()
            self.ready = value
            kind, value = self._receive(timeout)
        self.stop()
        return dict(value) if kind == "result" else {"crashed": value}

    def stop(self) -> None:
        """End the process (already done in the normal case)."""
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)

    def __enter__(self) -> LoadProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def run_load(spec: LoadSpec, *, budget: float | None = None) -> dict[str, Any]:
    """Run ``spec`` in its own process and wait for its figures."""
    wait = budget if budget is not None else spec.setup_timeout + spec.duration + 120
    with LoadProcess(spec) as process:
        return process.result(wait)


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m bench.load``: one per ``LoadSpec`` field."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Drive an OCPP 1.6 server with N raw stations; print one JSON line.",
    )
    parser.add_argument("--url", required=True, help="ws://HOST:PORT/ocpp (station id appended)")
    defaults = LoadSpec(url="ws://127.0.0.1/ocpp")
    for spec_field in dataclasses.fields(LoadSpec):
        if spec_field.name == "url":
            continue
        default = getattr(defaults, spec_field.name)
        flag = "--" + spec_field.name.replace("_", "-")
        if spec_field.name == "workload":
            parser.add_argument(flag, choices=WORKLOADS, default=default)
        elif spec_field.name == "watch_pid":
            parser.add_argument(flag, type=int, default=None, help="server pid to sample")
        else:
            parser.add_argument(flag, type=type(default), default=default)
    return parser


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    """The ``LoadSpec`` the parsed flags describe."""
    names = {f.name for f in dataclasses.fields(LoadSpec)}
    return LoadSpec(**{k: v for k, v in vars(args).items() if k in names})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generator from the command line; print its figures as one JSON line."""
    args = build_parser().parse_args(argv)
    try:
        spec = spec_from_args(args)
    except ValueError as error:
        print(f"python -m bench.load: {error}", file=sys.stderr)
        return 2
    result = run_load(spec)
    result.pop("transactions", None)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
