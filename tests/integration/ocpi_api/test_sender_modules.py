"""OCPI Sender modules on a real node: locations, tariffs, sessions and CDRs as eMSPs pull them.

A real ``Runtime`` (SQLite, and PostgreSQL when ``CPMS_TEST_POSTGRES_URL`` is set) and the
real eMSP test peer, registered directly, calling us with its token. Data is made through
the core services: official OCPI example locations and tariffs imported as an operator
would, tokens pushed for the peer through the Tokens receiver service, and sessions and
CDRs made by a raw OCPP 1.6 station charging with those tokens. Every body served is
checked against ``ocpi-types``.

Covered: pages followed by their ``Link`` until there is none (``X-Total-Count``,
``X-Limit``, the cap of 100), ``date_from``/``date_to`` windows (inclusive start, exclusive
end, sequential windows without gap or overlap), bad parameters (400/2001), objects added
and changed between page fetches (nothing skipped, nothing twice), token A and unknown
tokens (401), routing headers, who sees what (unpublished locations, ``publish_allowed_to``,
retired locations and tariffs, other partners' sessions and CDRs), single Location, EVSE and
Connector GETs (404/2003 for an unknown location), and charging preferences.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from e2e.ocpp16.node import iso
from ocpi_models import check
from ocpi_peer import EmspPeer
from ocpi_support import cpo_url, register_directly
from raw_station import RawStation, raw_station
from sqlalchemy import select

from cpms.documents import format_datetime
from cpms.locations import assign_tariffs, change_evse, import_locations, retire_location
from cpms.model import Cdr, OcpiPartner, OutboxEntry, Session, utcnow
from cpms.passwords import hash_token
from cpms.runtime import Runtime
from cpms.stations import create_station
from cpms.tariffs import import_tariffs, retire_tariff
from cpms.tokens import create_token, put_partner_token

T = TypeVar("T")

MAX_PAGES = 200
"""No crawl in these tests needs more pages; a server that never stops linking fails."""
MODELS = {"locations": "Location", "tariffs": "Tariff", "sessions": "Session", "cdrs": "Cdr"}

# --------------------------------------------------------------------------- calling us


@dataclass
class Reply:
    """One answer of ours: HTTP status, envelope, headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def data(self) -> Any:
        return self.body.get("data")

    @property
    def code(self) -> int:
        return int(self.body["status_code"])


async def call(peer: EmspPeer, method: str, url: str, body: Any = None, **kw: Any) -> Reply:
    status, envelope, headers = await peer.call(method, url, body=body, **kw)
    return Reply(status, envelope, headers)


def next_link(headers: dict[str, str]) -> str | None:
    """The URL of ``Link: <url>; rel="next"``, or None."""
    link = headers.get("Link")
    if link is None:
        return None
    target, _, relation = link.partition(";")
    assert relation.strip() == 'rel="next"', link
    assert target.startswith("<"), link
    assert target.endswith(">"), link
    return target[1:-1]


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def assert_routed(runtime: Runtime, peer: EmspPeer, headers: dict[str, str]) -> None:
    """Our answer names us as sender and the peer as receiver (CHECKLIST 1.10)."""
    assert headers["OCPI-from-country-code"] == runtime.settings.country_code
    assert headers["OCPI-from-party-id"] == runtime.settings.party_id
    assert headers["OCPI-to-country-code"] == peer.country_code
    assert headers["OCPI-to-party-id"] == peer.party_id


