"""Helpers of the push tests that run a node and a peer: waiting, locations, a station, tokens.

Shared by ``tests/integration/ocpi_api/test_push_recovery.py``, ``test_initial_push.py``,
``test_push_order.py`` and ``test_push_idle.py``: the node is a real ``Runtime``, the peer
a real ``EmspPeer`` (or a subclass of it a test defines), changes are made through the
core's services and a raw OCPP 1.6 station.
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

from ocpi_peer import EmspPeer, Recorded
from ocpi_support import cpo_url
from raw_station import RawStation
from sqlalchemy import func, select

from cpms import locations, stations
from cpms.locations import EvseWiring
from cpms.model import OcpiPush, OutboxEntry, Token, utcnow
from cpms.runtime import Runtime

from support import EXAMPLES, TIME_UNIT

__all__ = [
    "CARD",
    "WAIT",
    "comparable",
    "example",
    "import_loc1",
    "iso",
    "location_document",
    "meter",
    "peer_token",
    "pushes",
    "requests_to",
    "served",
    "settled",
    "station_on_3256",
    "status",
    "yesterday",
]

WAIT = 15 * TIME_UNIT
"""Seconds any delivery may take (backoffs are at most half a second in these tests)."""
CARD = "EMSP-CARD-1"


def example(name: str) -> dict[str, Any]:
    """An official OCPI 2.2.1 example payload (shared/, never modified)."""
    document: dict[str, Any] = json.loads((EXAMPLES / name).read_text("utf-8"))
    return document


def location_document(number: int, *, publish: bool = True) -> dict[str, Any]:
    """The official location example as location ``LOC-<number>``, its EVSE uids its own."""
    document = copy.deepcopy(example("location_example.json"))
    document["id"] = f"LOC-{number}"
    document["publish"] = publish
    for evse in document["evses"]:
        evse["uid"] = f"{evse['uid']}-{number}"
        evse["evse_id"] = f"{evse['evse_id']}{number}"
    return document


async def settled(runtime: Runtime) -> None:
    """Wait until the outbox is fanned out and no push is pending."""
    async with asyncio.timeout(WAIT):
        while True:
            async with runtime.uow() as uow:
                outbox = await uow.session.scalar(
                    select(func.count())
                    .select_from(OutboxEntry)
                    .where(OutboxEntry.processed_at.is_(None))
                )
                pending = await uow.session.scalar(
                    select(func.count()).select_from(OcpiPush).where(OcpiPush.done_at.is_(None))
                )
            if not outbox and not pending:
                return
            await asyncio.sleep(0.05)


async def pushes(runtime: Runtime, object_key: str | None = None) -> list[OcpiPush]:
    """The pushes of ``object_key`` (all of them without), in id order."""
    query = select(OcpiPush).order_by(OcpiPush.id)
    if object_key is not None:
        query = query.where(OcpiPush.object_key == object_key)
    async with runtime.uow() as uow:
        return list(await uow.session.scalars(query))


async def served(runtime: Runtime, peer: EmspPeer, path: str) -> Any:
    """What we serve to the peer on our OCPI GET ``path`` (under /ocpi/2.2.1)."""
    status, envelope, _ = await peer.call("GET", cpo_url(runtime, path))
    assert status == 200, envelope
    assert envelope["status_code"] == 1000, envelope
    return envelope["data"]


def requests_to(peer: EmspPeer, method: str, path: str) -> list[Recorded]:
    """What the peer received: ``method`` on exactly ``/2.2.1/<path>``."""
    return [r for r in peer.requests if r.method == method and r.path == f"/2.2.1/{path}"]


def comparable(location: dict[str, Any]) -> dict[str, Any]:
    """A Location to compare with another copy: EVSEs by uid, no ``last_updated``."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "last_updated"}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    document = strip(location)
    document["evses"] = sorted(document.get("evses", []), key=lambda evse: evse["uid"])
    for evse in document["evses"]:
        evse["connectors"] = sorted(evse["connectors"], key=lambda connector: connector["id"])
    return document


async def import_loc1(runtime: Runtime) -> dict[str, Any]:
    """Import the official location example (LOC1 of BE*BEC, EVSEs 3256 and 3257)."""
    document = example("location_example.json")
    await locations.import_locations(runtime.uow(), [document])
    return document


async def station_on_3256(runtime: Runtime, station_id: str = "CP1") -> None:
    """Create a station at LOC1 and wire EVSE 3256 to its connector 1."""
    await stations.create_station(runtime.uow(), station_id, location_id="LOC1")
    await locations.change_evse(
        runtime.uow(), "LOC1", "3256", {}, EvseWiring(station_id=station_id, ocpp_evse_id=1)
    )


async def status(station: RawStation, value: str) -> None:
    """A StatusNotification of connector 1."""
    answer = await station.result(
        "StatusNotification", {"connectorId": 1, "status": value, "errorCode": "NoError"}
    )
    assert answer == {}


async def peer_token(runtime: Runtime, peer: EmspPeer, partner_id: int, uid: str = CARD) -> None:
    """A token of the peer, as its Tokens push would have stored it (whitelist ALLOWED)."""
    async with runtime.uow() as uow:
        uow.session.add(
            Token(
                country_code=peer.country_code,
                party_id=peer.party_id,
                uid=uid,
                type="RFID",
                contract_id=f"DE-EMS-{uid}",
                issuer=peer.name,
                valid=True,
                whitelist="ALLOWED",
                source="ocpi",
                partner_id=partner_id,
                last_updated=utcnow(),
            )
        )
        await uow.commit()


def yesterday(hours: float = 0) -> datetime:
    """Yesterday 08:00 UTC plus ``hours`` (a station clock we believe)."""
    day = utcnow().date() - timedelta(days=1)
    return datetime.combine(day, time(8), UTC) + timedelta(seconds=round(hours * 3600))


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def meter(station: RawStation, transaction_id: int, at: datetime, register_wh: int) -> None:
    """One MeterValues of connector 1: the energy register at ``at``."""
    payload = {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [
            {
                "timestamp": iso(at),
                "sampledValue": [
                    {"value": str(register_wh), "unit": "Wh", "context": "Sample.Periodic"}
                ],
            }
        ],
    }
    assert await station.result("MeterValues", payload) == {}
