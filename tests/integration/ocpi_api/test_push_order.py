"""Order across objects: a location before a session or CDR there, a session's end before its CDR.

First the rule itself on the queue (``cpms.push_queue.due_heads`` and ``next_due``, no
HTTP), on pushes written as the fan-out writes them; then end to end: a real node, the real
eMSP peer, a raw OCPP 1.6 station charging with the peer's token while the peer is down.
When the peer comes back, everything it missed is due at once (several objects in flight),
and the order it received must still satisfy the rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from ocpi_peer import EmspPeer
from ocpi_support import register_directly
from push_support import (
    CARD,
    example,
    import_loc1,
    iso,
    meter,
    peer_token,
    settled,
    station_on_3256,
    yesterday,
)
from raw_station import raw_station
from sqlalchemy import select

from cpms import tariffs
from cpms.config import Settings
from cpms.model import OcpiPartner, OcpiPush, utcnow
from cpms.push_queue import SENT, due_heads, next_due, settle
from cpms.runtime import Runtime
from cpms.unit_of_work import UnitOfWorkFactory

# --------------------------------------------------------------------------- the rule


async def a_partner(uow: UnitOfWorkFactory) -> int:
    async with uow() as work:
        row = OcpiPartner(name="p", state="REGISTERED", outgoing_token="sealed", endpoints={})
        work.session.add(row)
        await work.commit()
        return row.id


async def queue(
    uow: UnitOfWorkFactory, partner_id: int, key: str, kind: str, **payload: str
) -> int:
    now = utcnow()
    async with uow() as work:
        push = OcpiPush(
            partner_id=partner_id, object_key=key, kind=kind, payload=payload,
            created_at=now, available_at=now, attempts=0,
        )  # fmt: skip
        work.session.add(push)
        await work.commit()
        return push.id


async def due(uow: UnitOfWorkFactory) -> list[str]:
    return [head.object_key for head in await due_heads(uow(), now=utcnow())]


async def sent(uow: UnitOfWorkFactory, *ids: int) -> None:
    await settle(uow(), list(ids), outcome=SENT, now=utcnow())


async def test_a_session_waits_for_its_location_and_a_cdr_for_its_session(
    uow: UnitOfWorkFactory,
) -> None:
    partner = await a_partner(uow)
    location = await queue(uow, partner, "location:L1", "location", location_id="L1")
    start = await queue(uow, partner, "session:S1", "session_start", location_id="L1")
    end = await queue(uow, partner, "session:S1", "session_end", location_id="L1")
    cdr = await queue(uow, partner, "cdr:C1", "cdr", location_id="L1", session_id="S1")
    other = await queue(uow, partner, "session:S2", "session_start", location_id="L2")

    assert await due(uow) == ["location:L1", "session:S2"]
    await sent(uow, location, other)
    assert await due(uow) == ["session:S1"]  # the CDR waits for the session's end
    await sent(uow, start, end)
    assert await due(uow) == ["cdr:C1"]
    await sent(uow, cdr)
    assert await due(uow) == []


async def test_a_location_the_partner_has_holds_up_only_older_sessions(
    uow: UnitOfWorkFactory,
) -> None:
    partner = await a_partner(uow)
    await sent(uow, await queue(uow, partner, "location:L1", "location", location_id="L1"))
    await queue(uow, partner, "session:S1", "session_start", location_id="L1")
    # A status change after the session started: the partner knows L1, the session goes.
    await queue(uow, partner, "location:L1", "evse_status", location_id="L1")
    assert await due(uow) == ["session:S1", "location:L1"]


async def test_a_session_waits_for_the_first_push_of_its_location_even_a_newer_one(
    uow: UnitOfWorkFactory,
) -> None:
    partner = await a_partner(uow)
    # The session started before the partner's full sync queued the location's PUT.
    await queue(uow, partner, "session:S1", "session_start", location_id="L1")
    location = await queue(uow, partner, "location:L1", "location", location_id="L1")
    assert await due(uow) == ["location:L1"]
    await sent(uow, location)
    assert await due(uow) == ["session:S1"]


async def test_a_waiting_push_is_not_when_anything_is_due(uow: UnitOfWorkFactory) -> None:
    partner = await a_partner(uow)
    location = await queue(uow, partner, "location:L1", "location", location_id="L1")
    await queue(uow, partner, "session:S1", "session_start", location_id="L1")
    later = utcnow() + timedelta(minutes=5)
    async with uow() as work:  # the location backs off: nothing is due for 5 minutes
        (await work.session.get(OcpiPush, location)).available_at = later  # type: ignore[union-attr]
        await work.commit()
    assert await due(uow) == []
    assert await next_due(uow()) == later  # not "now", for the session that waits


async def test_other_pushes_and_old_ones_without_a_location_never_wait(
    uow: UnitOfWorkFactory,
) -> None:
    partner = await a_partner(uow)
    await queue(uow, partner, "location:L1", "location", location_id="L1")
    await queue(uow, partner, "tariff:T1", "tariff", tariff_id="T1")
    await queue(uow, partner, "session:S0", "session_start")  # queued before the rule
    await queue(uow, partner, "command:X", "callback", url="https://x.example/cb")
    assert await due(uow) == ["location:L1", "tariff:T1", "session:S0", "command:X"]


# --------------------------------------------------------------------------- end to end


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime(settings.replace(ocpi_push_retry_max=0.5), node="push-order")
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_a_peer_that_was_down_gets_locations_before_sessions_and_ends_before_cdrs(
    node: Runtime, emsp_peer: EmspPeer
) -> None:
    partner_id = await register_directly(node, emsp_peer)
    await peer_token(node, emsp_peer, partner_id)
    emsp_peer.down = True
    # The oldest push (the probe once the peer is back) is a tariff's; after it everything
    # is due at once, four objects of the partner in flight.
    await tariffs.import_tariffs(node.uow(), [example("tariff_1_simple_2hour.json")])
    await import_loc1(node)
    await station_on_3256(node)
    async with raw_station(node.ocpp_port, "CP1") as station:
        await station.boot()
        for n in range(3):  # three sessions, each with its CDR
            answer = await station.result(
                "StartTransaction",
                {"connectorId": 1, "idTag": CARD, "meterStart": 0, "timestamp": iso(yesterday(n))},
            )
            tx = int(answer["transactionId"])
            await meter(station, tx, yesterday(n + 0.5), 5_000)
            stop = {"transactionId": tx, "meterStop": 6_000, "timestamp": iso(yesterday(n + 0.75))}
            await station.result("StopTransaction", stop)

    emsp_peer.down = False
    await settled(node)

    got = [(r.method, r.path) for r in emsp_peer.requests]
    location = got.index(("PUT", "/2.2.1/locations/BE/BEC/LOC1"))
    sessions = [i for i, (_, path) in enumerate(got) if "/sessions/" in path]
    cdrs = [i for i, (method, path) in enumerate(got) if (method, path) == ("POST", "/2.2.1/cdrs")]
    assert len(emsp_peer.sessions) == len(emsp_peer.cdrs) == 3
    assert location < min(sessions)
    assert location < min(cdrs)
    for cdr_index, cdr in zip(cdrs, [emsp_peer.requests[i].body for i in cdrs], strict=True):
        last_of_its_session = max(i for i in sessions if got[i][1].endswith(cdr["session_id"]))
        assert last_of_its_session < cdr_index
        assert emsp_peer.sessions[cdr["session_id"]]["status"] == "COMPLETED"
    async with node.uow() as work:
        outcomes = set(await work.session.scalars(select(OcpiPush.outcome)))
    assert outcomes <= {"SENT", "SUPERSEDED"}
    assert emsp_peer.problems == []
