"""OCPI HubClientInfo on a real node: the receiver a hub PUTs to, and pulling the hub's list.

The hub is the test peer as a hub (``tests/hub_peer.py``: role HUB, a paged hubclientinfo
SENDER). The receiver: a PUT creates (201) and updates (200), GET serves what the calling hub
said (checked with ocpi-types), unknown parties are 404; bodies that are no valid ClientInfo,
or that name another party than the URL, are OCPI 2001 and store nothing; an older
ClientInfo never replaces a newer one; no routing headers (a configuration module); only
hubs may call it, never with token A. What each hub said is kept apart, and
``connection_status`` answers from it. The pull follows the hub's Link over three pages and
more, rejecting invalid ClientInfos one by one; the operator API lists the result.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hub_peer import HubPeer, ListingEmspPeer, client_info
from ocpi_models import check
from ocpi_support import cpo_url, register_directly
from operator_check import operator
from sqlalchemy import select, update

from cpms import hub_clients
from cpms.model import HubClient, OcpiPartner
from cpms.partners import invite_partner
from cpms.runtime import Runtime
from ocpi_api.hub_client_pull import pull_hub_clients

CLIENT = client_info("DE", "ABC")


@pytest.fixture
async def hub(runtime: Runtime) -> AsyncIterator[tuple[HubPeer, int]]:
    async with HubPeer() as peer:
        yield peer, await register_directly(runtime, peer, name="hub")


def url(runtime: Runtime, country_code: str = "DE", party_id: str = "ABC") -> str:
    return cpo_url(runtime, f"hubclientinfo/{country_code}/{party_id}")


async def stored(runtime: Runtime) -> list[tuple[int, str, str, str, str]]:
    async with runtime.uow() as uow:
        rows = await uow.session.scalars(select(HubClient).order_by(HubClient.id))
        return [(r.partner_id, r.country_code, r.party_id, r.role, r.status) for r in rows]


# The receiver ----------------------------------------------------------------------------------


async def test_version_details_list_hubclientinfo_as_receiver(
    runtime: Runtime, hub: tuple[HubPeer, int]
) -> None:
    peer, _ = hub
    _, envelope, _ = await peer.call("GET", cpo_url(runtime))
    endpoints = [(e["identifier"], e["role"], e["url"]) for e in envelope["data"]["endpoints"]]
    assert ("hubclientinfo", "RECEIVER", url(runtime).rsplit("/", 2)[0]) in endpoints


async def test_a_put_client_info_is_created_then_updated_and_served(
    runtime: Runtime, hub: tuple[HubPeer, int]
) -> None:
    peer, partner_id = hub
    status, envelope, headers = await peer.call("PUT", url(runtime), body=CLIENT)
    assert (status, envelope["status_code"]) == (201, 1000), envelope
    assert "data" not in envelope
    # A configuration module: no routing headers on the answer (CHECKLIST 1.10).
    assert not any(name.lower().startswith("ocpi-") for name in headers)

    status, envelope, headers = await peer.call("GET", url(runtime))
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    check("HubClientInfo", envelope["data"])
    assert envelope["data"] == CLIENT
    assert not any(name.lower().startswith("ocpi-") for name in headers)

    offline = CLIENT | {"status": "OFFLINE", "last_updated": "2024-02-01T10:00:00.5Z"}
    status, envelope, _ = await peer.call("PUT", url(runtime) + "/", body=offline)
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    _, envelope, _ = await peer.call("GET", url(runtime, "de", "abc"))
    assert envelope["data"] == offline | {"last_updated": "2024-02-01T10:00:00.500Z"}
    assert await stored(runtime) == [(partner_id, "DE", "ABC", "EMSP", "OFFLINE")]


async def test_an_older_client_info_does_not_replace_a_newer_one(
    runtime: Runtime, hub: tuple[HubPeer, int]
) -> None:
    peer, _ = hub
    newer = CLIENT | {"status": "SUSPENDED", "last_updated": "2024-05-01T00:00:00Z"}
    await peer.call("PUT", url(runtime), body=newer)
    status, envelope, _ = await peer.call("PUT", url(runtime), body=CLIENT)
    assert (status, envelope["status_code"]) == (200, 1000)
    _, envelope, _ = await peer.call("GET", url(runtime))
    assert envelope["data"] == newer


async def test_an_unknown_party_is_404(runtime: Runtime, hub: tuple[HubPeer, int]) -> None:
    peer, _ = hub
    status, envelope, _ = await peer.call("GET", url(runtime, "FR", "ZZZ"))
    assert (status, envelope["status_code"]) == (404, 2000)
    assert "data" not in envelope


def _bad_bodies() -> list[tuple[str, Any, str]]:
    def without(name: str) -> dict[str, Any]:
        body = copy.deepcopy(CLIENT)
        del body[name]
        return body

    return [
        ("no-status", without("status"), "required: status"),
        ("no-last-updated", without("last_updated"), "required: last_updated"),
        ("no-role", without("role"), "required: role"),
        ("bad-status", CLIENT | {"status": "ONLINE"}, "'status': expected one of CONNECTED"),
        ("bad-role", CLIENT | {"role": "DRIVER"}, "'role': expected one of CPO"),
        ("long-party", CLIENT | {"party_id": "ABCD"}, "'party_id': expected a CiString of 1 to 3"),
        ("long-country", CLIENT | {"country_code": "DEU"}, "'country_code'"),
        ("non-ascii", CLIENT | {"party_id": "ÄBC"}, "'party_id'"),
        ("number", CLIENT | {"party_id": 123}, "'party_id'"),
        ("offset-time", CLIENT | {"last_updated": "2024-01-01T00:00:00+01:00"}, "UTC offset"),
        ("not-a-time", CLIENT | {"last_updated": "yesterday"}, "last_updated"),
        ("list", [CLIENT], "must be a JSON object"),
        ("string", "CONNECTED", "must be a JSON object"),
        ("other-party", CLIENT | {"party_id": "XYZ"}, "'party_id' is 'XYZ' but the URL names"),
        ("other-country", CLIENT | {"country_code": "NL"}, "'country_code' is 'NL' but the URL"),
    ]


@pytest.mark.parametrize(
    ("body", "said"), [b[1:] for b in _bad_bodies()], ids=[b[0] for b in _bad_bodies()]
)
async def test_a_bad_client_info_is_2001_and_stores_nothing(
    runtime: Runtime, hub: tuple[HubPeer, int], body: Any, said: str
) -> None:
    peer, _ = hub
    status, envelope, _ = await peer.call("PUT", url(runtime), body=body)
    assert (status, envelope["status_code"]) == (200, 2001), envelope
    assert said in envelope["status_message"]
    assert await stored(runtime) == []


async def test_a_bad_body_leaves_the_stored_client_info_as_it_was(
    runtime: Runtime, hub: tuple[HubPeer, int]
) -> None:
    peer, partner_id = hub
    await peer.call("PUT", url(runtime), body=CLIENT)
    _, envelope, _ = await peer.call(
        "PUT",
        url(runtime),
        body=CLIENT | {"status": "GONE", "last_updated": "2030-01-01T00:00:00Z"},
    )
    assert envelope["status_code"] == 2001
    assert await stored(runtime) == [(partner_id, "DE", "ABC", "EMSP", "CONNECTED")]


async def test_a_body_that_is_not_json_is_400(runtime: Runtime, hub: tuple[HubPeer, int]) -> None:
    peer, _ = hub
    status, envelope, _ = await peer.call(
        "PUT", url(runtime), body=None, headers={"Content-Type": "application/json"}
    )
    assert (status, envelope["status_code"]) == (400, 2001)


async def test_there_is_no_post_patch_or_delete(runtime: Runtime, hub: tuple[HubPeer, int]) -> None:
    peer, _ = hub
    for method in ("POST", "PATCH", "DELETE"):
        status, envelope, _ = await peer.call(method, url(runtime), body=CLIENT)
        assert (status, envelope["status_code"]) == (405, 2000), method
    assert await stored(runtime) == []


async def test_only_hubs_may_tell_us_of_clients(runtime: Runtime) -> None:
    async with ListingEmspPeer() as emsp:
        await register_directly(runtime, emsp, name="emsp")
        for method, body in (("PUT", CLIENT), ("GET", None)):
            status, envelope, _ = await emsp.call(method, url(runtime), body=body)
            assert (status, envelope["status_code"]) == (404, 2000), envelope
            assert "none of your credentials roles is HUB" in envelope["status_message"]
    assert await stored(runtime) == []


async def test_token_a_does_not_open_hubclientinfo(runtime: Runtime) -> None:
    # A configuration module (no routing headers), but token A opens only versions and
    # credentials (CHECKLIST 1.3): the transport answers 401 before any handler.
    _, token_a = await invite_partner(runtime.uow(), "hub to be")
    async with HubPeer() as peer:
        for method, body in (("PUT", CLIENT), ("GET", None)):
            status, envelope, _ = await peer.call(method, url(runtime), body=body, token=token_a)
            assert (status, envelope["status_code"]) == (401, 2000), method
            assert "token A only opens versions and credentials" in envelope["status_message"]
        status, _, _ = await peer.call("PUT", url(runtime), body=CLIENT, token="unknown")
        assert status == 401
        # The same token A still opens versions.
        status, _, _ = await peer.call("GET", f"{runtime.base_url()}/ocpi/versions", token=token_a)
        assert status == 200
    assert await stored(runtime) == []


async def test_what_each_hub_said_is_kept_apart_and_gives_the_connection_status(
    runtime: Runtime, hub: tuple[HubPeer, int]
) -> None:
    first, first_id = hub
    async with HubPeer(party_id="HB2", name="Second Hub") as second:
        second_id = await register_directly(runtime, second, name="hub 2")
        await first.call("PUT", url(runtime), body=CLIENT)
        later = CLIENT | {"status": "OFFLINE", "last_updated": "2024-03-01T00:00:00Z"}
        await second.call("PUT", url(runtime), body=later)
        _, envelope, _ = await first.call("GET", url(runtime))
        assert envelope["data"]["status"] == "CONNECTED"  # its own word, not the other's
        status, _, _ = await second.call("GET", url(runtime, "NL", "XXX"))
        assert status == 404

    async with runtime.uow() as uow:
        assert await hub_clients.connection_status(uow, "de", "abc") == "OFFLINE"
        assert await hub_clients.connection_status(uow, "DE", "ABC", partner_id=first_id) == (
            "CONNECTED"
        )
        assert await hub_clients.connection_status(uow, "FR", "ABC") is None
        # A hub we are no longer registered with has nothing to say.
        await uow.session.execute(
            update(OcpiPartner).where(OcpiPartner.id == second_id).values(state="UNREGISTERED")
        )
        await uow.commit()
    async with runtime.uow() as uow:
        assert await hub_clients.connection_status(uow, "DE", "ABC") == "CONNECTED"


# Pulling the hub's list ------------------------------------------------------------------------


async def test_a_hub_that_registered_by_handshake_has_its_clients_pulled_over_pages(
    runtime: Runtime,
) -> None:
    async with HubPeer() as peer:
        partner_id, token_a = await invite_partner(runtime.uow(), "")
        await peer.register_with(f"{runtime.base_url()}/ocpi/versions", token_a)
        assert peer.lists is not None
        peer.lists.clients = [
            client_info("DE", f"E{n:02d}", role="EMSP" if n % 2 else "CPO") for n in range(9)
        ]
        peer.lists.clients[4] = client_info("DE", "E04", status="BROKEN")
        peer.lists.clients.append(client_info("FR", "LAST", status="PLANNED"))

        status, report = await operator(
            runtime, "POST", f"/ocpi/partners/{partner_id}/pull-clients"
        )

        assert status == 200, report
        assert (report["pages"], report["received"], report["created"]) == (4, 10, 8)
        assert report["rejected"] == 2
        assert [(r["page"], r["index"], r["key"]) for r in report["rejections"]] == [
            (2, 1, "DE/E04"),
            (4, 0, "FR/LAST"),
        ]
        assert "'status': expected one of" in report["rejections"][0]["reason"]
        assert "'party_id'" in report["rejections"][1]["reason"]
        asked = peer.lists.pages_asked("hubclientinfo")
        assert [r.query.get("offset") for r in asked] == [None, "3", "6", "9"]
        for request in asked:  # a configuration module: no routing headers
            assert not any(name.lower().startswith("ocpi-") for name in request.headers)
        assert peer.problems == []

    status, listed = await operator(runtime, "GET", "/ocpi/hub-clients?limit=3")
    assert status == 200
    assert listed["total"] == 8
    assert [item["party_id"] for item in listed["items"]] == ["E00", "E01", "E02"]
    assert listed["items"][0] | {"received_at": None} == {
        "party_id": "E00",
        "country_code": "DE",
        "role": "CPO",
        "status": "CONNECTED",
        "last_updated": "2024-01-01T00:00:00Z",
        "partner_id": partner_id,
        "partner_name": "Test Hub",
        "received_at": None,
    }


async def test_a_pull_keeps_newer_client_infos_and_sends_since(
    runtime: Runtime, hub: tuple[HubPeer, int]
) -> None:
    from datetime import UTC, datetime

    peer, partner_id = hub
    assert peer.lists is not None
    newer = CLIENT | {"status": "SUSPENDED", "last_updated": "2024-05-01T00:00:00Z"}
    await peer.call("PUT", url(runtime), body=newer)
    peer.lists.clients = [CLIENT, client_info("DE", "NEW", last_updated="2024-04-01T00:00:00Z")]

    report = await pull_hub_clients(runtime.uow, runtime.vault, runtime.ocpi_client, partner_id)
    assert (report.created, report.updated, report.kept) == (1, 0, 1)
    _, envelope, _ = await peer.call("GET", url(runtime))
    assert envelope["data"] == newer

    report = await pull_hub_clients(
        runtime.uow, runtime.vault, runtime.ocpi_client, partner_id,
        since=datetime(2024, 3, 1, tzinfo=UTC),
    )  # fmt: skip
    assert (report.received, report.updated) == (1, 1)
    assert peer.lists.pages_asked("hubclientinfo")[-1].query == {
        "date_from": "2024-03-01T00:00:00Z"
    }


async def test_pulling_clients_of_a_partner_without_the_endpoint_is_409(
    runtime: Runtime,
) -> None:
    async with ListingEmspPeer() as emsp:
        partner_id = await register_directly(runtime, emsp, name="emsp")
        status, answer = await operator(
            runtime, "POST", f"/ocpi/partners/{partner_id}/pull-clients"
        )
    assert (status, answer["error"]["code"]) == (409, "conflict")
    assert "hubclientinfo SENDER" in answer["error"]["message"]
