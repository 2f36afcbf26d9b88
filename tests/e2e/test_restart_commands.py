"""End to end: a command left PENDING by a crash is answered TIMEOUT as soon as a node starts.

A ``cpms serve`` process accepts an eMSP's START_SESSION for a raw OCPP 1.6 station that never
answers, and is killed (SIGKILL: no shutdown, nothing settled) while the command is PENDING.
The command's deadline passes while no node runs. A node started on the same database must
answer the eMSP TIMEOUT at once, not at its first periodic sweep (a minute later).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from e2e.test_serve import child_env, free_port, running
from ocpi_peer import EmspPeer
from ocpi_support import register_directly
from raw_station import STEP, raw_station
from sqlalchemy import Select, select

from cpms.admission import AdmissionPolicy
from cpms.config import Settings
from cpms.model import Evse, OcpiCommand
from cpms.runtime import Runtime
from cpms.unit_of_work import UnitOfWorkFactory

from support import EXAMPLES, TIME_UNIT

T = TypeVar("T")

STATION = "CRASH-CP-1"
DEADLINE = 3.0 * TIME_UNIT
"""Seconds the eMSP is told to wait (the command's deadline); the killed node never answers."""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=STEP)) as session:
        yield session


async def rows(uow: UnitOfWorkFactory, query: Select[tuple[T]]) -> list[T]:
    """Rows read straight from the database, whichever node (if any) runs."""
    async with uow() as work:
        return list(await work.session.scalars(query))


async def test_a_command_pending_at_a_crash_is_answered_timeout_when_the_next_node_starts(
    settings: Settings, uow: UnitOfWorkFactory, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    settings = settings.replace(station_admission=AdmissionPolicy.OPEN)
    token = json.loads((EXAMPLES / "token_example_2_full_rfid.json").read_text())
    async with EmspPeer(country_code="DE", party_id="TNM", name="TNM") as peer:
        # The partner row (and the key sealing our token for it), written by a first node.
        first = Runtime(settings, node="before-crash")
        await first.start()
        try:
            await register_directly(first, peer, name="TNM")
        finally:
            await first.stop()

        http_port, ocpp_port = free_port(), free_port()
        env = child_env(
            settings.database_url,
            CPMS_HTTP_PORT=str(http_port),
            CPMS_OCPP_PORT=str(ocpp_port),
            CPMS_SECRET_KEY_FILE=settings.secret_key_file,
            CPMS_STATION_ADMISSION="open",
            CPMS_OCPI_COMMAND_TIMEOUT=str(DEADLINE),
        )
        async with (
            running(tmp_path, env, http, http_port=http_port, ocpp_port=ocpp_port) as doomed,
            raw_station(ocpp_port, STATION) as station,
        ):
            assert (await station.boot())["status"] == "Accepted"
            await station.result(
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
            )
            [evse] = await rows(uow, select(Evse).where(Evse.station_id == STATION))
            body = {
                "response_url": peer.callback_url("crashed"),
                "token": token,
                "location_id": evse.location_id,
                "evse_uid": evse.uid,
                "connector_id": "1",
            }
            url = f"http://127.0.0.1:{http_port}/ocpi/2.2.1/commands/START_SESSION"
            status, envelope, _ = await peer.call("POST", url, body=body)
            asked_at = time.monotonic()
            assert (status, envelope["data"]["result"]) == (200, "ACCEPTED"), envelope
            call = await station.next_call()
            assert call[2] == "RemoteStartTransaction"
            # The station keeps the call unanswered; the node dies with the command open.
            doomed.process.kill()
            await doomed.process.wait()

        [command] = await rows(uow, select(OcpiCommand))
        assert command.state == "PENDING"
        await asyncio.sleep(max(0.0, asked_at + DEADLINE + 0.2 - time.monotonic()))
        assert peer.callbacks == []

        second = Runtime(settings, node="after-crash")
        await second.start()
        try:
            # Well before the first periodic sweep (60 s): only a sweep at start answers.
            await peer.wait_for(lambda: peer.callbacks, timeout=STEP)
            [stored] = await rows(uow, select(OcpiCommand))
        finally:
            await second.stop()

    assert [c.path for c in peer.callbacks] == ["/callbacks/crashed"]
    assert peer.callbacks[0].body["result"] == "TIMEOUT"
    assert (stored.state, stored.result) == ("TIMEOUT", "TIMEOUT")
    assert peer.problems == []