@dataclass
class Crawl:
    """What following a list's ``Link`` headers gave: every item, and each page's figures."""

    items: list[dict[str, Any]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [item["id"] for item in self.items]


async def crawl(
    runtime: Runtime,
    peer: EmspPeer,
    module: str,
    query: str = "",
    *,
    between: Callable[[int], Awaitable[None]] | None = None,
) -> Crawl:
    """Fetch ``module``'s list from the first page until no ``Link``; check every page.

    ``between(n)`` runs after page ``n`` (from 1) was read and before the next is asked for.
    """
    result = Crawl()
    url: str | None = cpo_url(runtime, module) + query
    while url is not None:
        assert len(result.sizes) < MAX_PAGES, "the Link headers never end"
        reply = await call(peer, "GET", url)
        assert (reply.status, reply.code) == (200, 1000), reply
        assert_routed(runtime, peer, reply.headers)
        assert reply.headers["X-Limit"] == "100"
        for item in reply.data:
            check(MODELS[module], item)
        result.items += reply.data
        result.sizes.append(len(reply.data))
        result.totals.append(int(reply.headers["X-Total-Count"]))
        url = next_link(reply.headers)
        if url is not None:
            assert url.startswith(runtime.base_url() + "/ocpi/2.2.1/" + module), url
            result.links.append(url)
            if between is not None:
                await between(len(result.sizes))
    return result


# --------------------------------------------------------------------------- data


def example(examples_dir: Path, name: str) -> dict[str, Any]:
    """One official OCPI 2.2.1 example, as published."""
    document: dict[str, Any] = json.loads((examples_dir / name).read_text("utf-8"))
    return document


def location_copy(document: dict[str, Any], suffix: str) -> dict[str, Any]:
    """``document`` as another location: its id and EVSE uids (never reused) get ``suffix``."""
    twin = copy.deepcopy(document)
    twin["id"] = f"{document['id']}-{suffix}"
    for evse in twin.get("evses", []):
        evse["uid"] = f"{evse['uid']}-{suffix}"
    return twin


PUBLISHED = (
    "location_example.json",
    "location_example_parking_garage_opening_hours.json",
    "location_example_uc2_destination_charger.json",
)
LIMITED = "location_example_uc4_limited_visibility.json"
HOME = "location_example_uc5_home_charge_point.json"


async def import_one(runtime: Runtime, document: dict[str, Any]) -> None:
    await import_locations(runtime.uow(), [document])


async def push_partner_token(
    runtime: Runtime, partner_id: int, peer: EmspPeer, uid: str, **fields: Any
) -> None:
    """Store a token of the peer's as its Tokens module would push it."""
    document = {
        "country_code": peer.country_code,
        "party_id": peer.party_id,
        "uid": uid,
        "type": "RFID",
        "contract_id": f"{peer.country_code}-{peer.party_id}-{uid}"[:36],
        "issuer": peer.name,
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": format_datetime(utcnow()),
        **fields,
    }
    await put_partner_token(
        runtime.uow(),
        partner_id,
        document,
        country_code=peer.country_code,
        party_id=peer.party_id,
        uid=uid,
        type_=document["type"],
    )


@pytest.fixture
async def peer_id(runtime: Runtime, emsp_peer: EmspPeer) -> int:
    """The test peer, registered with the node; its partner id."""
    return await register_directly(runtime, emsp_peer)


@pytest.fixture
async def other_peer(runtime: Runtime) -> AsyncIterator[tuple[EmspPeer, int]]:
    """A second eMSP, registered too: (peer, partner id)."""
    async with EmspPeer(country_code="FR", party_id="OTH", name="Other eMSP") as other:
        yield other, await register_directly(runtime, other, name="other")


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("module", ["locations", "sessions", "cdrs", "tariffs"])
async def test_token_a_and_unknown_tokens_are_refused_with_401(
    runtime: Runtime, emsp_peer: EmspPeer, module: str
) -> None:
    token_a = "token-a-of-an-invited-partner"
    async with runtime.uow() as uow:
        uow.session.add(
            OcpiPartner(name="invited", state="INVITED", token_a_hash=hash_token(token_a))
        )
        await uow.commit()
    url = cpo_url(runtime, module) + "?date_from=2020-01-01T00:00:00Z"
    for token in (token_a, "nobody-issued-this-token"):
        reply = await call(emsp_peer, "GET", url, token=token)
        assert reply.status == 401, (token, reply)
        assert reply.code == 2000
        assert "data" not in reply.body


# --------------------------------------------------------------------------- locations


async def test_locations_are_served_page_by_page_until_the_last_has_no_link(
    runtime: Runtime, emsp_peer: EmspPeer, peer_id: int, examples_dir: Path
) -> None:
    published = [example(examples_dir, name) for name in PUBLISHED]
    published += [location_copy(published[0], str(n)) for n in range(4)]
    hidden = [example(examples_dir, LIMITED), example(examples_dir, HOME)]
    # One import each: a list imported at once shares one creation time (then: id order).
    for document in published[:3] + hidden + published[3:]:
        await import_one(runtime, document)

    pages = await crawl(runtime, emsp_peer, "locations", "?limit=2")

    assert pages.sizes == [2, 2, 2, 1]
    assert pages.totals == [7] * 4
    assert pages.ids == [d["id"] for d in published]  # creation order, none hidden shown
    assert [query_of(link) for link in pages.links] == [
        {"offset": "2", "limit": "2"},
        {"offset": "4", "limit": "2"},
        {"offset": "6", "limit": "2"},
    ]
    loc1 = pages.items[0]
    assert [evse["uid"] for evse in loc1["evses"]] == ["3256", "3257"]
    assert [c["id"] for c in loc1["evses"][0]["connectors"]] == ["1", "2"]


async def test_a_limit_above_100_gets_100_and_x_limit_says_100(
    runtime: Runtime, emsp_peer: EmspPeer, peer_id: int, examples_dir: Path
) -> None:
    base = example(examples_dir, "location_example.json")
    await import_locations(runtime.uow(), [location_copy(base, f"{n:03d}") for n in range(103)])

    reply = await call(emsp_peer, "GET", cpo_url(runtime, "locations") + "?limit=2000")
    assert (reply.status, reply.code) == (200, 1000)
    assert len(reply.data) == 100
    assert reply.headers["X-Limit"] == "100"
    assert reply.headers["X-Total-Count"] == "103"
    link = next_link(reply.headers)
    assert link is not None
    assert query_of(link) == {"offset": "100", "limit": "100"}

    rest = await call(emsp_peer, "GET", link)
    assert [d["id"] for d in rest.data] == [f"{base['id']}-{n:03d}" for n in range(100, 103)]
    assert next_link(rest.headers) is None
    # Without a limit, a page is 100 too.
    default = await call(emsp_peer, "GET", cpo_url(runtime, "locations"))
    assert len(default.data) == 100
    assert query_of(next_link(default.headers) or "") == {"offset": "100", "limit": "100"}


async def test_location_windows_include_date_from_exclude_date_to_and_tile_without_gaps(
    runtime: Runtime, emsp_peer: EmspPeer, peer_id: int, examples_dir: Path
) -> None:
    base = example(examples_dir, "location_example.json")
    started = format_datetime(utcnow() - timedelta(seconds=1))
    for n in range(6):
        await import_one(runtime, location_copy(base, str(n)))
    everything = await crawl(runtime, emsp_peer, "locations", "?limit=100")
    stamps = {item["id"]: item["last_updated"] for item in everything.items}
    assert len(stamps) == 6
    b, c = stamps[f"{base['id']}-2"], stamps[f"{base['id']}-4"]

    # date_from is inclusive, date_to exclusive, on the served values themselves.
    upto_b = await crawl(runtime, emsp_peer, "locations", f"?date_from={started}&date_to={b}")
    from_b = await crawl(runtime, emsp_peer, "locations", f"?date_from={b}&date_to={c}")
    from_c = await crawl(runtime, emsp_peer, "locations", f"?date_from={c}&limit=1")
    assert f"{base['id']}-2" not in upto_b.ids
    assert f"{base['id']}-2" in from_b.ids
    assert f"{base['id']}-4" in from_c.ids
    # Sequential windows: each location in exactly one, and each page counts its window.
    assert sorted(upto_b.ids + from_b.ids + from_c.ids) == sorted(stamps)
    assert len(upto_b.ids + from_b.ids + from_c.ids) == 6
    assert upto_b.totals[0] + from_b.totals[0] + from_c.totals[0] == 6
    # The Link keeps the window as the client wrote it.
    assert from_c.links, "one per page: more than one page expected"
    assert query_of(from_c.links[0]) == {"date_from": c, "offset": "1", "limit": "1"}
    # Without the Z, a DateTime means UTC all the same.
    same = await crawl(runtime, emsp_peer, "locations", f"?date_from={c.rstrip('Z')}")
    assert same.ids == from_c.ids
    # A window after everything is empty, with no Link.
    later = format_datetime(utcnow() + timedelta(hours=1))
    empty = await crawl(runtime, emsp_peer, "locations", f"?date_from={later}")
    assert (empty.ids, empty.totals, empty.links) == ([], [0], [])


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("date_from=yesterday", "date_from"),
        ("date_from=2024-01-01T00:00:00%2B00:00", "date_from"),  # numeric offset: not OCPI
        ("date_to=2024-13-01T00:00:00Z", "date_to"),
        ("date_from=2024-01-02T00:00:00Z&date_to=2024-01-01T00:00:00Z", "date_to"),
        ("offset=-1", "offset"),
        ("offset=two", "offset"),
        ("limit=0", "limit"),
        ("limit=1.5", "limit"),
        ("limit=1&limit=2", "limit"),
    ],
)
async def test_a_malformed_pagination_parameter_is_400_2001_naming_it(
    runtime: Runtime, emsp_peer: EmspPeer, peer_id: int, query: str, named: str
) -> None:
    for module in ("locations", "tariffs", "cdrs", "sessions"):
        required = "date_from=2020-01-01T00:00:00Z&"  # sessions need it
        window = "" if "date_from" in query or module != "sessions" else required
        reply = await call(emsp_peer, "GET", f"{cpo_url(runtime, module)}?{window}{query}")
        assert (reply.status, reply.code) == (400, 2001), (module, reply)
        assert named in reply.body["status_message"], reply.body


