"""Integration tests of how the gateway finds dead stations (FIELD-NOTES 1, 2).

Two independent mechanisms, each on a real server on 127.0.0.1 port 0:

- the silence watchdog: a station that keeps its websocket open (its client answers pings)
  but sends no OCPP message for ``silence_limit`` is closed with 1001 and the core is told it
  went silent; a station that keeps talking stays; end to end with a real ``Runtime``
  (``heartbeat_interval=1``), the silent station goes offline and its EVSEs UNKNOWN in the
  database, on SQLite and PostgreSQL;
- websocket keepalive: a client that stops answering pings (a raw TCP socket that did the
  upgrade by hand and then stays mute) is dropped after ping interval + ping timeout, while a
  client that answers them stays.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from raw_station import STEP, raw_station
from sqlalchemy import select

from cpms.admission import Admission, AdmissionPolicy, Verdict
from cpms.config import Settings
from cpms.model import ChargingStation, Evse
from cpms.runtime import Runtime
from cpms.station_lifecycle import list_station_events
from ocpp_gateway.rpc import Call, OcppVersion
from ocpp_gateway.server import CallContext, Handler, OcppServer

from support import TIME_UNIT

SILENCE_LIMIT = 0.5 * TIME_UNIT
"""Seconds without a message before the watchdog closes a connection (server-level tests)."""
KEEPALIVE = 0.3 * TIME_UNIT
"""Ping interval and ping timeout of the keepalive tests."""
HEARTBEAT_INTERVAL = max(1, round(TIME_UNIT))
"""The Runtime's HeartbeatInterval; its silence limit is twice this."""


class Core:
    """Stands in for the core: admits every station and remembers why each one left."""

    def __init__(self) -> None:
        self.disconnects: list[tuple[str, str]] = []
        self.disconnected = asyncio.Event()

    async def admit(self, station_id: str, password: str | None) -> Admission:
        return Admission(Verdict.ACCEPTED, station_id)

    async def on_disconnected(self, station_id: str, reason: str) -> None:
        self.disconnects.append((station_id, reason))
        self.disconnected.set()


async def answer_heartbeat(context: CallContext, call: Call) -> dict[str, Any]:
    return {"currentTime": context.received_at.isoformat()}


HANDLERS: dict[OcppVersion, dict[str, Handler]] = {OcppVersion.V16: {"Heartbeat": answer_heartbeat}}


@asynccontextmanager
async def running(core: Core, **options: Any) -> AsyncIterator[OcppServer]:
    server = OcppServer(
        host="127.0.0.1",
        port=0,
        admit=core.admit,
        on_disconnected=core.on_disconnected,
        handlers=HANDLERS,
        open_timeout=STEP,
        **options,
    )
    await server.start()
    try:
        yield server
    finally:
        async with asyncio.timeout(STEP):
            await server.stop()


# The silence watchdog


async def test_a_station_that_answers_pings_but_sends_nothing_is_disconnected_as_silent() -> None:
    core = Core()
    # Pings every tenth of the limit, answered by the client: they do not count as messages.
    async with (
        running(
            core,
            silence_limit=SILENCE_LIMIT,
            ping_interval=SILENCE_LIMIT / 10,
            ping_timeout=STEP,
            close_timeout=STEP,
        ) as server,
        raw_station(server.port, "MUTE") as station,
    ):
        await asyncio.wait_for(station.websocket.wait_closed(), 2 * SILENCE_LIMIT + STEP)
        assert station.websocket.close_code == 1001
        assert station.websocket.close_reason == "no message within the heartbeat deadline"
        await asyncio.wait_for(core.disconnected.wait(), STEP)
        assert core.disconnects == [("MUTE", f"silent for over {SILENCE_LIMIT:g} s")]
        assert server.stations() == []


async def test_a_station_that_keeps_talking_stays_while_a_silent_neighbour_is_dropped() -> None:
    core = Core()
    async with (
        running(core, silence_limit=SILENCE_LIMIT, close_timeout=STEP) as server,
        raw_station(server.port, "CHATTY") as chatty,
        raw_station(server.port, "MUTE") as mute,
    ):
        # Heartbeats at a fifth of the limit, for four limits: the silent one is gone by then.
        for _ in range(20):
            assert (await chatty.result("Heartbeat", {}))["currentTime"]
            await asyncio.sleep(SILENCE_LIMIT / 5)
        await asyncio.wait_for(mute.websocket.wait_closed(), STEP)
        assert mute.websocket.close_code == 1001

        assert chatty.websocket.close_code is None
        assert server.stations() == ["CHATTY"]
        assert [station_id for station_id, _ in core.disconnects] == ["MUTE"]


