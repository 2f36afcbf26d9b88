"""A roaming hub between us and its eMSPs, on a real node: their tokens, addressing, holding.

The hub is the test peer as a hub (``tests/hub_peer.py``: role HUB ``NL*HUB``), registered
directly; its client is the eMSP ``DE*ABC``, reported through HubClientInfo. Checked:

- tokens: the hub may PUT, PATCH and GET tokens of the eMSP parties it reported (role
  EMSP), and its pulled list stores them; tokens of a party it never reported, or reported
  in another role, are refused (HTTP 404) or skipped as before;
- real-time authorization of such a token asks the hub, addressed ``OCPI-to-*`` to the
  eMSP (CHECKLIST 1.10 "via hub (addressed)");
- pushes: locations are broadcast to the hub itself (TO ``NL*HUB``), never held; a session
  and its CDR are addressed to the eMSP, held (pending, no attempt counted, not failed, not
  dropped) while the hub reports it OFFLINE, SUSPENDED or PLANNED, and sent once the hub
  reports it CONNECTED again (its PUT, or our pull of its list), long before the recheck.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hub_peer import HubPeer, client_info, token
from ocpi_peer import Recorded
from ocpi_support import cpo_url, register_directly
from push_support import (
    WAIT,
    import_loc1,
    iso,
    pushes,
    settled,
    station_on_3256,
    yesterday,
)
from raw_station import raw_station
from sqlalchemy import select

from cpms.authorization import AuthorizationStatus
from cpms.config import Settings
from cpms.model import Token
from cpms.push_queue import HOLD_RECHECK
from cpms.runtime import Runtime
from ocpi_api.hub_client_pull import pull_hub_clients
from ocpi_api.token_pull import pull_tokens

CARD = "HUB-CARD-1"


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Runtime]:
    """A node with short push backoffs."""
    runtime = Runtime(settings.replace(ocpi_push_retry_max=0.5), node="hub-test")
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def hub(node: Runtime) -> AsyncIterator[tuple[HubPeer, int]]:
    async with HubPeer() as peer:
        yield peer, await register_directly(node, peer, name="hub")


async def report_client(
    runtime: Runtime, peer: HubPeer, status: str, *, last_updated: str, **fields: Any
) -> None:
    """The hub PUTs the ClientInfo of ``DE*ABC`` (or of the party ``fields`` name)."""
    body = client_info("DE", "ABC", status=status, last_updated=last_updated) | fields
    path = f"hubclientinfo/{body['country_code']}/{body['party_id']}"
    code, envelope, _ = await peer.call("PUT", cpo_url(runtime, path), body=body)
    assert code in (200, 201), envelope


def token_url(runtime: Runtime, country_code: str, party_id: str, uid: str) -> str:
    return cpo_url(runtime, f"tokens/{country_code}/{party_id}/{uid}")


async def until(predicate: Callable[[], Any]) -> None:
    """Wait (bounded) until ``predicate()`` (maybe a coroutine) is true."""
    async with asyncio.timeout(WAIT):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.05)


# Tokens of the hub's clients -------------------------------------------------------------------


async def test_a_hub_may_push_tokens_only_of_the_emsps_it_reported(
    node: Runtime, hub: tuple[HubPeer, int]
) -> None:
    peer, partner_id = hub
    card = token(CARD, country_code="DE", party_id="ABC")
    status, envelope, _ = await peer.call("PUT", token_url(node, "DE", "ABC", CARD), body=card)
    assert (status, envelope["status_code"]) == (404, 2000), envelope
    assert "not one of your parties" in envelope["status_message"]

    # Reported as its client (OFFLINE or not, it is the hub's client): its tokens come in.
    await report_client(node, peer, "OFFLINE", last_updated="2024-01-01T00:00:00Z")
    status, envelope, _ = await peer.call("PUT", token_url(node, "de", "abc", CARD), body=card)
    assert (status, envelope["status_code"]) == (201, 1000), envelope
    patch = {"valid": False, "last_updated": "2024-02-01T00:00:00Z"}
    status, envelope, _ = await peer.call("PATCH", token_url(node, "DE", "ABC", CARD), body=patch)
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    status, envelope, _ = await peer.call("GET", token_url(node, "DE", "ABC", CARD))
    assert (status, envelope["data"]["valid"]) == (200, False)

    # A party reported in another role than EMSP, or never reported: refused as before.
    await report_client(
        node, peer, "CONNECTED", last_updated="2024-01-01T00:00:00Z", party_id="CPX", role="CPO"
    )
    for party in ("CPX", "XYZ"):
        other = token("OTHER-1", country_code="DE", party_id=party)
        url = token_url(node, "DE", party, "OTHER-1")
        status, envelope, _ = await peer.call("PUT", url, body=other)
        assert (status, envelope["status_code"]) == (404, 2000), (party, envelope)
    # The hub's own party stays its own.
    own = token("OWN-1", country_code="NL", party_id="HUB")
    status, _, _ = await peer.call("PUT", token_url(node, "NL", "HUB", "OWN-1"), body=own)
    assert status == 201

    async with node.uow() as uow:
        rows = await uow.session.execute(
            select(Token.country_code, Token.party_id, Token.uid, Token.partner_id).order_by(
                Token.uid
            )
        )
        assert rows.all() == [("DE", "ABC", CARD, partner_id), ("NL", "HUB", "OWN-1", partner_id)]
    assert peer.problems == []


async def test_a_hubs_token_list_stores_its_clients_tokens_and_skips_the_others(
    node: Runtime, hub: tuple[HubPeer, int]
) -> None:
    peer, partner_id = hub
    assert peer.lists is not None
    await report_client(node, peer, "CONNECTED", last_updated="2024-01-01T00:00:00Z")
    peer.lists.tokens = [
        token("ABC-1", country_code="DE", party_id="ABC"),
        token("XYZ-1", country_code="DE", party_id="XYZ"),
        token("ABC-2", country_code="DE", party_id="ABC"),
    ]
    report = await pull_tokens(node.uow, node.vault, node.ocpi_client, partner_id)
    assert (report.created, report.skipped, report.rejected) == (2, 1, 0)
    async with node.uow() as uow:
        uids = await uow.session.scalars(select(Token.uid).order_by(Token.uid))
        assert list(uids) == ["ABC-1", "ABC-2"]


async def test_real_time_authorization_of_a_clients_token_asks_the_hub_addressed_to_the_emsp(
    node: Runtime, hub: tuple[HubPeer, int]
) -> None:
    peer, partner_id = hub
    await report_client(node, peer, "CONNECTED", last_updated="2024-01-01T00:00:00Z")
    card = token(CARD, country_code="DE", party_id="ABC", whitelist="NEVER")
    status, _, _ = await peer.call("PUT", token_url(node, "DE", "ABC", CARD), body=card)
    assert status == 201
    peer.authorize_answers[CARD] = {"allowed": "ALLOWED", "token": card}

    async with node.uow() as uow:
        decision = await node.authorizer.authorize(uow, CARD, location_id="LOC-1")

    assert decision.status is AuthorizationStatus.ALLOWED
    assert (decision.source, decision.partner_id) == ("remote", partner_id)
    assert peer.lists is not None
    (asked,) = [r for r in peer.lists.requests if r.path.endswith(f"/{CARD}/authorize")]
    assert (asked.headers["OCPI-to-country-code"], asked.headers["OCPI-to-party-id"]) == (
        "DE",
        "ABC",
    )
    assert asked.headers["OCPI-from-party-id"] == node.settings.party_id
    assert peer.problems == []


# Pushes through the hub ------------------------------------------------------------------------


async def client_card(runtime: Runtime, peer: HubPeer) -> None:
    """The hub pushes the token of its client ``DE*ABC`` (whitelist ALLOWED: local decision)."""
    card = token(CARD, country_code="DE", party_id="ABC")
    status, envelope, _ = await peer.call("PUT", token_url(runtime, "DE", "ABC", CARD), body=card)
    assert status == 201, envelope


def routed_to(request: Recorded) -> tuple[str, str]:
    return request.headers["OCPI-to-country-code"], request.headers["OCPI-to-party-id"]


def to_client(peer: HubPeer) -> list[Recorded]:
    """What reached the hub for its client: session and CDR requests."""
    return [r for r in peer.requests if "/sessions/" in r.path or r.path.endswith("/cdrs")]


async def charge_once(runtime: Runtime) -> None:
    """A raw OCPP 1.6 station charges with the client's card: a session and its CDR."""
    async with raw_station(runtime.ocpp_port, "CP1") as station:
        await station.boot()
        start = {"connectorId": 1, "idTag": CARD, "meterStart": 0, "timestamp": iso(yesterday())}
        answer = await station.result("StartTransaction", start)
        assert answer["idTagInfo"]["status"] == "Accepted"
        stop = {
            "transactionId": answer["transactionId"],
            "meterStop": 5000,
            "timestamp": iso(yesterday(1)),
        }
        await station.result("StopTransaction", stop)