async def test_locations_added_and_changed_between_pages_skip_nothing_and_repeat_nothing(
    runtime: Runtime, emsp_peer: EmspPeer, peer_id: int, examples_dir: Path
) -> None:
    base = example(examples_dir, "location_example.json")
    first = [location_copy(base, str(n)) for n in range(5)]
    await import_locations(runtime.uow(), first)
    added: list[str] = []

    async def meanwhile(page: int) -> None:
        # A new location, and a change to one already read (its EVSE status): under
        # last_updated order the change would move it behind the crawler and hide another.
        new = location_copy(base, f"new{page}")
        await import_one(runtime, new)
        added.append(new["id"])
        changed = first[page - 1]
        uid = changed["evses"][0]["uid"]
        await change_evse(runtime.uow(), changed["id"], uid, {"status": "CHARGING"})

    pages = await crawl(runtime, emsp_peer, "locations", "?limit=2", between=meanwhile)

    assert pages.ids == [d["id"] for d in first] + added
    assert len(added) == len(pages.sizes) - 1 >= 3
    assert pages.totals == sorted(pages.totals)  # grew as they were added


async def test_unpublished_locations_are_shown_only_to_partners_holding_an_allowed_token(
    runtime: Runtime,
    emsp_peer: EmspPeer,
    peer_id: int,
    other_peer: tuple[EmspPeer, int],
    examples_dir: Path,
) -> None:
    other, other_id = other_peer
    limited, home = example(examples_dir, LIMITED), example(examples_dir, HOME)
    public = example(examples_dir, "location_example.json")
    await import_locations(runtime.uow(), [public, limited, home])
    # The peer holds a card like one limited's list names, but of another type: no match.
    await push_partner_token(runtime, peer_id, emsp_peer, "12345678905880", type="APP_USER")
    # The other eMSP holds the card with visual number 12345-67 issued by NewMotion.
    await push_partner_token(
        runtime, other_id, other, "OTHER-CARD", visual_number="12345-67", issuer="NewMotion"
    )

    seen_by_peer = await crawl(runtime, emsp_peer, "locations")
    seen_by_other = await crawl(runtime, other, "locations")
    assert seen_by_peer.ids == ["LOC1"]
    assert (seen_by_peer.totals, seen_by_other.totals) == ([1], [2])
    assert seen_by_other.ids == ["LOC1", limited["id"]]

    url = f"{cpo_url(runtime, 'locations')}/{limited['id']}"
    refused = await call(emsp_peer, "GET", url)
    assert (refused.status, refused.code) == (404, 2003)
    shown = await call(other, "GET", url)
    assert (shown.status, shown.code) == (200, 1000)
    check("Location", shown.data)
    assert shown.data["publish"] is False
    home_url = f"{cpo_url(runtime, 'locations')}/{home['id']}"
    assert (await call(other, "GET", home_url)).status == 404

    # The RFID card of the list, in the peer's hands, opens it to the peer too.
    await push_partner_token(runtime, peer_id, emsp_peer, "12345678905880", type="RFID")
    assert (await crawl(runtime, emsp_peer, "locations")).ids == ["LOC1", limited["id"]]
    # An invalidated token opens nothing.
    await push_partner_token(
        runtime,
        other_id,
        other,
        "OTHER-CARD",
        visual_number="12345-67",
        issuer="NewMotion",
        valid=False,
    )
    assert (await crawl(runtime, other, "locations")).ids == ["LOC1"]


