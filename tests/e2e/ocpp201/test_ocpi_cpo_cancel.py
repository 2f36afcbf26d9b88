"""End to end: a reservation the CPO side ends is CANCELED_RESERVATION (OCPP 2.0.1).

The 2.0.1 mirror of ``tests/e2e/ocpp16/test_ocpi_cpo_cancel.py``, plus what only 2.0.1 can
say: an eMSP reserves by RESERVE_NOW on a raw 2.0.1 station, then the station reports the
reservation with ReservationStatusUpdate. Removed (the station dropped it, say the EVSE
became inoperative) is a cancellation on the CPO side: the eMSP gets CommandResult
CANCELED_RESERVATION on the ReserveNow's ``response_url``. Expired is not: the eMSP set the
expiry itself. The operator's CancelReservation through the operator API, accepted by the
2.0.1 station, is CANCELED_RESERVATION as with 1.6.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from e2e.ocpp16.node import Node, NodeStarter
from e2e.ocpp201.test_ocpi_commands import RFID, Wired, wired_station
from ocpi_models import check
from ocpi_peer import EmspPeer
from ocpi_support import cpo_url, register_directly
from raw_station import STEP

from cpms.admission import AdmissionPolicy
from cpms.documents.datetimes import format_datetime
from cpms.model import OcpiPush, Reservation, Session, utcnow

from support import ADMIN_TOKEN

STATION = "OCPI-V201-CANCEL"


@asynccontextmanager
async def reservation_of_an_emsp(
    start_node: NodeStarter,
) -> AsyncIterator[tuple[Node, EmspPeer, Wired, str, Reservation]]:
    """A node, an eMSP, a 2.0.1 station holding the eMSP's reservation, its response_url."""
    node = await start_node(station_admission=AdmissionPolicy.OPEN)
    async with (
        EmspPeer(country_code="DE", party_id="TNM", name="TNM") as peer,
        node.connect(STATION, version="ocpp2.0.1") as station,
    ):
        await register_directly(node.runtime, peer, name="TNM")
        wired = await wired_station(node, station)
        url = peer.callback_url()
        body = {
            "response_url": url,
            "token": RFID,
            "expiry_date": format_datetime(utcnow().replace(microsecond=0) + timedelta(minutes=30)),
            "reservation_id": "RES-201",
            "location_id": wired.location_id,
            "evse_uid": wired.evse_uid,
        }
        _, envelope, _ = await peer.call(
            "POST", cpo_url(node.runtime, "commands/RESERVE_NOW"), body=body
        )
        assert envelope["data"]["result"] == "ACCEPTED", envelope
        call = await station.next_call()
        assert call[2] == "ReserveNow", call
        await station.reply(call[1], {"status": "Accepted"})
        await peer.wait_for(lambda: results(peer, url) == [{"result": "ACCEPTED"}], timeout=STEP)
        reservation = await node.one(Reservation, Reservation.external_id == "RES-201")
        assert reservation.status == "ACCEPTED"
        yield node, peer, wired, url, reservation


def results(peer: EmspPeer, url: str) -> list[Any]:
    """The bodies POSTed to ``url``, in order."""
    path = "/callbacks/" + url.rsplit("/", 1)[-1]
    return [c.body for c in peer.callbacks if c.path == path and c.method == "POST"]


async def test_a_reservation_the_station_removed_is_canceled_reservation(
    start_node: NodeStarter,
) -> None:
    async with reservation_of_an_emsp(start_node) as (node, peer, wired, url, reservation):
        await wired.station.result(
            "ReservationStatusUpdate",
            {"reservationId": reservation.id, "reservationUpdateStatus": "Removed"},
        )
        await peer.wait_for(lambda: len(results(peer, url)) == 2, timeout=STEP)

    accepted, cancelled = results(peer, url)
    assert accepted == {"result": "ACCEPTED"}
    check("CommandResult", cancelled)
    assert cancelled["result"] == "CANCELED_RESERVATION"
    assert cancelled["message"] == [
        {"language": "en", "text": "the charging station removed the reservation"}
    ]
    ended = await node.one(Reservation, Reservation.id == reservation.id)
    assert ended.status == "CANCELLED"
    session = await node.one(Session, Session.reservation_id == reservation.id)
    assert (session.status, session.stop_reason) == ("COMPLETED", "ReservationCancelled")
    assert peer.problems == []


async def test_a_reservation_the_station_reports_expired_is_not(
    start_node: NodeStarter,
) -> None:
    async with reservation_of_an_emsp(start_node) as (node, peer, wired, url, reservation):
        await wired.station.result(
            "ReservationStatusUpdate",
            {"reservationId": reservation.id, "reservationUpdateStatus": "Expired"},
        )
        # The session's end reaches the eMSP; nothing reaches the ReserveNow's URL.
        await peer.wait_for(lambda: peer.cdrs, timeout=STEP)

    assert results(peer, url) == [{"result": "ACCEPTED"}]
    ended = await node.one(Reservation, Reservation.id == reservation.id)
    assert ended.status == "EXPIRED"


@pytest.mark.parametrize(("status", "told"), [("Accepted", True), ("Rejected", False)])
async def test_the_operators_cancel_at_a_2_0_1_station(
    start_node: NodeStarter, status: str, told: bool
) -> None:
    async with reservation_of_an_emsp(start_node) as (node, peer, wired, url, reservation):
        api = f"{node.runtime.base_url()}/api/stations/{STATION}/commands/CancelReservation"

        async def send() -> int:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    api,
                    json={"reservationId": reservation.id},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                ) as response,
            ):
                return response.status

        sending = asyncio.create_task(send())
        call = await wired.station.next_call()
        await wired.station.reply(call[1], {"status": status})
        assert await sending == 200
        if told:
            await peer.wait_for(lambda: len(results(peer, url)) == 2, timeout=STEP)

    assert call[2:] == ["CancelReservation", {"reservationId": reservation.id}]
    after = await node.one(Reservation, Reservation.id == reservation.id)
    if told:
        check("CommandResult", results(peer, url)[1])
        assert results(peer, url)[1]["result"] == "CANCELED_RESERVATION"
        assert after.status == "CANCELLED"
    else:
        queued = await node.rows(OcpiPush, OcpiPush.kind == "callback")
        assert [p.payload["body"] for p in queued if p.payload["url"] == url] == [
            {"result": "ACCEPTED"}
        ]
        assert after.status == "ACCEPTED"