@pytest.mark.parametrize(
    ("status", "connected_by"),
    [("OFFLINE", "put"), ("SUSPENDED", "pull"), ("PLANNED", "put")],
)
async def test_pushes_to_a_client_the_hub_does_not_connect_wait_until_it_is_connected(
    node: Runtime, hub: tuple[HubPeer, int], status: str, connected_by: str
) -> None:
    peer, partner_id = hub
    assert peer.lists is not None
    await import_loc1(node)
    await station_on_3256(node)
    await report_client(node, peer, status, last_updated="2024-01-01T00:00:00Z")
    await client_card(node, peer)
    await settled(node)
    # Locations are for everyone behind the hub: a broadcast to the hub itself, never held.
    (location,) = [r for r in peer.requests if r.path.endswith("/locations/BE/BEC/LOC1")]
    assert routed_to(location) == ("NL", "HUB")

    await charge_once(node)

    async def held() -> bool:
        # The session's oldest push is held; later ones wait behind it (order per object).
        waiting = [p for p in await pushes(node) if p.object_key.startswith("session:")]
        return bool(waiting) and (waiting[0].last_error or "").startswith("on hold for DE*ABC:")

    await until(held)
    await asyncio.sleep(1.5)  # a few pusher rounds: still nothing goes out
    assert to_client(peer) == []
    for push in await pushes(node):
        if push.object_key.startswith(("session:", "cdr:")):
            # Pending, no attempt counted, neither FAILED nor DROPPED.
            assert (push.done_at, push.outcome, push.attempts) == (None, None, 0), push.kind
    held_push = next(p for p in await pushes(node) if p.object_key.startswith("session:"))
    assert held_push.available_at > held_push.created_at  # due again only at the recheck
    assert status in (held_push.last_error or "")

    # The hub reports its client CONNECTED again: everything goes, addressed to the client,
    # long before the recheck would have let it go.
    connected = client_info("DE", "ABC", last_updated="2024-01-02T00:00:00Z")
    if connected_by == "put":
        await report_client(node, peer, "CONNECTED", last_updated="2024-01-02T00:00:00Z")
    else:
        peer.lists.clients = [connected]
        await pull_hub_clients(node.uow, node.vault, node.ocpi_client, partner_id)
    assert WAIT < HOLD_RECHECK
    await until(lambda: any(r.path.endswith("/cdrs") for r in peer.requests))
    await settled(node)
    sent = to_client(peer)
    assert sent
    assert all(routed_to(r) == ("DE", "ABC") for r in sent)
    assert [r.method for r in sent][-1] == "POST"  # the CDR after the session
    outcomes = {p.outcome for p in await pushes(node)}
    assert outcomes <= {"SENT", "SUPERSEDED"}
    assert peer.problems == []


async def test_a_client_the_hub_reports_connected_is_sent_to_at_once_addressed_to_it(
    node: Runtime, hub: tuple[HubPeer, int]
) -> None:
    peer, _ = hub
    await import_loc1(node)
    await station_on_3256(node)
    # Reported CONNECTED: nothing is held, the session and CDR are addressed to the client.
    await report_client(node, peer, "CONNECTED", last_updated="2024-01-01T00:00:00Z")
    await client_card(node, peer)
    await charge_once(node)
    await until(lambda: any(r.path.endswith("/cdrs") for r in peer.requests))
    await settled(node)
    sent = to_client(peer)
    assert sent
    assert all(routed_to(r) == ("DE", "ABC") for r in sent)
    assert all(p.last_error is None for p in await pushes(node))
    assert peer.problems == []