async def test_a_token_group_named_in_publish_allowed_to_opens_a_location_to_its_holder(
    runtime: Runtime,
    emsp_peer: EmspPeer,
    peer_id: int,
    other_peer: tuple[EmspPeer, int],
    examples_dir: Path,
) -> None:
    other, other_id = other_peer
    fleet = location_copy(example(examples_dir, "location_example.json"), "fleet")
    fleet |= {"publish": False, "publish_allowed_to": [{"group_id": "FLEET-7"}]}
    await import_locations(runtime.uow(), [fleet])
    # group_id is a CiString: any case matches. The other eMSP's group is another one.
    await push_partner_token(runtime, peer_id, emsp_peer, "DRIVER-1", group_id="fleet-7")
    await push_partner_token(runtime, other_id, other, "DRIVER-2", group_id="FLEET-8")

    assert (await crawl(runtime, emsp_peer, "locations")).ids == [fleet["id"]]
    assert (await crawl(runtime, other, "locations")).ids == []
    url = f"{cpo_url(runtime, 'locations')}/{fleet['id']}/{fleet['evses'][0]['uid']}"
    assert (await call(emsp_peer, "GET", url)).status == 200
    refused = await call(other, "GET", url)
    assert (refused.status, refused.code) == (404, 2003)


async def test_a_retired_location_is_gone_and_a_removed_evse_is_shown_removed(
    runtime: Runtime, emsp_peer: EmspPeer, peer_id: int, examples_dir: Path
) -> None:
    base = example(examples_dir, "location_example.json")
    kept, retired = location_copy(base, "kept"), location_copy(base, "retired")
    await import_locations(runtime.uow(), [kept, retired])
    await retire_location(runtime.uow(), retired["id"])
    # An EVSE taken out of service: the location stays, the EVSE says REMOVED.
    removed_uid = kept["evses"][1]["uid"]
    await change_evse(runtime.uow(), kept["id"], removed_uid, {"status": "REMOVED"})

    pages = await crawl(runtime, emsp_peer, "locations")
    assert pages.ids == [kept["id"]]
    statuses = {e["uid"]: e["status"] for e in pages.items[0]["evses"]}
    assert statuses[removed_uid] == "REMOVED"
    gone = await call(emsp_peer, "GET", f"{cpo_url(runtime, 'locations')}/{retired['id']}")
    assert (gone.status, gone.code) == (404, 2003)


