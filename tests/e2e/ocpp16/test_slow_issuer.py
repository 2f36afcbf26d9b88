"""End to end: an eMSP asked in real time holds only its own driver, never the node.

A token is decided before the write it is for (``HandlerBase._authorize``), with no database
connection held while the eMSP is asked. These tests pin the two failures that rule prevents,
against a real node, a real eMSP peer and raw OCPP 1.6 stations:

- an eMSP that takes its time must not hold other stations' messages: they are answered
  while the StartTransaction waits for the eMSP (it used to wait inside the group commit's
  transaction, which holds every station's writes and, on SQLite, the write lock);
- many StartTransactions with uids nobody pushed, at once, must all be answered: asking
  used to open a second unit of work inside the shared transaction, which on SQLite waited
  for the lock its own batch held until the pool ran dry (the reconnect storm found it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from e2e.ocpp16.node import Node, iso
from ocpi_peer import EmspPeer
from ocpi_support import register_directly

from cpms.model import Session, utcnow

STATIONS = 24
"""Stations starting with unknown uids at once: more than the node's connection pool."""


class GatedPeer(EmspPeer):
    """An eMSP whose real-time authorization answers only once ``gate`` is opened."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def _authorize(self, request: web.Request) -> web.Response:
        self.waiting.set()
        await self.gate.wait()
        return await super()._authorize(request)


def start_payload(uid: str) -> dict[str, Any]:
    return {"connectorId": 1, "idTag": uid, "meterStart": 0, "timestamp": iso(utcnow())}


async def test_other_stations_are_answered_while_an_emsp_thinks(open_node: Node) -> None:
    async with GatedPeer() as peer:
        await register_directly(open_node.runtime, peer)
        await open_node.create_token("OUR-OWN-CARD")  # decided locally: nobody is asked
        async with (
            open_node.connect("SLOW-A") as waiting_station,
            open_node.connect("SLOW-B") as other,
        ):
            await waiting_station.boot()
            await other.boot()
            start = asyncio.create_task(
                waiting_station.call("StartTransaction", start_payload("NOBODY-PUSHED-ME"))
            )
            await asyncio.wait_for(peer.waiting.wait(), 5)
            # The eMSP has the question and sits on it; everyone else carries on.
            assert "currentTime" in await other.result("Heartbeat", {})
            status = {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"}
            assert await other.result("StatusNotification", status) == {}
            started = await other.result("StartTransaction", start_payload("OUR-OWN-CARD"))
            assert not start.done(), "the slow eMSP's driver was answered before the eMSP"
            peer.gate.set()
            frame = await start
        assert frame[0] == 3, frame
        # The peer does not know the uid (404): refused, and the session kept as INVALID.
        assert frame[2]["idTagInfo"]["status"] == "Invalid"
        assert started["idTagInfo"]["status"] == "Accepted"
        sessions = await open_node.rows(Session, Session.station_id == "SLOW-A")
        assert [s.status for s in sessions] == ["INVALID"]


async def start_unknown(
    node: Node, number: int, booted: asyncio.Queue[int], begin: asyncio.Event
) -> list[Any]:
    async with node.connect(f"STORM-{number}") as station:
        await station.boot()
        booted.put_nowait(number)
        await begin.wait()
        return await station.call("StartTransaction", start_payload(f"UNKNOWN-{number}"))


async def test_many_unknown_uids_at_once_are_all_answered(
    open_node: Node, emsp_peer: EmspPeer
) -> None:
    await register_directly(open_node.runtime, emsp_peer)  # so every unknown uid is asked
    booted: asyncio.Queue[int] = asyncio.Queue()
    begin = asyncio.Event()
    starts = [
        asyncio.create_task(start_unknown(open_node, n, booted, begin)) for n in range(STATIONS)
    ]
    for _ in range(STATIONS):
        await asyncio.wait_for(booted.get(), 10)
    begin.set()  # every start reaches the node within the same moment
    frames = await asyncio.gather(*starts)
    assert [frame[0] for frame in frames] == [3] * STATIONS, frames
    assert {frame[2]["idTagInfo"]["status"] for frame in frames} == {"Invalid"}
    assert len(await open_node.rows(Session)) == STATIONS
    assert len(emsp_peer.received("POST", "/authorize")) == STATIONS
