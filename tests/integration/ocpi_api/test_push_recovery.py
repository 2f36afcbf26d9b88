"""A PATCH the partner refuses as "unknown object": we GET its copy, then PUT the object whole.

CHECKLIST 1.5: "If a PATCH fails, the client should GET the object from the receiver; if
absent, PUT the full object." A real node on SQLite (and PostgreSQL when configured) and the
real eMSP peer (``tests/ocpi_peer.py``), or a subclass of it that answers as a test needs:

- a session PATCH the peer answers 404 (it lost the session): GET 404, PUT of the session;
- an EVSE the peer lacks under a location it holds: the real peer answers the GET of the
  EVSE 404 / OCPI 2003, i.e. "absent": the whole location is PUT;
- a GET that fails (HTTP 503): a transient failure, everything is tried again later (from
  the PATCH), with the attempt counted and the error kept;
- a PUT refused (OCPI 2001) after the GET: FAILED, parked for the operator, not retried.

``held`` (how a GET answer is read) is checked on its own first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from ocpi_models import check
from ocpi_peer import EmspPeer, Recorded
from ocpi_support import register_directly
from push_support import (
    CARD,
    WAIT,
    comparable,
    import_loc1,
    iso,
    meter,
    peer_token,
    pushes,
    requests_to,
    served,
    settled,
    station_on_3256,
    status,
    yesterday,
)
from raw_station import raw_station

from cpms import locations
from cpms.config import Settings
from cpms.runtime import Runtime
from ocpi_api.client import OcpiReply
from ocpi_api.push import held


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime(settings.replace(ocpi_push_retry_max=0.5), node="push-recovery")
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def calls(peer: EmspPeer, since: int = 0) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in peer.requests[since:]]


# --------------------------------------------------------------------------- reading a GET


@pytest.mark.parametrize(
    ("reply", "holds"),
    [
        (OcpiReply(200, 1000, {"id": "LOC1"}), True),
        (OcpiReply(200, 1000, None), False),  # success without the object
        (OcpiReply(404, 2000), False),
        (OcpiReply(404, None), False),  # a bare 404
        (OcpiReply(200, 2003), False),  # unknown Location, in a 200
        (OcpiReply(200, 2004), False),  # "unknown" the way tokens say it
        (OcpiReply(405, 2000), False),  # no GET there: a whole PUT repairs all the same
        (OcpiReply(501, None), False),
        (OcpiReply(503, None), None),  # down: ask again later
        (OcpiReply(200, 3000), None),
        (OcpiReply(200, 4003), None),  # a hub cannot reach the partner
        (OcpiReply(401, 2000), None),  # credentials being changed
    ],
)
def test_a_get_answer_says_present_absent_or_ask_later(reply: OcpiReply, holds: object) -> None:
    assert held(reply) is holds


# --------------------------------------------------------------------------- with the peer


async def test_a_session_patch_the_peer_refuses_is_followed_by_a_get_and_a_put(
    node: Runtime, emsp_peer: EmspPeer
) -> None:
    partner_id = await register_directly(node, emsp_peer)
    await import_loc1(node)
    await station_on_3256(node)
    await peer_token(node, emsp_peer, partner_id)
    await settled(node)

    async with raw_station(node.ocpp_port, "CP1") as station:
        await station.boot()
        answer = await station.result(
            "StartTransaction",
            {"connectorId": 1, "idTag": CARD, "meterStart": 0, "timestamp": iso(yesterday())},
        )
        tx = int(answer["transactionId"])
        await settled(node)
        (session_id,) = emsp_peer.sessions
        emsp_peer.sessions.clear()  # the eMSP lost it
        before = len(emsp_peer.requests)

        await meter(station, tx, yesterday(1), 7_000)
        await settled(node)

    url = f"/2.2.1/sessions/{node.settings.country_code}/{node.settings.party_id}/{session_id}"
    assert calls(emsp_peer, before) == [("PATCH", url), ("GET", url), ("PUT", url)]
    get = emsp_peer.requests[before + 1]
    assert get.headers["OCPI-to-party-id"] == "EMS"  # a functional request: routed
    (running,) = await served(node, emsp_peer, "sessions?date_from=2000-01-01T00:00:00Z")
    assert emsp_peer.sessions[session_id]["kwh"] == running["kwh"] == 7.0
    check("Session", emsp_peer.sessions[session_id])
    assert [p.outcome for p in await pushes(node, f"session:{session_id}")][-1] == "SENT"
    assert emsp_peer.problems == []


async def test_an_evse_the_peer_lacks_under_a_location_it_holds_is_put_whole(
    node: Runtime, emsp_peer: EmspPeer
) -> None:
    await register_directly(node, emsp_peer)
    await import_loc1(node)
    await station_on_3256(node)
    await settled(node)
    stored = emsp_peer.locations["LOC1"]
    stored["evses"] = [e for e in stored["evses"] if e["uid"] != "3256"]  # it lost an EVSE
    before = len(emsp_peer.requests)

    async with raw_station(node.ocpp_port, "CP1") as station:
        await station.boot()
        await status(station, "Charging")
        await emsp_peer.wait_for(
            lambda: ("PUT", "/2.2.1/locations/BE/BEC/LOC1") in calls(emsp_peer, before), WAIT
        )
        await settled(node)

    evse_url = "/2.2.1/locations/BE/BEC/LOC1/3256"
    # The peer answers the GET of the EVSE it lacks 404 / 2003: "absent". The whole location
    # is PUT (as it would be for "present": the PATCH would be refused again).
    assert calls(emsp_peer, before)[:3] == [
        ("PATCH", evse_url),
        ("GET", evse_url),
        ("PUT", "/2.2.1/locations/BE/BEC/LOC1"),
    ]
    location = await served(node, emsp_peer, "locations/LOC1")
    assert comparable(emsp_peer.locations["LOC1"]) == comparable(location)
    assert all(p.outcome in ("SENT", "SUPERSEDED") for p in await pushes(node, "location:LOC1"))
    assert emsp_peer.problems == []


@dataclass
class GettingPeer(EmspPeer):
    """An eMSP whose location GETs answer 503 while ``get_down``, and whose location PUTs
    are refused (OCPI 2001) while ``refuse_put``."""

    get_down: bool = False
    refuse_put: bool = False

    async def _locations(self, request: web.Request) -> web.Response:
        if request.method == "GET" and self.get_down:
            return web.Response(status=503, text="reads are down")
        if request.method == "PUT" and self.refuse_put:
            return self._reply(status=400, code=2001, message="not this location")
        return await super()._locations(request)


async def test_a_get_that_fails_is_a_transient_failure_and_all_goes_later(
    node: Runtime,
) -> None:
    await import_loc1(node)  # before the partner exists: it never gets LOC1
    await settled(node)
    async with GettingPeer(get_down=True) as peer:
        await register_directly(node, peer)
        await locations.change_location(node.uow(), "LOC1", {"name": "Renamed"})

        async def tried_twice() -> bool:
            return len(requests_to(peer, "GET", "locations/BE/BEC/LOC1")) >= 2

        async with asyncio.timeout(WAIT):
            while not await tried_twice():  # noqa: ASYNC110 - the peer's requests, no event
                await asyncio.sleep(0.05)
        (push,) = await pushes(node, "location:LOC1")
        assert push.done_at is None  # pending, waiting its backoff
        assert push.attempts >= 1
        assert (push.last_error or "").startswith("GET ")
        assert "HTTP 503" in (push.last_error or "")
        assert not requests_to(peer, "PUT", "locations/BE/BEC/LOC1")
        # Each try starts again from the PATCH: nothing was settled meanwhile.
        tried = [c for c in calls(peer) if c[1] == "/2.2.1/locations/BE/BEC/LOC1"]
        assert tried[:4] == [("PATCH", tried[0][1]), ("GET", tried[0][1])] * 2

        peer.get_down = False
        await settled(node)
        assert calls(peer)[-3:] == [
            ("PATCH", "/2.2.1/locations/BE/BEC/LOC1"),
            ("GET", "/2.2.1/locations/BE/BEC/LOC1"),
            ("PUT", "/2.2.1/locations/BE/BEC/LOC1"),
        ]
        assert peer.locations["LOC1"]["name"] == "Renamed"
        (push,) = await pushes(node, "location:LOC1")
        assert push.outcome == "SENT"
        assert peer.problems == []


async def test_a_put_refused_after_the_get_is_failed_and_not_retried(node: Runtime) -> None:
    await import_loc1(node)
    await settled(node)
    async with GettingPeer(refuse_put=True) as peer:
        await register_directly(node, peer)
        await locations.change_location(node.uow(), "LOC1", {"name": "Renamed"})
        await settled(node)
        (push,) = await pushes(node, "location:LOC1")
        assert push.outcome == "FAILED"
        assert "2001" in (push.last_error or "")
        await asyncio.sleep(1.0)  # not tried again on its own
        sent: list[Recorded] = requests_to(peer, "PUT", "locations/BE/BEC/LOC1")
        assert len(sent) == 1
        assert [c[0] for c in calls(peer)] == ["PATCH", "GET", "PUT"]
