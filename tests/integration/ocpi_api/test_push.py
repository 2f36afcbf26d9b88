"""OCPI pushes, end to end: changes in the core reach a real eMSP peer, in order, coalesced.

A real node (``cpms.runtime.Runtime``) on SQLite (and PostgreSQL when configured) and the
real eMSP test peer (``tests/ocpi_peer.py``), registered directly. Changes are made through
the core's own services (``cpms.locations``, ``cpms.tariffs``) and by a raw OCPP 1.6
station (status, sessions, CDRs); what arrives at the peer is compared with what we serve
on our own OCPI GETs, and the peer checks every body against ocpi-types (``problems``).
Covered: a location PUT, field PATCH, EVSE status PATCH, connector PATCH; a PATCH for an
object the partner lacks turned into a GET and a PUT; unpublishing; tariff PUT and DELETE; a session
PUT on start, PATCHes with running cost and appended closed periods, a final PUT; the CDR
POST with its Location header kept; a partner down during changes (backlog in the operator
API, everything delivered coalesced when it is back); a restart with pushes pending; a
refused push (FAILED) and the operator's retry.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from ocpi_models import check
from ocpi_peer import EmspPeer, Recorded
from ocpi_support import register_directly
from push_support import (
    CARD,
    WAIT,
    comparable,
    example,
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
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select

from cpms import locations, tariffs
from cpms.config import Settings
from cpms.model import Cdr
from cpms.runtime import Runtime

from support import ADMIN_TOKEN

OPENAPI_FILE = Path(__file__).resolve().parents[3] / "ocpi_api" / "operator" / "openapi.json"
TARIFF_13 = "tariff_13_simple_3hour_5parking.json"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def push_settings(settings: Settings) -> Settings:
    """Test settings with short backoffs."""
    return settings.replace(ocpi_push_retry_max=0.5)


@pytest.fixture
async def node(push_settings: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime(push_settings, node="push-test")
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def partner_id(node: Runtime, emsp_peer: EmspPeer) -> int:
    """The eMSP peer registered with the node: its partner id."""
    return await register_directly(node, emsp_peer)


@pytest.fixture
def peer(emsp_peer: EmspPeer, partner_id: int) -> EmspPeer:
    """The eMSP peer, registered with the node."""
    return emsp_peer


# --------------------------------------------------------------------------- helpers


async def until(predicate: Callable[[], Any]) -> None:
    """Wait (bounded) until ``predicate()`` is true, checking every 50 ms."""
    async with asyncio.timeout(WAIT):
        while not await _value(predicate()):  # noqa: ASYNC110 - database state, no event
            await asyncio.sleep(0.05)


async def _value(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


# --------------------------------------------------------------------------- locations


async def test_an_imported_location_is_put_as_we_serve_it(node: Runtime, peer: EmspPeer) -> None:
    await import_loc1(node)
    await peer.wait_for(lambda: "LOC1" in peer.locations, WAIT)

    (put,) = requests_to(peer, "PUT", "locations/BE/BEC/LOC1")
    assert put.body == await served(node, peer, "locations/LOC1")
    # Routing headers: from us, to the peer (CHECKLIST 1.10); the peer checked the rest.
    assert put.headers["OCPI-to-country-code"] == "DE"
    assert put.headers["OCPI-to-party-id"] == "EMS"
    assert put.headers["OCPI-from-country-code"] == node.settings.country_code
    (push,) = await pushes(node, "location:LOC1")
    assert (push.kind, push.outcome) == ("location", "SENT")
    assert peer.problems == []


async def test_field_changes_are_patches_with_last_updated(node: Runtime, peer: EmspPeer) -> None:
    await import_loc1(node)
    await settled(node)
    await locations.change_location(node.uow(), "LOC1", {"name": "Gent Zuid Renamed"})
    await settled(node)
    (patch,) = requests_to(peer, "PATCH", "locations/BE/BEC/LOC1")
    location = await served(node, peer, "locations/LOC1")
    assert patch.body == {"name": "Gent Zuid Renamed", "last_updated": location["last_updated"]}

    await locations.change_evse(node.uow(), "LOC1", "3257", {"physical_reference": "P9"})
    await settled(node)
    (evse_patch,) = requests_to(peer, "PATCH", "locations/BE/BEC/LOC1/3257")
    evse = await served(node, peer, "locations/LOC1/3257")
    assert evse_patch.body == {"physical_reference": "P9", "last_updated": evse["last_updated"]}

    await locations.change_connector(node.uow(), "LOC1", "3256", "2", {"max_amperage": 20})
    await settled(node)
    (connector_patch,) = requests_to(peer, "PATCH", "locations/BE/BEC/LOC1/3256/2")
    connector = await served(node, peer, "locations/LOC1/3256/2")
    assert connector_patch.body == {"max_amperage": 20, "last_updated": connector["last_updated"]}
    location = await served(node, peer, "locations/LOC1")
    assert comparable(peer.locations["LOC1"]) == comparable(location)
    check("Location", peer.locations["LOC1"])  # still a valid Location, patched
    assert peer.problems == []


async def test_a_patch_for_a_location_the_partner_lacks_becomes_a_put(
    node: Runtime, emsp_peer: EmspPeer
) -> None:
    await import_loc1(node)  # before the partner exists: nothing is queued for it
    await settled(node)
    await register_directly(node, emsp_peer)
    await locations.change_evse(node.uow(), "LOC1", "3256", {"physical_reference": "A1"})
    await settled(node)

    assert [(r.method, r.path) for r in emsp_peer.requests] == [
        ("PATCH", "/2.2.1/locations/BE/BEC/LOC1/3256"),  # answered 404 / 2003
        ("GET", "/2.2.1/locations/BE/BEC/LOC1/3256"),  # absent (CHECKLIST 1.5)
        ("PUT", "/2.2.1/locations/BE/BEC/LOC1"),
    ]
    assert emsp_peer.locations["LOC1"] == await served(node, emsp_peer, "locations/LOC1")
    (push,) = await pushes(node, "location:LOC1")
    assert push.outcome == "SENT"
    assert emsp_peer.problems == []


async def test_unpublished_locations_reach_only_partners_that_have_them(
    node: Runtime, peer: EmspPeer
) -> None:
    private = example("location_example_uc3_destination_charger_not_published.json")
    await locations.import_locations(node.uow(), [private])
    await import_loc1(node)
    await settled(node)
    assert [r.path for r in peer.requests] == ["/2.2.1/locations/BE/BEC/LOC1"]

    # The peer has LOC1: it must learn that it is no longer published.
    await locations.change_location(node.uow(), "LOC1", {"publish": False})
    await settled(node)
    (patch,) = requests_to(peer, "PATCH", "locations/BE/BEC/LOC1")
    assert patch.body["publish"] is False
    assert peer.locations["LOC1"]["publish"] is False
    # Changes of the private location never left.
    await locations.change_location(node.uow(), private["id"], {"name": "Still private"})
    await settled(node)
    assert not [r for r in peer.requests if private["id"] in r.path]
    assert peer.problems == []


async def test_a_station_status_is_patched_on_its_evse(node: Runtime, peer: EmspPeer) -> None:
    await import_loc1(node)
    await station_on_3256(node)
    await settled(node)
    async with raw_station(node.ocpp_port, "CP1") as station:
        await station.boot()
        await status(station, "Charging")
        await peer.wait_for(
            lambda: any(
                r.body.get("status") == "CHARGING"
                for r in requests_to(peer, "PATCH", "locations/BE/BEC/LOC1/3256")
            ),
            WAIT,
        )
        await settled(node)
        evse = await served(node, peer, "locations/LOC1/3256")
        patches = requests_to(peer, "PATCH", "locations/BE/BEC/LOC1/3256")
        assert patches[-1].body == {"status": "CHARGING", "last_updated": evse["last_updated"]}
        location = await served(node, peer, "locations/LOC1")
        assert comparable(peer.locations["LOC1"]) == comparable(location)
    assert peer.problems == []


# --------------------------------------------------------------------------- tariffs


async def test_tariffs_are_put_and_deleted_and_connectors_follow(
    node: Runtime, peer: EmspPeer
) -> None:
    await import_loc1(node)
    tariff = example(TARIFF_13)
    await tariffs.import_tariffs(node.uow(), [tariff])
    await settled(node)  # else the assignment may ride along with the location's PUT
    await locations.assign_tariffs(node.uow(), "LOC1", "3256", "1", [tariff["id"]])
    await settled(node)

    (put,) = requests_to(peer, "PUT", "tariffs/DE/ALL/21")
    (ours,) = await served(node, peer, "tariffs")
    assert put.body == ours
    (assigned,) = requests_to(peer, "PATCH", "locations/BE/BEC/LOC1/3256/1")
    assert assigned.body["tariff_ids"] == ["21"]

    await tariffs.retire_tariff(node.uow(), "21")
    await settled(node)
    assert requests_to(peer, "DELETE", "tariffs/DE/ALL/21")
    assert "21" not in peer.tariffs
    unassigned = requests_to(peer, "PATCH", "locations/BE/BEC/LOC1/3256/1")[-1]
    assert unassigned.body["tariff_ids"] == []
    assert peer.problems == []


# --------------------------------------------------------------------------- sessions, CDRs


async def test_a_session_is_put_patched_and_put_final_and_its_cdr_posted(
    node: Runtime, peer: EmspPeer, partner_id: int
) -> None:
    await import_loc1(node)
    await station_on_3256(node)
    await tariffs.import_tariffs(node.uow(), [example(TARIFF_13)])
    await locations.assign_tariffs(node.uow(), "LOC1", "3256", "1", ["21"])
    await peer_token(node, peer, partner_id)
    await settled(node)

    def session_requests(method: str) -> list[Recorded]:
        return [r for r in peer.requests if r.method == method and "/sessions/" in r.path]

    async with raw_station(node.ocpp_port, "CP1") as station:
        await station.boot()
        answer = await station.result(
            "StartTransaction",
            {"connectorId": 1, "idTag": CARD, "meterStart": 10_000, "timestamp": iso(yesterday())},
        )
        assert answer["idTagInfo"]["status"] == "Accepted"
        tx = int(answer["transactionId"])
        await peer.wait_for(lambda: len(session_requests("PUT")) == 1, WAIT)
        (start,) = session_requests("PUT")
        session_id = start.path.rsplit("/", 1)[1]
        assert start.path == f"/2.2.1/sessions/{node.settings.country_code}/" + (
            f"{node.settings.party_id}/{session_id}"
        )
        assert start.body["status"] == "ACTIVE"
        assert start.body["cdr_token"]["uid"] == CARD
        assert start.body["charging_periods"] == []

        # Charging: one period, still growing; PATCHes carry energy and running cost only.
        await meter(station, tx, yesterday(1), 17_000)
        await peer.wait_for(lambda: len(session_requests("PATCH")) == 1, WAIT)
        first = session_requests("PATCH")[0].body
        assert first["kwh"] == 7.0
        assert first["total_cost"]["excl_vat"] > 0
        assert "charging_periods" not in first
        await meter(station, tx, yesterday(2.5), 27_500)
        await peer.wait_for(lambda: len(session_requests("PATCH")) == 2, WAIT)
        # The register stops rising: charging closes, parking begins; the closed period is
        # appended, the growing one is not.
        await meter(station, tx, yesterday(3), 27_500)
        await peer.wait_for(lambda: len(session_requests("PATCH")) == 3, WAIT)
        await settled(node)
        (running,) = await served(node, peer, "sessions?date_from=2000-01-01T00:00:00Z")
        assert len(running["charging_periods"]) == 2
        # (The peer files a PATCH's periods away from the recorded body: read its copy.)
        assert peer.sessions[session_id]["charging_periods"] == running["charging_periods"][:1]
        assert peer.sessions[session_id]["total_cost"] == running["total_cost"]
        check("Session", peer.sessions[session_id])  # still a valid Session, patched
        assert peer.sessions[session_id]["kwh"] == running["kwh"] == 17.5

        stop = {
            "transactionId": tx,
            "idTag": CARD,
            "meterStop": 27_500,
            "timestamp": iso(yesterday(3.25)),
            "reason": "EVDisconnected",
        }
        assert (await station.result("StopTransaction", stop))["idTagInfo"]["status"] == "Accepted"
        await peer.wait_for(lambda: len(peer.cdrs) == 1, WAIT)
    await settled(node)

    final = session_requests("PUT")[-1]
    (ended,) = await served(node, peer, "sessions?date_from=2000-01-01T00:00:00Z")
    assert final.body == ended
    assert ended["status"] == "COMPLETED"
    assert peer.sessions[session_id] == ended
    async with node.uow() as uow:
        cdr = (await uow.session.scalars(select(Cdr).where(Cdr.session_id == session_id))).one()
    assert requests_to(peer, "POST", "cdrs")[0].body == cdr.document == peer.cdrs[0]
    (cdr_push,) = await pushes(node, f"cdr:{cdr.id}")
    assert cdr_push.outcome == "SENT"
    assert cdr_push.response == {"location": f"{peer.base_url}/2.2.1/cdrs/1"}
    assert peer.problems == []


async def test_sessions_and_cdrs_go_only_to_the_partner_of_the_token(
    node: Runtime, peer: EmspPeer, partner_id: int
) -> None:
    async with EmspPeer(country_code="NL", party_id="OTH", name="Other eMSP") as other:
        await register_directly(node, other, name="other")
        await import_loc1(node)
        await station_on_3256(node)
        await peer_token(node, peer, partner_id)
        async with raw_station(node.ocpp_port, "CP1") as station:
            await station.boot()
            start = {
                "connectorId": 1,
                "idTag": CARD,
                "meterStart": 0,
                "timestamp": iso(yesterday()),
            }
            tx = (await station.result("StartTransaction", start))["transactionId"]
            stop = {"transactionId": tx, "meterStop": 5000, "timestamp": iso(yesterday(1))}
            await station.result("StopTransaction", stop)
        await settled(node)
        assert peer.sessions
        assert peer.cdrs
        assert not other.sessions
        assert not other.cdrs
        assert other.locations["LOC1"]  # locations are for everyone
        assert other.problems == []
    assert peer.problems == []


# --------------------------------------------------------------------------- partner down


async def test_a_partner_that_was_down_gets_everything_coalesced_in_order(
    node: Runtime, peer: EmspPeer, partner_id: int
) -> None:
    await import_loc1(node)
    await station_on_3256(node)
    await settled(node)
    flaps = ["Charging", "Available", "Charging", "Available", "Charging", "Faulted"]
    async with raw_station(node.ocpp_port, "CP1") as station:
        await station.boot()
        await settled(node)
        before = len(peer.requests)
        peer.down = True
        for value in flaps:
            await status(station, value)
        await locations.change_location(node.uow(), "LOC1", {"name": "Renamed while down"})
        await tariffs.import_tariffs(node.uow(), [example(TARIFF_13)])

        # The backlog shows in the operator API, with the reason.
        async def failing() -> bool:
            listed = await operator(node, "GET", "/ocpi/partners")
            (partner,) = listed["items"]
            backlog = partner["backlog"]
            pending = await operator(
                node, "GET", f"/ocpi/partners/{partner_id}/pushes?state=pending"
            )
            keys = {item["object_key"] for item in pending["items"]}
            # Both objects queued (the tariff's event may fan out a moment after the flaps).
            return keys == {"location:LOC1", "tariff:21"} and "503" in (backlog["last_error"] or "")

        await until(failing)
        assert len(peer.requests) == before  # nothing got through

        peer.down = False
        await settled(node)
        location = await served(node, peer, "locations/LOC1")
        assert location["evses"][0]["status"] == "OUTOFORDER"
        stored = peer.locations["LOC1"]
        assert comparable(stored) == comparable(location)
        check("Location", stored)
        assert peer.tariffs["21"] == (await served(node, peer, "tariffs"))[0]
        status_patches = [
            r
            for r in peer.requests[before:]
            if (r.method, r.path) == ("PATCH", "/2.2.1/locations/BE/BEC/LOC1/3256")
        ]
        assert 1 <= len(status_patches) < len(flaps)
        assert status_patches[-1].body["status"] == "OUTOFORDER"
        listed = await operator(node, "GET", "/ocpi/partners")
        assert listed["items"][0]["backlog"]["pending"] == 0
    assert peer.problems == []


async def test_pending_pushes_survive_a_restart_and_sent_ones_are_not_sent_again(
    push_settings: Settings, emsp_peer: EmspPeer
) -> None:
    first = Runtime(push_settings, node="before")
    await first.start()
    try:
        await register_directly(first, emsp_peer)
        await import_loc1(first)
        await tariffs.import_tariffs(first.uow(), [example("tariff_1_simple_2hour.json")])
        await settled(first)
        emsp_peer.down = True
        await locations.change_location(first.uow(), "LOC1", {"name": "Changed before restart"})
        await tariffs.import_tariffs(first.uow(), [example(TARIFF_13)])

        async def tried() -> bool:
            return any(p.attempts for p in await pushes(first, "tariff:21"))

        await until(tried)
    finally:
        await first.stop()
    emsp_peer.down = False
    second = Runtime(push_settings, node="after")
    await second.start()
    try:
        await settled(second)
    finally:
        await second.stop()

    sent = [(r.method, r.path) for r in emsp_peer.requests]
    # Before the restart: the import's PUTs, once. After: only what was pending.
    assert sorted(sent[:2]) == [
        ("PUT", "/2.2.1/locations/BE/BEC/LOC1"),
        ("PUT", "/2.2.1/tariffs/DE/ALL/12"),
    ]
    assert sorted(sent[2:]) == [
        ("PATCH", "/2.2.1/locations/BE/BEC/LOC1"),
        ("PUT", "/2.2.1/tariffs/DE/ALL/21"),
    ]
    assert emsp_peer.locations["LOC1"]["name"] == "Changed before restart"
    assert emsp_peer.problems == []


# --------------------------------------------------------------------------- refused pushes


@dataclass
class RefusingPeer(EmspPeer):
    """An eMSP that refuses tariff PUTs (OCPI 2001) while ``refuse`` is set."""

    refuse: bool = True

    async def _tariffs(self, request: web.Request) -> web.Response:
        if self.refuse and request.method == "PUT":
            return self._reply(status=400, code=2001, message="we do not like this tariff")
        return await super()._tariffs(request)


async def test_a_refused_push_is_failed_until_the_operator_retries_it(node: Runtime) -> None:
    async with RefusingPeer() as refusing:
        partner_id = await register_directly(node, refusing)
        await tariffs.import_tariffs(node.uow(), [example(TARIFF_13)])
        await settled(node)
        (push,) = await pushes(node, "tariff:21")
        assert push.outcome == "FAILED"
        assert "2001" in (push.last_error or "")
        # Not retried on its own.
        await asyncio.sleep(1.0)
        assert len(requests_to(refusing, "PUT", "tariffs/DE/ALL/21")) == 1

        failed = await operator(node, "GET", f"/ocpi/partners/{partner_id}/pushes?state=failed")
        assert [item["id"] for item in failed["items"]] == [push.id]
        assert failed["items"][0]["state"] == "failed"
        (listed,) = (await operator(node, "GET", "/ocpi/partners"))["items"]
        assert listed["backlog"]["failed"] == 1
        assert "2001" in listed["backlog"]["last_error"]

        refusing.refuse = False
        assert await operator(node, "POST", f"/ocpi/partners/{partner_id}/pushes/retry") == {
            "retried": 1
        }
        await settled(node)
        assert refusing.tariffs["21"]["id"] == "21"
        (push,) = await pushes(node, "tariff:21")
        assert push.outcome == "SENT"
        sent = await operator(node, "GET", f"/ocpi/partners/{partner_id}/pushes?state=sent")
        assert [item["id"] for item in sent["items"]] == [push.id]
        assert refusing.problems == []


# --------------------------------------------------------------------------- operator API


async def operator(
    runtime: Runtime, method: str, path: str, *, expect: int = 200, check: bool = True
) -> Any:
    """Call the operator API; check the status and the answer against openapi.json."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{runtime.base_url()}/api{path}", headers=headers) as response,
    ):
        answer = await response.json()
        assert response.status == expect, answer
    if check:
        template = re.sub(r"/partners/[^/?]+", "/partners/{partner_id}", path.split("?")[0])
        problems = answer_problems(method.lower(), template, response.status, answer)
        assert problems == [], (method, path, problems)
    return answer


