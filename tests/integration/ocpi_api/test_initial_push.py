"""A partner that registers gets every location it may see and every current tariff, once.

Registration through the real handshake, both ways, on a real node (SQLite, and PostgreSQL
when configured) with the real eMSP peer (``tests/ocpi_peer.py``): the peer registers with
us (its POST), and we register with the peer (our POST). Either way it is then pushed a PUT
of every published location (not the unpublished one it has no token for, not the retired
one) and every tariff not retired, each exactly once, through the push queue. A credentials
PUT that keeps the peer's receiver endpoints pushes nothing again; one that moves its
locations receiver pushes the locations again, to the new URL, and not the tariffs; our
own credentials PUT that moves nothing pushes nothing either. The walk itself
(``queue_full_sync``) goes in short transactions of ``batch`` objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpi_peer import EmspPeer
from ocpi_support import cpo_url, register_directly
from push_support import (
    comparable,
    example,
    location_document,
    pushes,
    served,
    settled,
)

from cpms import locations, tariffs
from cpms.config import Settings
from cpms.partners import invite_partner
from cpms.push_queue import queue_full_sync
from cpms.runtime import Runtime
from ocpi_api.registration import our_roles, register, update

PUBLISHED = ["LOC-1", "LOC-2", "LOC-3"]
TARIFFS = ["12", "21"]  # tariff_1_simple_2hour, tariff_13_simple_3hour_5parking


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime(settings.replace(ocpi_push_retry_max=0.5), node="initial-push")
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def our_data(runtime: Runtime) -> None:
    """Three published locations, an unpublished one, a retired one; two tariffs, one retired."""
    documents = [location_document(n) for n in (1, 2, 3)]
    documents.append(location_document(4, publish=False))
    documents.append(location_document(5))
    await locations.import_locations(runtime.uow(), documents)
    await locations.retire_location(runtime.uow(), "LOC-5")
    await tariffs.import_tariffs(
        runtime.uow(),
        [
            example("tariff_1_simple_2hour.json"),
            example("tariff_13_simple_3hour_5parking.json"),
            example("tariff_5_free_of_charge.json"),
        ],
    )
    await tariffs.retire_tariff(runtime.uow(), "15")
    await settled(runtime)  # no partner yet: nothing queued


def puts(peer: EmspPeer, module: str) -> list[str]:
    """The object ids the peer received a PUT of in ``module``, in order."""
    return [
        r.path.rsplit("/", 1)[1]
        for r in peer.requests
        if r.method == "PUT" and r.path.startswith(f"/2.2.1/{module}/")
    ]


async def check_everything_once(runtime: Runtime, peer: EmspPeer) -> None:
    await settled(runtime)
    assert sorted(puts(peer, "locations")) == PUBLISHED
    assert sorted(puts(peer, "tariffs")) == TARIFFS
    pushed = [r for r in peer.requests if r.path.split("/")[2:3] != ["credentials"]]
    assert not [r for r in pushed if r.method in ("PATCH", "DELETE", "POST")]
    for location_id in PUBLISHED:
        ours = await served(runtime, peer, f"locations/{location_id}")
        assert comparable(peer.locations[location_id]) == comparable(ours)
    assert sorted(peer.tariffs) == TARIFFS
    assert {t["id"]: t for t in await served(runtime, peer, "tariffs")} == peer.tariffs
    sync = [p for p in await pushes(runtime) if (p.payload or {}).get("sync")]
    assert len(sync) == len(PUBLISHED) + len(TARIFFS)
    assert {p.outcome for p in sync} == {"SENT"}
    assert peer.problems == []


async def test_a_peer_that_registers_with_us_gets_every_location_and_tariff_once(
    node: Runtime, emsp_peer: EmspPeer
) -> None:
    await our_data(node)
    _, token_a = await invite_partner(node.uow())

    await emsp_peer.register_with(f"{node.base_url()}/ocpi/versions", token_a)

    await check_everything_once(node, emsp_peer)


async def test_a_peer_we_register_with_gets_every_location_and_tariff_once(
    node: Runtime, emsp_peer: EmspPeer
) -> None:
    await our_data(node)

    await register(
        node.uow,
        node.vault,
        node.ocpi_client,
        name="peer",
        versions_url=emsp_peer.versions_url,
        token_a=emsp_peer.issue_token_a(),
        our_versions_url=f"{node.base_url()}/ocpi/versions",
        our_roles=our_roles(node.settings),
    )

    await check_everything_once(node, emsp_peer)


async def put_credentials(runtime: Runtime, peer: EmspPeer) -> None:
    """The peer updates its credentials with us (a new token for us, same roles)."""
    offered = "R-" + str(len(peer.requests))
    peer.accepted_tokens.add(offered)
    status, answer, _ = await peer.call(
        "PUT", cpo_url(runtime, "credentials"), body=peer.credentials(offered)
    )
    assert (status, answer["status_code"]) == (200, 1000), answer
    peer.token_for_cpo = answer["data"]["token"]


async def test_a_credentials_put_pushes_again_only_a_receiver_that_moved(
    node: Runtime, emsp_peer: EmspPeer
) -> None:
    await our_data(node)
    _, token_a = await invite_partner(node.uow())
    await emsp_peer.register_with(f"{node.base_url()}/ocpi/versions", token_a)
    await settled(node)
    before = len(emsp_peer.requests)

    await put_credentials(node, emsp_peer)  # a token rotation: the same endpoints
    await settled(node)
    # We read its versions and details again (CHECKLIST 1.3), and push nothing.
    assert {r.path for r in emsp_peer.requests[before:]} == {"/versions", "/2.2.1"}

    # The peer moves its locations receiver (another host name for the same server).
    full = emsp_peer.endpoints()
    moved = f"http://localhost:{emsp_peer.port}/2.2.1/locations"

    def endpoints() -> list[dict[str, Any]]:
        return [e | {"url": moved} if e["identifier"] == "locations" else e for e in full]

    emsp_peer.endpoints = endpoints  # type: ignore[method-assign]
    before = len(emsp_peer.requests)
    await put_credentials(node, emsp_peer)
    await settled(node)
    again = [r for r in emsp_peer.requests[before:] if r.method == "PUT"]
    located = [r for r in again if "/locations/" in r.path]
    assert sorted(r.path.rsplit("/", 1)[1] for r in located) == PUBLISHED
    assert all(r.headers["Host"].startswith("localhost:") for r in located)  # the new URL
    assert not [r for r in again if "/tariffs/" in r.path]
    assert emsp_peer.problems == []


async def test_our_credentials_update_pushes_nothing_again_when_nothing_moved(
    node: Runtime, emsp_peer: EmspPeer
) -> None:
    await our_data(node)
    partner_id = await register(
        node.uow,
        node.vault,
        node.ocpi_client,
        name="peer",
        versions_url=emsp_peer.versions_url,
        token_a=emsp_peer.issue_token_a(),
        our_versions_url=f"{node.base_url()}/ocpi/versions",
        our_roles=our_roles(node.settings),
    )
    await settled(node)
    before = len(emsp_peer.requests)

    await update(
        node.uow,
        node.vault,
        node.ocpi_client,
        partner_id,
        our_versions_url=f"{node.base_url()}/ocpi/versions",
        our_roles=our_roles(node.settings),
    )
    await settled(node)

    assert [(r.method, r.path) for r in emsp_peer.requests[before:]] == [
        ("GET", "/versions"),
        ("GET", "/2.2.1"),
        ("PUT", "/2.2.1/credentials"),
    ]


async def test_the_full_sync_walks_in_short_transactions(
    node: Runtime, emsp_peer: EmspPeer
) -> None:
    await our_data(node)
    await locations.import_locations(node.uow(), [location_document(n) for n in range(6, 10)])
    await settled(node)
    partner_id = await register_directly(node, emsp_peer)  # written directly: no sync of its own

    queued = await queue_full_sync(node.uow, partner_id, batch=3)
    node.pusher.wake()

    # Tariffs: 2 in one batch; locations: 7 visible, 3 + 3 + 1.
    assert (queued.tariffs, queued.locations, queued.transactions) == (2, 7, 4)
    await settled(node)
    visible = sorted(PUBLISHED + [f"LOC-{n}" for n in range(6, 10)])
    assert sorted(puts(emsp_peer, "locations")) == visible
    assert sorted(puts(emsp_peer, "tariffs")) == TARIFFS
    keys = [p.object_key for p in await pushes(node)]
    assert sorted(keys) == sorted({*keys})  # each object queued once
    assert emsp_peer.problems == []


async def test_what_changes_during_a_long_full_sync_overtakes_it(
    node: Runtime, emsp_peer: EmspPeer
) -> None:
    count = 24
    await locations.import_locations(
        node.uow(), [location_document(n) for n in range(1, count + 1)]
    )
    await settled(node)
    emsp_peer.delay = 0.1  # a slow platform: the sync takes a while
    _, token_a = await invite_partner(node.uow())
    await emsp_peer.register_with(f"{node.base_url()}/ocpi/versions", token_a)

    # The last location of the sync changes while the first ones are on their way, and
    # a new one appears: both reach the partner long before the sync is through.
    await emsp_peer.wait_for(lambda: puts(emsp_peer, "locations"))
    await locations.change_evse(
        node.uow(), f"LOC-{count}", f"3256-{count}", {"physical_reference": "CHANGED"}
    )
    await locations.import_locations(node.uow(), [location_document(count + 1)])
    await settled(node)

    order = puts(emsp_peer, "locations")
    assert sorted(order) == sorted(f"LOC-{n}" for n in range(1, count + 2))  # each once
    assert order.index(f"LOC-{count}") < count // 2
    assert order.index(f"LOC-{count + 1}") < count // 2
    assert emsp_peer.locations[f"LOC-{count}"]["evses"][0]["physical_reference"] == "CHANGED"
    assert emsp_peer.problems == []
