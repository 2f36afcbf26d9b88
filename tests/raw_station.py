"""A station that speaks raw OCPP-J text frames, sharing no code with the gateway.

End-to-end tests drive the server through this client so the gateway is checked by something
that builds and reads frames itself (plain ``json`` over a plain websocket), not through our
``rpc`` module or the ``ocpp`` library. CALLs the server sends while we wait for a response are
queued, to be read with ``next_call`` and answered with ``reply``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from support import TIME_UNIT

__all__ = ["STEP", "RawStation", "raw_station"]

STEP = 5.0 * TIME_UNIT
"""Seconds any single exchange may take."""

_ids = itertools.count(1)


class RawStation:
    """One connected station; see the module docstring."""

    def __init__(self, websocket: ClientConnection, station_id: str) -> None:
        self.websocket = websocket
        self.station_id = station_id
        self.incoming_calls: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def send_text(self, text: str | bytes) -> None:
        """Send one websocket message exactly as given."""
        await self.websocket.send(text)

    async def receive(self, timeout: float = STEP) -> list[Any]:  # noqa: ASYNC109
        """Return the next frame the server sends, parsed."""
        return json.loads(await asyncio.wait_for(self.websocket.recv(), timeout))

    async def call(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        unique_id: str | None = None,
        timeout: float = STEP,  # noqa: ASYNC109
    ) -> list[Any]:
        """Send a CALL and return the server's CALLRESULT or CALLERROR frame for it."""
        unique_id = unique_id or f"t{next(_ids)}"
        await self.send_text(json.dumps([2, unique_id, action, payload]))
        return await self.response_to(unique_id, timeout=timeout)

    async def response_to(self, unique_id: str, *, timeout: float = STEP) -> list[Any]:  # noqa: ASYNC109
        """Read frames until the response to ``unique_id``; queue server CALLs meanwhile."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout)
                if frame[0] == 2:
                    self.incoming_calls.put_nowait(frame)
                elif frame[1] == unique_id:
                    return frame

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL that must succeed; return its CALLRESULT payload."""
        frame = await self.call(action, payload)
        assert frame[0] == 3, f"{action} was answered {frame}"
        return frame[2]

    async def next_call(self, timeout: float = STEP) -> list[Any]:  # noqa: ASYNC109
        """Return the next CALL the server sent us: ``[2, id, action, payload]``."""
        if not self.incoming_calls.empty():
            return self.incoming_calls.get_nowait()
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout)
                if frame[0] == 2:
                    return frame

    async def reply(self, unique_id: str, payload: dict[str, Any]) -> None:
        """Answer a server CALL with a CALLRESULT."""
        await self.send_text(json.dumps([3, unique_id, payload]))

    async def boot(self, **extra: Any) -> dict[str, Any]:
        """Send a BootNotification in the connection's OCPP version and return the answer."""
        if self.websocket.subprotocol == "ocpp2.0.1":
            payload = {
                "reason": "PowerUp",
                "chargingStation": {"vendorName": "RawVendor", "model": "RawModel"},
            }
        else:
            payload = {"chargePointVendor": "RawVendor", "chargePointModel": "RawModel"}
        return await self.result("BootNotification", {**payload, **extra})


@asynccontextmanager
async def raw_station(
    port: int,
    station_id: str,
    *,
    version: str = "ocpp1.6",
    password: str | None = None,
    username: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[RawStation]:
    """Connect a raw station to ``ws(s)://127.0.0.1:port/ocpp/{station_id}``."""
    headers = {}
    if password is not None:
        credentials = f"{username or station_id}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    scheme = "wss" if ssl_context is not None else "ws"
    async with connect(
        f"{scheme}://127.0.0.1:{port}/ocpp/{station_id}",
        subprotocols=[version],  # type: ignore[list-item]
        additional_headers=headers,
        ssl=ssl_context,
        open_timeout=STEP,
        max_size=None,
    ) as websocket:
        yield RawStation(websocket, station_id)