async def test_one_location_evse_or_connector_is_served_by_its_ids(
    runtime: Runtime, emsp_peer: EmspPeer, peer_id: int, examples_dir: Path
) -> None:
    document = example(examples_dir, "location_example.json")
    await import_locations(runtime.uow(), [document])
    base = cpo_url(runtime, "locations")

    location = await call(emsp_peer, "GET", f"{base}/LOC1")
    assert (location.status, location.code) == (200, 1000)
    check("Location", location.data)
    assert_routed(runtime, emsp_peer, location.headers)
    assert location.data["id"] == "LOC1"
    assert "X-Total-Count" not in location.headers
    # Ids are CiStrings; a trailing slash is accepted.
    evse = await call(emsp_peer, "GET", f"{base}/loc1/3256/")
    assert (evse.status, evse.code) == (200, 1000)
    check("Evse", evse.data)
    assert evse.data["uid"] == "3256"
    assert [c["id"] for c in evse.data["connectors"]] == ["1", "2"]
    connector = await call(emsp_peer, "GET", f"{base}/LOC1/3256/2")
    assert (connector.status, connector.code) == (200, 1000)
    check("Connector", connector.data)
    assert connector.data == next(
        c for c in location.data["evses"][0]["connectors"] if c["id"] == "2"
    )

    for url, code in [
        (f"{base}/NOWHERE", 2003),
        (f"{base}/NOWHERE/3256", 2003),
        (f"{base}/LOC1/9999", 2000),
        (f"{base}/LOC1/3256/9", 2000),
    ]:
        reply = await call(emsp_peer, "GET", url)
        assert (reply.status, reply.code) == (404, code), (url, reply)


async def test_error_answers_of_functional_modules_carry_routing_headers_too(
    runtime: Runtime, emsp_peer: EmspPeer, peer_id: int
) -> None:
    for url in (
        f"{cpo_url(runtime, 'locations')}/NOWHERE",
        f"{cpo_url(runtime, 'sessions')}?date_from=yesterday",
    ):
        reply = await call(emsp_peer, "GET", url)
        assert reply.status in (400, 404), reply
        assert_routed(runtime, emsp_peer, reply.headers)


# --------------------------------------------------------------------------- tariffs


def valid_tariff_examples(examples_dir: Path) -> list[dict[str, Any]]:
    """Every official tariff example but tariff_put_example (no last_updated, DEFECTS 2)."""
    names = sorted(p.name for p in examples_dir.glob("tariff*.json"))
    return [example(examples_dir, n) for n in names if n != "tariff_put_example.json"]


async def test_tariffs_are_served_page_by_page_without_retired_ones(
    runtime: Runtime, emsp_peer: EmspPeer, peer_id: int, examples_dir: Path
) -> None:
    documents = valid_tariff_examples(examples_dir)
    await import_tariffs(runtime.uow(), documents)
    ids = sorted({d["id"] for d in documents})  # several examples share an id
    await retire_tariff(runtime.uow(), "15")

    pages = await crawl(runtime, emsp_peer, "tariffs", "?limit=5")
    assert sorted(pages.ids) == [i for i in ids if i != "15"]
    assert len(pages.ids) == len(set(pages.ids)) == len(ids) - 1
    assert pages.sizes == [5, 5, len(ids) - 11]
    assert pages.totals == [len(ids) - 1] * 3
    served = {item["id"]: item for item in pages.items}
    assert served["13"]["type"] == "PROFILE_CHEAP"
    assert served["14"]["type"] == "REGULAR"


# --------------------------------------------------------------------------- sessions, CDRs


