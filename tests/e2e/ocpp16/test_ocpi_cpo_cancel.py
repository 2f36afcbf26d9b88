"""End to end: a reservation the CPO cancels is CANCELED_RESERVATION for the eMSP (OCPP 1.6).

Path under test: an eMSP peer reserves by RESERVE_NOW on a real node (a raw 1.6 station
accepts), then the operator cancels that reservation the way operators cancel today: the
station's CancelReservation sent through the operator API (``POST
/api/stations/{id}/commands/CancelReservation`` -> ``cpms.commands.send_command``). When the
station accepts, the reservation and its RESERVATION session end, and the eMSP gets a
CommandResult CANCELED_RESERVATION POSTed to the ReserveNow's ``response_url``, after the
ReserveNow's own ACCEPTED (OCPI 2.2.1 13.1, "Reservation canceled by the CPO"; CHECKLIST
7.4). Not when the station refuses the cancel, not when the eMSP cancels the reservation
itself with CANCEL_RESERVATION, and not when the reservation expires. OCPP 1.6 has no
message by which a station reports a reservation it dropped; the 2.0.1 station's
ReservationStatusUpdate is in ``tests/e2e/ocpp201/test_ocpi_cpo_cancel.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from e2e.ocpp16.node import Node
from e2e.ocpp16.test_ocpi_commands import (
    STATION,
    Emsp,
    Wired,
    accepted,
    answer_call,
    queued_result,
    registered,
    reserve_body,
    wired_station,
)
from ocpi_models import check
from raw_station import STEP, RawStation

from cpms.model import OcpiPush, Reservation, Session
from cpms.reservations import expire_reservations

from support import ADMIN_TOKEN


@pytest.fixture
async def tnm(open_node: Node) -> AsyncIterator[Emsp]:
    """The eMSP of the official token examples (DE/TNM)."""
    async with registered(open_node, "TNM") as emsp:
        yield emsp


async def operator_command(
    node: Node, station: RawStation, name: str, arguments: dict[str, Any], status: str
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Send ``name`` through the operator API while the station answers ``status``.

    Returns the HTTP status, the API's answer and the CALL the station received.
    """
    url = f"{node.runtime.base_url()}/api/stations/{STATION}/commands/{name}"

    async def send() -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url, json=arguments, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ) as response,
        ):
            return response.status, await response.json()

    sending = asyncio.create_task(send())
    call = await answer_call(station, name, {"status": status})
    status_code, answer = await sending
    return status_code, answer, call


async def reserved(node: Node, emsp: Emsp, wired: Wired, reservation_id: str) -> dict[str, Any]:
    """A reservation the station accepted; its ReserveNow body (``response_url`` in it)."""
    body = reserve_body(emsp, wired, reservation_id)
    await accepted(node, emsp, "RESERVE_NOW", body)
    await answer_call(wired.station, "ReserveNow", {"status": "Accepted"})
    assert await queued_result(node, body["response_url"]) == {"result": "ACCEPTED"}
    return body


async def results_for(node: Node, url: str) -> list[dict[str, Any]]:
    """Every body queued for ``url``, in order."""
    rows = await node.rows(OcpiPush, OcpiPush.kind == "callback", order_by=OcpiPush.id)
    return [dict(row.payload["body"]) for row in rows if row.payload["url"] == url]


async def test_the_operators_cancel_is_canceled_reservation_for_the_emsp(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        body = await reserved(open_node, tnm, wired, "RES-CPO-1")
        [reservation] = await open_node.rows(Reservation)
        status, answer, call = await operator_command(
            open_node,
            wired.station,
            "CancelReservation",
            {"reservationId": reservation.id},
            "Accepted",
        )
        path = "/callbacks/" + body["response_url"].rsplit("/", 1)[-1]
        await tnm.peer.wait_for(
            lambda: len([c for c in tnm.peer.callbacks if c.path == path]) == 2, timeout=STEP
        )

    assert (status, answer["response"]) == (200, {"status": "Accepted"})
    assert call == {"reservationId": reservation.id}
    first, then = [c for c in tnm.peer.callbacks if c.path == path]
    assert first.body == {"result": "ACCEPTED"}
    check("CommandResult", then.body)
    assert then.method == "POST"
    assert then.body["result"] == "CANCELED_RESERVATION"
    assert "CPO" in then.body["message"][0]["text"]
    [cancelled] = await open_node.rows(Reservation)
    assert cancelled.status == "CANCELLED"
    [session] = await open_node.rows(Session)
    assert (session.status, session.stop_reason) == ("COMPLETED", "ReservationCancelled")
    assert tnm.peer.problems == []


async def test_a_cancel_the_station_refuses_changes_nothing(open_node: Node, tnm: Emsp) -> None:
    async with wired_station(open_node) as wired:
        body = await reserved(open_node, tnm, wired, "RES-CPO-2")
        [reservation] = await open_node.rows(Reservation)
        status, answer, _ = await operator_command(
            open_node,
            wired.station,
            "CancelReservation",
            {"reservationId": reservation.id},
            "Rejected",
        )

    assert (status, answer["response"]) == (200, {"status": "Rejected"})
    assert await results_for(open_node, body["response_url"]) == [{"result": "ACCEPTED"}]
    [still] = await open_node.rows(Reservation)
    assert still.status == "ACCEPTED"
    [session] = await open_node.rows(Session)
    assert session.status == "RESERVATION"


async def test_the_emsps_own_cancel_is_not_canceled_reservation(open_node: Node, tnm: Emsp) -> None:
    async with wired_station(open_node) as wired:
        body = await reserved(open_node, tnm, wired, "RES-CPO-3")
        cancel = {"response_url": tnm.peer.callback_url(), "reservation_id": "RES-CPO-3"}
        await accepted(open_node, tnm, "CANCEL_RESERVATION", cancel)
        await answer_call(wired.station, "CancelReservation", {"status": "Accepted"})
        assert await queued_result(open_node, cancel["response_url"]) == {"result": "ACCEPTED"}

    assert await results_for(open_node, body["response_url"]) == [{"result": "ACCEPTED"}]
    [reservation] = await open_node.rows(Reservation)
    assert reservation.status == "CANCELLED"


async def test_an_expired_reservation_is_not_canceled_reservation(
    open_node: Node, tnm: Emsp
) -> None:
    async with wired_station(open_node) as wired:
        body = await reserved(open_node, tnm, wired, "RES-CPO-4")
    [reservation] = await open_node.rows(Reservation)

    async with open_node.runtime.uow() as uow:
        ended = await expire_reservations(uow, now=reservation.expiry_date + timedelta(seconds=1))
        await uow.commit()

    assert ended == 1
    assert await results_for(open_node, body["response_url"]) == [{"result": "ACCEPTED"}]
    [expired] = await open_node.rows(Reservation)
    assert expired.status == "EXPIRED"
