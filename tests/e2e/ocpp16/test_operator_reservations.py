"""End to end: the operator lists reservations and cancels an eMSP's by the listed id (OCPP 1.6).

Path under test: an eMSP peer reserves by RESERVE_NOW on a real node (a raw 1.6 station
accepts); ``GET /api/reservations`` (checked against ``openapi.json``) lists it with its id,
station, EVSE, token, expiry, state and that an eMSP made it; the filters (``station_id``,
``active``) and paging narrow the list; the listed ``id`` is what the station's
CancelReservation takes, and after that cancel the reservation is no longer active. The
``cpms reservations list`` command (a real process on the same database) shows the same.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from e2e.ocpp16.node import Node
from e2e.ocpp16.test_ocpi_commands import STATION, Emsp, registered, wired_station
from e2e.ocpp16.test_ocpi_cpo_cancel import operator_command, reserved
from operator_check import operator
from raw_station import STEP

from support import TIME_UNIT


@pytest.fixture
async def tnm(open_node: Node) -> AsyncIterator[Emsp]:
    """The eMSP of the official token examples (DE/TNM)."""
    async with registered(open_node, "TNM") as emsp:
        yield emsp


async def listed(node: Node, query: str = "") -> dict[str, Any]:
    status, page = await operator(node.runtime, "GET", f"/reservations{query}")
    assert status == 200, page
    return page


async def cpms_cli(node: Node, *argv: str) -> tuple[int, str, str]:
    """Run the real ``python -m cpms ARGV`` on the node's database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CPMS_")}
    env["CPMS_DATABASE_URL"] = node.settings.database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cpms", *argv,
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 20 * TIME_UNIT)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_operator_lists_an_emsps_reservation_and_cancels_it_by_its_id(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        body = await reserved(open_node, tnm, wired, "RES-LIST-1")
        everything = await listed(open_node)
        [item] = everything["items"]
        active = await listed(open_node, f"?station_id={STATION}&active=true")
        inactive = await listed(open_node, "?active=false")
        elsewhere = await listed(open_node, "?station_id=NO-SUCH-STATION")
        code, out, err = await cpms_cli(open_node, "reservations", "list", "--station", STATION)

        status, answer, call = await operator_command(
            open_node, wired.station, "CancelReservation", {"reservationId": item["id"]}, "Accepted"
        )
        path = "/callbacks/" + body["response_url"].rsplit("/", 1)[-1]
        await tnm.peer.wait_for(
            lambda: len([c for c in tnm.peer.callbacks if c.path == path]) == 2, timeout=STEP
        )
        after = await listed(open_node, "?active=true")
        [cancelled] = (await listed(open_node, "?active=false"))["items"]

        second = await reserved(open_node, tnm, wired, "RES-LIST-2")
        paged = await listed(open_node, "?offset=1&limit=1")
        code_json, out_json, _ = await cpms_cli(
            open_node, "reservations", "list", "--active", "--json"
        )

    assert everything["total"] == 1
    assert item == item | {
        "station_id": STATION,
        "location_id": wired.location_id,
        "evse_uid": wired.evse_uid,
        "token": {
            "country_code": "DE",
            "party_id": "TNM",
            "uid": body["token"]["uid"],
            "type": "RFID",
            "contract_id": body["token"]["contract_id"],
        },
        "expiry_date": body["expiry_date"],
        "status": "ACCEPTED",
        "active": True,
        "from_emsp": True,
        "partner_id": tnm.partner_id,
        "emsp_reservation_id": "RES-LIST-1",
    }
    assert active["items"] == [item]
    assert (inactive["total"], elsewhere["total"]) == (0, 0)
    assert code == 0, err
    fields = out.strip().split("\t")
    assert fields[:4] == [str(item["id"]), "ACCEPTED", STATION, wired.evse_uid]
    assert fields[-1] == f"eMSP {tnm.partner_id}"

    assert (status, answer["response"], call) == (
        200,
        {"status": "Accepted"},
        {"reservationId": item["id"]},
    )
    told = [c.body["result"] for c in tnm.peer.callbacks if c.path == path]
    assert told == ["ACCEPTED", "CANCELED_RESERVATION"]
    assert after["total"] == 0
    assert (cancelled["id"], cancelled["status"], cancelled["active"]) == (
        item["id"],
        "CANCELLED",
        False,
    )

    assert (paged["total"], paged["offset"], paged["limit"]) == (2, 1, 1)
    [newer] = paged["items"]
    assert (newer["emsp_reservation_id"], newer["active"]) == ("RES-LIST-2", True)
    assert newer["expiry_date"] == second["expiry_date"]
    assert code_json == 0
    assert [r["id"] for r in json.loads(out_json)["items"]] == [newer["id"]]


async def test_a_bad_active_filter_is_400(open_node: Node) -> None:
    status, answer = await operator(open_node.runtime, "GET", "/reservations?active=yes")

    assert status == 400
    assert "active" in answer["error"]["message"]