CAPABLE_EVSE, PLAIN_EVSE = "CP1-1", "CP1-2"
PEER_CARD, OTHER_CARD, LOCAL_CARD = "PEER-CARD", "OTHER-CARD", "LOCAL-CARD"


@dataclass
class Site:
    """Station CP1 at location SITE, connected and reporting connectors 1 and 2.

    EVSE ``CP1-1`` takes charging preferences and lists tariffs "12" (untyped: everyone's)
    and "13" (PROFILE_CHEAP); EVSE ``CP1-2`` does not take them and lists tariff "12".
    ``PEER-CARD`` is the peer's token, ``OTHER-CARD`` the other eMSP's, ``LOCAL-CARD`` ours.
    """

    runtime: Runtime
    station: RawStation
    peer: EmspPeer
    peer_id: int
    other: EmspPeer
    other_id: int

    async def start(self, card: str, connector: int = 1, meter_wh: int = 0) -> int:
        answer = await self.station.result(
            "StartTransaction",
            {
                "connectorId": connector,
                "idTag": card,
                "meterStart": meter_wh,
                # An hour back, so the energy of the test sessions is a believable rate.
                "timestamp": iso(utcnow() - timedelta(hours=1)),
            },
        )
        assert answer["idTagInfo"]["status"] == "Accepted", answer
        return int(answer["transactionId"])

    async def meter(self, transaction_id: int, connector: int, register_wh: int) -> None:
        payload = {
            "connectorId": connector,
            "transactionId": transaction_id,
            "meterValue": [
                {
                    "timestamp": iso(utcnow() - timedelta(minutes=30)),
                    "sampledValue": [{"value": str(register_wh), "unit": "Wh"}],
                }
            ],
        }
        assert await self.station.result("MeterValues", payload) == {}

    async def stop(self, transaction_id: int, card: str, meter_wh: int) -> None:
        payload = {
            "transactionId": transaction_id,
            "idTag": card,
            "meterStop": meter_wh,
            "timestamp": iso(utcnow()),
            "reason": "EVDisconnected",
        }
        await self.station.result("StopTransaction", payload)

    async def charge(self, card: str, connector: int = 1, wh: int = 1500) -> str:
        """A whole session (start, one reading, stop); return its session id."""
        transaction_id = await self.start(card, connector)
        await self.meter(transaction_id, connector, wh // 2)
        await self.stop(transaction_id, card, wh)
        return await self.session_id(transaction_id)

    async def session_id(self, transaction_id: int) -> str:
        return (await self.session(transaction_id)).id

    async def session(self, transaction_id: int) -> Session:
        return await self.one(Session, Session.transaction_id == str(transaction_id))

    async def one(self, model: type[T], *criteria: Any) -> T:
        async with self.runtime.uow() as uow:
            found = list(await uow.session.scalars(select(model).where(*criteria)))
        assert len(found) == 1, found
        return found[0]


@pytest.fixture
async def site(
    runtime: Runtime,
    emsp_peer: EmspPeer,
    peer_id: int,
    other_peer: tuple[EmspPeer, int],
    examples_dir: Path,
) -> AsyncIterator[Site]:
    """The site ``Site`` describes."""
    other, other_id = other_peer
    uow = runtime.uow
    document = example(examples_dir, "location_example.json")
    document["id"] = "SITE"
    del document["evses"]
    await import_locations(uow(), [document])
    await create_station(uow(), "CP1", location_id="SITE")
    tariffs = ["tariff_1_simple_2hour.json", "tariff_3_alt_url.json"]  # "12", "13"
    await import_tariffs(uow(), [example(examples_dir, name) for name in tariffs])
    await push_partner_token(runtime, peer_id, emsp_peer, PEER_CARD)
    await push_partner_token(runtime, other_id, other, OTHER_CARD)
    settings = runtime.settings
    await create_token(
        uow(), {"uid": LOCAL_CARD}, country_code=settings.country_code, party_id=settings.party_id
    )
    async with raw_station(runtime.ocpp_port, "CP1") as station:
        await station.boot()
        for connector in (1, 2):
            await station.result(
                "StatusNotification",
                {"connectorId": connector, "status": "Available", "errorCode": "NoError"},
            )
        capabilities = ["CHARGING_PREFERENCES_CAPABLE", "REMOTE_START_STOP_CAPABLE"]
        await change_evse(uow(), "SITE", CAPABLE_EVSE, {"capabilities": capabilities})
        await assign_tariffs(uow(), "SITE", CAPABLE_EVSE, "1", ["12", "13"])
        await assign_tariffs(uow(), "SITE", PLAIN_EVSE, "1", ["12"])
        yield Site(runtime, station, emsp_peer, peer_id, other, other_id)


async def test_sessions_and_cdrs_are_served_only_to_the_partner_whose_token_charged(
    site: Site,
) -> None:
    runtime, peer = site.runtime, site.peer
    since = format_datetime(utcnow() - timedelta(seconds=1))
    finished = [await site.charge(PEER_CARD, wh=1000 * (n + 1)) for n in range(3)]
    running_tx = await site.start(PEER_CARD, connector=2)
    await site.meter(running_tx, 2, 700)
    running = await site.session_id(running_tx)
    others = await site.charge(OTHER_CARD)
    ours = await site.charge(LOCAL_CARD)

    sessions = await crawl(runtime, peer, "sessions", f"?date_from={since}&limit=2")
    assert sessions.ids == [*finished, running]
    assert sessions.sizes == [2, 2]
    assert sessions.totals == [4, 4]
    assert query_of(sessions.links[0]) == {"date_from": since, "offset": "2", "limit": "2"}
    by_id = {s["id"]: s for s in sessions.items}
    assert [by_id[s]["status"] for s in finished] == ["COMPLETED"] * 3
    assert [by_id[s]["kwh"] for s in finished] == [1.0, 2.0, 3.0]
    assert by_id[running]["status"] == "ACTIVE"
    assert by_id[running]["kwh"] == 0.7
    assert all(s["cdr_token"]["uid"] == PEER_CARD for s in sessions.items)
    assert all(s["cdr_token"]["party_id"] == peer.party_id for s in sessions.items)

    cdrs = await crawl(runtime, peer, "cdrs", "?limit=2")
    assert [c["session_id"] for c in cdrs.items] == finished
    assert cdrs.sizes == [2, 1]
    assert cdrs.totals == [3, 3]
    async with runtime.uow() as uow:
        stored = {c.id: c.document for c in await uow.session.scalars(select(Cdr))}
    assert all(stored[c["id"]] == c for c in cdrs.items)  # served exactly as issued
    assert len(stored) == 5

    other_sessions = await crawl(runtime, site.other, "sessions", f"?date_from={since}")
    assert other_sessions.ids == [others]
    assert [c["session_id"] for c in (await crawl(runtime, site.other, "cdrs")).items] == [others]
    assert ours not in sessions.ids + other_sessions.ids


async def test_sessions_need_date_from_and_windows_tile_without_gaps(site: Site) -> None:
    runtime, peer = site.runtime, site.peer
    since = format_datetime(utcnow() - timedelta(seconds=1))
    made = [await site.charge(PEER_CARD) for _ in range(5)]

    for query in ("", "?limit=2", "?date_to=2030-01-01T00:00:00Z", "?date_from="):
        reply = await call(peer, "GET", cpo_url(runtime, "sessions") + query)
        assert (reply.status, reply.code) == (400, 2001), (query, reply)
        assert "date_from" in reply.body["status_message"]

    everything = await crawl(runtime, peer, "sessions", f"?date_from={since}")
    assert everything.ids == made
    stamps = {s["id"]: s["last_updated"] for s in everything.items}
    b, c = stamps[made[1]], stamps[made[3]]
    windows = [
        await crawl(runtime, peer, "sessions", f"?date_from={since}&date_to={b}"),
        await crawl(runtime, peer, "sessions", f"?date_from={b}&date_to={c}&limit=1"),
        await crawl(runtime, peer, "sessions", f"?date_from={c}"),
    ]
    assert made[1] not in windows[0].ids
    assert made[1] in windows[1].ids
    assert made[3] not in windows[1].ids
    assert made[3] in windows[2].ids
    tiled = [i for window in windows for i in window.ids]
    assert sorted(tiled) == sorted(made)
    assert len(tiled) == len(set(tiled)) == 5
    assert sum(window.totals[0] for window in windows) == 5


async def test_sessions_started_and_metered_between_pages_skip_nothing_and_repeat_nothing(
    site: Site,
) -> None:
    runtime, peer = site.runtime, site.peer
    since = format_datetime(utcnow() - timedelta(seconds=1))
    running_tx = await site.start(PEER_CARD, connector=2)
    first = [await site.session_id(running_tx)]
    first += [await site.charge(PEER_CARD) for _ in range(4)]
    added: list[str] = []
    register = [0]

    async def meanwhile(page: int) -> None:
        # The session read first gets a reading (its last_updated moves); a new one starts.
        register[0] += 100
        await site.meter(running_tx, 2, register[0])
        added.append(await site.charge(PEER_CARD))

    pages = await crawl(runtime, peer, "sessions", f"?date_from={since}&limit=2", between=meanwhile)
    assert pages.ids == first + added
    assert len(added) >= 2


async def test_charging_preferences_are_accepted_stored_and_announced(site: Site) -> None:
    runtime, peer = site.runtime, site.peer
    transaction_id = await site.start(PEER_CARD, connector=1)
    session = await site.session(transaction_id)
    url = f"{cpo_url(runtime, 'sessions')}/{session.id}/charging_preferences"
    body = {
        "profile_type": "CHEAP",
        "departure_time": "2030-01-01T18:00:00",
        "energy_need": 12.5,
        "discharge_allowed": False,
        "extension_nobody_defined": 1,
    }

    reply = await call(peer, "PUT", url, body)

    assert (reply.status, reply.code, reply.data) == (200, 1000, "ACCEPTED")
    assert_routed(runtime, peer, reply.headers)
    stored = await site.session(transaction_id)
    assert stored.charging_preferences == {
        "profile_type": "CHEAP",
        "departure_time": "2030-01-01T18:00:00Z",
        "energy_need": 12.5,
        "discharge_allowed": False,
    }
    assert stored.last_updated > session.last_updated
    announced = await site.one(
        OutboxEntry,
        OutboxEntry.topic == "session.updated",
        OutboxEntry.aggregate_id == session.id,
        OutboxEntry.created_at == stored.last_updated,
    )
    assert announced.payload["status"] == "ACTIVE"
    # REGULAR needs no tariff of its own; a trailing slash is accepted.
    regular = await call(peer, "PUT", url + "/", {"profile_type": "REGULAR"})
    assert (regular.status, regular.code, regular.data) == (200, 1000, "ACCEPTED")
    assert (await site.session(transaction_id)).charging_preferences == {"profile_type": "REGULAR"}


async def test_charging_preferences_the_site_cannot_honour_are_answered_and_not_stored(
    site: Site,
) -> None:
    runtime, peer = site.runtime, site.peer
    finished = await site.charge(PEER_CARD, connector=1)
    others = await site.charge(OTHER_CARD, connector=2)
    running = await site.session(await site.start(PEER_CARD, connector=1))
    plain = await site.session_id(await site.start(PEER_CARD, connector=2))

    def url(session_id: str) -> str:
        return f"{cpo_url(runtime, 'sessions')}/{session_id}/charging_preferences"

    # No PROFILE_FAST tariff on the connector.
    fast = await call(peer, "PUT", url(running.id), {"profile_type": "FAST"})
    assert (fast.status, fast.code, fast.data) == (200, 1000, "PROFILE_TYPE_NOT_SUPPORTED")
    # The session is over.
    late = await call(peer, "PUT", url(finished), {"profile_type": "CHEAP"})
    assert (late.status, late.code, late.data) == (200, 1000, "NOT_POSSIBLE")
    # The EVSE does not take preferences: the spec's HTTP 404 with 2001.
    plain_reply = await call(peer, "PUT", url(plain), {"profile_type": "REGULAR"})
    assert (plain_reply.status, plain_reply.code) == (404, 2001)
    # Unknown sessions and other partners' sessions alike.
    for session_id in ("no-such-session", others):
        unknown = await call(peer, "PUT", url(session_id), {"profile_type": "REGULAR"})
        assert (unknown.status, unknown.code) == (404, 2001), session_id
        assert "unknown session" in unknown.body["status_message"]
    # Bad documents: OCPI 2001 in an HTTP 200, naming the field.
    for body, named in [
        ({}, "profile_type"),
        ({"profile_type": "TURBO"}, "profile_type"),
        ({"profile_type": "CHEAP", "departure_time": "2030-01-01T18:00:00+01:00"}, "departure"),
        ({"profile_type": "CHEAP", "energy_need": "lots"}, "energy_need"),
        ({"profile_type": "CHEAP", "energy_need": -1}, "energy_need"),
        ({"profile_type": "CHEAP", "discharge_allowed": "yes"}, "discharge_allowed"),
        (["CHEAP"], "ChargingPreferences"),
    ]:
        bad = await call(peer, "PUT", url(running.id), body)
        assert (bad.status, bad.code) == (200, 2001), (body, bad)
        assert named in bad.body["status_message"], bad.body
    # A body that is not JSON at all is HTTP 400.
    assert peer.token_for_cpo is not None
    async with (
        aiohttp.ClientSession() as client,
        client.put(
            url(running.id),
            data="{not json",
            headers={"Authorization": f"Token {peer.token_for_cpo}"},
        ) as response,
    ):
        assert response.status == 400
        assert (await response.json())["status_code"] == 2001

    after = {s: await site.one(Session, Session.id == s) for s in (running.id, finished, others)}
    assert all(s.charging_preferences is None for s in after.values())
    assert after[running.id].last_updated == running.last_updated