def answer_problems(method: str, template: str, status: int, answer: Any) -> list[str]:
    document = json.loads(OPENAPI_FILE.read_text("utf-8"))
    responses = document["paths"][template][method]["responses"]
    assert str(status) in responses, (method, template, status)
    response = responses[str(status)]
    pointer = f"paths/{template.replace('/', '~1')}/{method}/responses/{status}"
    if "$ref" in response:
        pointer = response["$ref"][2:]
    registry: Registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"urn:openapi#/{pointer}/content/application~1json/schema"}
    validator = Draft202012Validator(schema, registry=registry)
    return [error.message for error in validator.iter_errors(answer)]


async def test_the_operator_api_pages_partners_and_pushes_and_refuses_nonsense(
    node: Runtime, peer: EmspPeer, partner_id: int
) -> None:
    await import_loc1(node)
    await tariffs.import_tariffs(node.uow(), [example(TARIFF_13)])
    await settled(node)
    listed = await operator(node, "GET", "/ocpi/partners?limit=1")
    assert listed["total"] == 1
    (partner,) = listed["items"]
    assert (partner["id"], partner["state"], partner["version"]) == (
        partner_id,
        "REGISTERED",
        "2.2.1",
    )
    assert "locations" in partner["modules"]
    assert partner["backlog"] == {
        "pending": 0,
        "failed": 0,
        "oldest_pending_at": None,
        "oldest_pending_age": None,
        "last_error": None,
    }
    everything = await operator(node, "GET", f"/ocpi/partners/{partner_id}/pushes")
    assert everything["total"] == 2
    assert [item["object_key"] for item in everything["items"]] == ["tariff:21", "location:LOC1"]
    page = await operator(
        node, "GET", f"/ocpi/partners/{partner_id}/pushes?state=sent&limit=1&offset=1"
    )
    assert (page["total"], len(page["items"])) == (2, 1)
    assert page["items"][0]["object_key"] == "location:LOC1"
    assert page["items"][0]["state"] == "sent"

    await operator(node, "GET", f"/ocpi/partners/{partner_id}/pushes?state=lost", expect=400)
    await operator(node, "GET", f"/ocpi/partners/{partner_id}/pushes?limit=0", expect=400)
    await operator(node, "GET", "/ocpi/partners/999/pushes", expect=404)
    await operator(node, "GET", "/ocpi/partners/nope/pushes", expect=404)
    await operator(node, "POST", "/ocpi/partners/999/pushes/retry", expect=404)
    assert await operator(node, "POST", f"/ocpi/partners/{partner_id}/pushes/retry") == {
        "retried": 0
    }