async def test_without_a_silence_limit_a_quiet_station_stays() -> None:
    core = Core()
    async with (
        running(core, silence_limit=None) as server,
        raw_station(server.port, "QUIET") as station,
    ):
        await asyncio.sleep(3 * SILENCE_LIMIT)
        assert (await station.result("Heartbeat", {}))["currentTime"]
        assert station.websocket.close_code is None
        assert core.disconnects == []


# End to end: the Runtime takes a silent station offline


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Runtime]:
    """A node that registers unknown stations and wants a heartbeat every second."""
    runtime = Runtime(
        settings.replace(
            heartbeat_interval=HEARTBEAT_INTERVAL, station_admission=AdmissionPolicy.OPEN
        ),
        node="liveness-node",
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def station_and_evses(node: Runtime, station_id: str) -> tuple[bool, list[str]]:
    async with node.uow() as uow:
        station = await uow.get(ChargingStation, station_id)
        statuses = await uow.session.scalars(
            select(Evse.status).where(Evse.station_id == station_id).order_by(Evse.ocpp_evse_id)
        )
        return station.online, list(statuses)


async def test_a_silent_station_goes_offline_with_its_evses_unknown(node: Runtime) -> None:
    async with raw_station(node.ocpp_port, "SILENT-1") as station:
        boot = await station.boot()
        assert (boot["status"], boot["interval"]) == ("Accepted", HEARTBEAT_INTERVAL)
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        assert await station.result("StatusNotification", status) == {}
        assert await station_and_evses(node, "SILENT-1") == (True, ["AVAILABLE"])

        silence_limit = 2 * HEARTBEAT_INTERVAL
        await asyncio.wait_for(station.websocket.wait_closed(), 2 * silence_limit + STEP)
        assert station.websocket.close_code == 1001
        assert station.websocket.close_reason == "no message within the heartbeat deadline"

    async with asyncio.timeout(STEP):
        # Polling on purpose: the offline write goes through the group committer.
        while await station_and_evses(node, "SILENT-1") != (False, ["UNKNOWN"]):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    offline = await list_station_events(node.uow(), "SILENT-1", kind="offline")
    assert [event.summary for event in offline.items] == [
        f"offline: silent for over {silence_limit} s"
    ]


# Websocket keepalive


async def mute_websocket(port: int, station_id: str) -> tuple[asyncio.StreamReader, Any]:
    """Open a websocket by hand, then never read from it nor answer anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ocpp/{station_id} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: ocpp1.6\r\n"
            "\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split what an (unmasking) server sent into (opcode, payload) frames."""
    frames = []
    while len(data) >= 2:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        start = 2
        if length == 126:
            (length,) = struct.unpack("!H", data[2:4])
            start = 4
        elif length == 127:
            (length,) = struct.unpack("!Q", data[2:10])
            start = 10
        frames.append((opcode, data[start : start + length]))
        data = data[start + length :]
    return frames


PING, CLOSE = 0x9, 0x8


async def test_a_station_that_stops_answering_pings_is_dropped() -> None:
    core = Core()
    async with running(
        core,
        silence_limit=None,
        ping_interval=KEEPALIVE,
        ping_timeout=KEEPALIVE,
        close_timeout=KEEPALIVE,
    ) as server:
        reader, writer = await mute_websocket(server.port, "DEAD")
        try:
            await asyncio.wait_for(core.disconnected.wait(), 3 * KEEPALIVE + STEP)
            assert [station_id for station_id, _ in core.disconnects] == ["DEAD"]
            assert server.stations() == []
            # Now read what the server sent while we played dead: a ping, then its close frame.
            sent = await asyncio.wait_for(reader.read(), STEP)
        finally:
            writer.close()
        frames = server_frames(sent)
        assert frames[0][0] == PING
        close_payload = next(payload for opcode, payload in frames if opcode == CLOSE)
        code = struct.unpack("!H", close_payload[:2])[0]
        assert (code, close_payload[2:]) == (1011, b"keepalive ping timeout")


async def test_a_station_that_answers_pings_stays_connected() -> None:
    core = Core()
    async with (
        running(
            core,
            silence_limit=None,
            ping_interval=KEEPALIVE,
            ping_timeout=KEEPALIVE,
            close_timeout=KEEPALIVE,
        ) as server,
        raw_station(server.port, "ALIVE") as station,
    ):
        # Five ping intervals without a message: the websockets client answers every ping.
        await asyncio.sleep(5 * KEEPALIVE)
        assert (await station.result("Heartbeat", {}))["currentTime"]
        assert station.websocket.close_code is None
        assert server.stations() == ["ALIVE"]
        assert core.disconnects == []
