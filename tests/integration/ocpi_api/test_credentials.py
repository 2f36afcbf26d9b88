"""The OCPI credentials handshake on a real node with a real eMSP peer, in both directions.

The peer registers with us (its POST with the token A we invited it with), updates (PUT) and
unregisters (DELETE); we register with the peer (our POST), update and unregister. Checked:
the tokens each side may use afterwards (and those it may no longer use), what is stored
(never a token in clear), Base64 and raw Authorization, the refusals (405, 2001, 3001, 3002,
3003) and that a refused request changes nothing. Every Credentials, Version and
VersionDetails body we serve is checked with ocpi-types; the peer checks what we send it.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from ocpi_models import check
from ocpi_peer import EmspPeer
from ocpi_support import cpo_url
from sqlalchemy import select, text

from cpms.model import OcpiPartner
from cpms.partners import begin_registration, invite_partner, partner_link
from cpms.runtime import Runtime
from ocpi_api.registration import RegistrationFailed, our_roles, register, unregister, update


def versions_url(runtime: Runtime) -> str:
    return f"{runtime.base_url()}/ocpi/versions"


async def invite(runtime: Runtime, name: str = "") -> tuple[int, str]:
    return await invite_partner(runtime.uow(), name)


async def stored(runtime: Runtime, partner_id: int) -> OcpiPartner:
    async with runtime.uow() as work:
        return await work.get(OcpiPartner, partner_id)


async def status_of(peer: EmspPeer, url: str, token: str) -> int:
    """The HTTP status we answer ``token`` on ``url`` (GET)."""
    status, _, _ = await peer.call("GET", url, token=token)
    return status


async def register_with_peer(runtime: Runtime, peer: EmspPeer) -> int:
    """We register with ``peer`` (it issues a token A); return its partner id."""
    return await register(
        runtime.uow,
        runtime.vault,
        runtime.ocpi_client,
        name="peer",
        versions_url=peer.versions_url,
        token_a=peer.issue_token_a(),
        our_versions_url=versions_url(runtime),
        our_roles=our_roles(runtime.settings),
    )


def new_token(prefix: str = "N-") -> str:
    return prefix + secrets.token_urlsafe(16)


def offered_by(peer: EmspPeer) -> str:
    """The token the peer offered us in ``register_with`` (its token B)."""
    [token] = [t for t in peer.accepted_tokens if t.startswith("B-")]
    return token


# The peer registers with us ------------------------------------------------------------------


async def test_versions_and_details_we_serve_to_token_a_are_valid_and_list_credentials(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    _, token_a = await invite(runtime)

    status, listed, _ = await emsp_peer.call("GET", versions_url(runtime), token=token_a)
    assert status == 200, listed
    for version in listed["data"]:
        check("Version", version)
    status, details, _ = await emsp_peer.call("GET", listed["data"][0]["url"], token=token_a)
    assert status == 200, details
    check("VersionDetails", details["data"])
    credentials = [e for e in details["data"]["endpoints"] if e["identifier"] == "credentials"]
    assert credentials == [
        {"identifier": "credentials", "role": "SENDER", "url": cpo_url(runtime, "credentials")}
    ]


async def test_a_peer_registers_with_token_a_which_then_dies(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    partner_id, token_a = await invite(runtime)

    ours = await emsp_peer.register_with(versions_url(runtime), token_a)

    check("Credentials", ours)
    assert ours["url"] == versions_url(runtime)
    assert ours["roles"] == [
        {
            "role": "CPO",
            "party_id": "CPM",
            "country_code": "NL",
            "business_details": {"name": "CPMS"},
        }
    ]
    assert ours["token"] not in (token_a, "")
    # During its POST we read its versions and details with the token it offered us.
    offered = offered_by(emsp_peer)
    assert [r.token for r in emsp_peer.received("GET", "/versions")] == [offered]
    assert [r.token for r in emsp_peer.received("GET", "/2.2.1")] == [offered]
    assert emsp_peer.problems == []

    # Its own token now opens credentials (and everything else); token A nothing.
    status, answer, _ = await emsp_peer.call("GET", cpo_url(runtime, "credentials"))
    assert status == 200, answer
    check("Credentials", answer["data"])
    assert answer["data"]["token"] == emsp_peer.token_for_cpo
    assert await status_of(emsp_peer, versions_url(runtime), token_a) == 401
    assert await status_of(emsp_peer, cpo_url(runtime, "credentials"), token_a) == 401

    partner = await stored(runtime, partner_id)
    assert partner.state == "REGISTERED"
    assert partner.token_a_hash is None
    assert partner.name == emsp_peer.name  # invited without a name: its business name
    assert partner.version == "2.2.1"
    assert partner.versions_url == emsp_peer.versions_url
    assert partner.auth_base64 is True
    assert partner.endpoints["locations"] == {"RECEIVER": f"{emsp_peer.base_url}/2.2.1/locations"}
    assert partner.roles == emsp_peer.credentials("x")["roles"]
    assert partner.registered_at is not None
    # We call it with the token it gave us.
    async with runtime.uow() as work:
        link = await partner_link(work, runtime.vault, partner_id)
    assert link.token == offered
    assert link.party == ("DE", "EMS")


async def test_a_second_post_is_refused_with_405_and_changes_nothing(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    partner_id, token_a = await invite(runtime)
    await emsp_peer.register_with(versions_url(runtime), token_a)
    before = await stored(runtime, partner_id)
    calls = len(emsp_peer.requests)

    status, answer, _ = await emsp_peer.call(
        "POST", cpo_url(runtime, "credentials"), body=emsp_peer.credentials(new_token())
    )

    assert (status, answer["status_code"]) == (405, 2000), answer
    assert len(emsp_peer.requests) == calls  # the peer was not called
    after = await stored(runtime, partner_id)
    assert after.incoming_token_hash == before.incoming_token_hash
    assert after.outgoing_token == before.outgoing_token
    assert (
        await status_of(emsp_peer, cpo_url(runtime, "credentials"), emsp_peer.token_for_cpo) == 200
    )


async def test_put_rotates_the_peers_token_and_reads_its_platform_again(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    partner_id, token_a = await invite(runtime)
    await emsp_peer.register_with(versions_url(runtime), token_a)
    old = emsp_peer.token_for_cpo
    assert old is not None
    read_before = len(emsp_peer.received("GET", "/versions"))
    # The peer now offers fewer modules and a new token for us.
    offered = new_token()
    emsp_peer.accepted_tokens.add(offered)
    full = emsp_peer.endpoints()
    emsp_peer.endpoints = lambda: [e for e in full if e["identifier"] != "tariffs"]  # type: ignore[method-assign]

    status, answer, _ = await emsp_peer.call(
        "PUT", cpo_url(runtime, "credentials"), token=old, body=emsp_peer.credentials(offered)
    )

    assert (status, answer["status_code"]) == (200, 1000), answer
    check("Credentials", answer["data"])
    new = answer["data"]["token"]
    assert new != old
    assert await status_of(emsp_peer, cpo_url(runtime, "credentials"), old) == 401
    assert await status_of(emsp_peer, cpo_url(runtime, "credentials"), new) == 200
    fetched = emsp_peer.received("GET", "/versions")[read_before:]
    assert [r.token for r in fetched] == [offered]
    partner = await stored(runtime, partner_id)
    assert partner.state == "REGISTERED"
    assert "tariffs" not in partner.endpoints
    assert "locations" in partner.endpoints
    async with runtime.uow() as work:
        assert (await partner_link(work, runtime.vault, partner_id)).token == offered


async def test_delete_unregisters_the_peer_and_its_token_stops_working(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    partner_id, token_a = await invite(runtime)
    await emsp_peer.register_with(versions_url(runtime), token_a)
    token = emsp_peer.token_for_cpo

    status, answer, _ = await emsp_peer.call("DELETE", cpo_url(runtime, "credentials"))

    assert (status, answer["status_code"]) == (200, 1000), answer
    assert await status_of(emsp_peer, cpo_url(runtime, "credentials"), token) == 401
    assert await status_of(emsp_peer, versions_url(runtime), token) == 401
    partner = await stored(runtime, partner_id)
    assert partner.state == "UNREGISTERED"
    assert (partner.token_a_hash, partner.incoming_token_hash, partner.outgoing_token) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_put_and_delete_before_registration_are_refused_with_405(
    runtime: Runtime, emsp_peer: EmspPeer, method: str
) -> None:
    partner_id, token_a = await invite(runtime)
    emsp_peer.accepted_tokens.add(offered := new_token())

    status, answer, _ = await emsp_peer.call(
        method,
        cpo_url(runtime, "credentials"),
        token=token_a,
        body=emsp_peer.credentials(offered) if method == "PUT" else None,
    )

    assert (status, answer["status_code"]) == (405, 2000), answer
    assert emsp_peer.requests == []  # we did not call the peer
    assert (await stored(runtime, partner_id)).state == "INVITED"
    assert await status_of(emsp_peer, versions_url(runtime), token_a) == 200


async def test_patch_is_not_a_credentials_method(runtime: Runtime, emsp_peer: EmspPeer) -> None:
    _, token_a = await invite(runtime)

    status, answer, _ = await emsp_peer.call(
        "PATCH", cpo_url(runtime, "credentials"), token=token_a, body={}
    )

    assert (status, answer["status_code"]) == (405, 2000)
    assert "timestamp" in answer


async def test_token_a_and_a_token_we_only_offered_open_no_functional_module(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    _, token_a = await invite(runtime)
    _, offered = await begin_registration(runtime.uow(), name="x", versions_url="http://x")

    for token in (token_a, offered):
        assert await status_of(emsp_peer, versions_url(runtime), token) == 200
        assert await status_of(emsp_peer, cpo_url(runtime), token) == 200
        assert await status_of(emsp_peer, cpo_url(runtime, "credentials"), token) == 200
        assert await status_of(emsp_peer, cpo_url(runtime, "locations"), token) == 401
        assert await status_of(emsp_peer, cpo_url(runtime, "sessions"), token) == 401


# Refusals that change nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"token": "has a space"},
        {"token": "x" * 65},
        {"token": ""},
        {"token": 42},
        {"url": None},
        {"url": "ftp://example.com/versions"},
        {"roles": []},
        {"roles": [{"role": "EMSP", "party_id": "EMS", "country_code": "DE"}]},
        {"roles": [{"role": "DRIVER", "party_id": "EMS", "country_code": "DE",
                    "business_details": {"name": "x"}}]},
        {"roles": [{"role": "EMSP", "party_id": "EMSP", "country_code": "DE",
                    "business_details": {"name": "x"}}]},
    ],
    ids=lambda change: "-".join(f"{k}={str(v)[:20]}" for k, v in change.items()),
)  # fmt: skip
async def test_an_invalid_credentials_body_is_refused_with_2001(
    runtime: Runtime, emsp_peer: EmspPeer, change: dict[str, Any]
) -> None:
    partner_id, token_a = await invite(runtime)
    body = emsp_peer.credentials(new_token()) | change

    status, answer, _ = await emsp_peer.call(
        "POST", cpo_url(runtime, "credentials"), token=token_a, body=body
    )

    assert (status, answer["status_code"]) == (200, 2001), answer
    assert answer["status_message"]
    assert emsp_peer.requests == []
    assert (await stored(runtime, partner_id)).state == "INVITED"
    assert await status_of(emsp_peer, versions_url(runtime), token_a) == 200


async def test_a_body_that_is_not_json_gets_http_400(runtime: Runtime, emsp_peer: EmspPeer) -> None:
    _, token_a = await invite(runtime)
    headers = {"Authorization": "Token " + base64.b64encode(token_a.encode()).decode()}

    async with (
        aiohttp.ClientSession() as client,
        client.post(cpo_url(runtime, "credentials"), data="{not json", headers=headers) as got,
    ):
        body = await got.json()

    assert (got.status, body["status_code"]) == (400, 2001)


async def test_an_unreachable_peer_gets_3001_and_token_a_still_registers_later(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    partner_id, token_a = await invite(runtime)
    offered = new_token()
    emsp_peer.accepted_tokens.add(offered)
    emsp_peer.down = True

    status, answer, _ = await emsp_peer.call(
        "POST", cpo_url(runtime, "credentials"), token=token_a, body=emsp_peer.credentials(offered)
    )

    assert (status, answer["status_code"]) == (200, 3001), answer
    partner = await stored(runtime, partner_id)
    assert (partner.state, partner.incoming_token_hash, partner.outgoing_token) == (
        "INVITED",
        None,
        None,
    )
    emsp_peer.down = False
    await emsp_peer.register_with(versions_url(runtime), token_a)
    assert (await stored(runtime, partner_id)).state == "REGISTERED"


class OldPeer(EmspPeer):
    """A peer that speaks 2.1.1 only."""

    async def _versions(self, request: web.Request) -> web.Response:
        return self._reply([{"version": "2.1.1", "url": f"{self.base_url}/2.1.1"}])


class NoCredentialsPeer(EmspPeer):
    """A peer whose 2.2.1 details list no credentials endpoint."""

    def endpoints(self) -> list[dict[str, str]]:
        return [e for e in super().endpoints() if e["identifier"] != "credentials"]


@pytest.mark.parametrize(("kind", "code"), [(OldPeer, 3002), (NoCredentialsPeer, 3003)])
async def test_a_peer_without_2_2_1_or_credentials_is_refused_and_nothing_is_stored(
    runtime: Runtime, kind: type[EmspPeer], code: int
) -> None:
    partner_id, token_a = await invite(runtime)
    async with kind() as peer:
        offered = new_token()
        peer.accepted_tokens.add(offered)

        status, answer, _ = await peer.call(
            "POST", cpo_url(runtime, "credentials"), token=token_a, body=peer.credentials(offered)
        )

        assert (status, answer["status_code"]) == (200, code), answer
    partner = await stored(runtime, partner_id)
    assert (partner.state, partner.outgoing_token, partner.endpoints) == ("INVITED", None, None)


# Base64 and raw tokens -----------------------------------------------------------------------


async def test_a_peer_sending_raw_tokens_registers_and_calls_us(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    emsp_peer.raw_tokens = True
    _, token_a = await invite(runtime)

    await emsp_peer.register_with(versions_url(runtime), token_a)

    # It sent token A and then its own token raw (no Base64): both were accepted.
    status, answer, _ = await emsp_peer.call("GET", cpo_url(runtime, "credentials"))
    assert (status, answer["data"]["token"]) == (200, emsp_peer.token_for_cpo)
    status, _, _ = await emsp_peer.call("GET", cpo_url(runtime, "credentials"), raw=False)
    assert status == 200


class RawOnlyPeer(EmspPeer):
    """A peer (2.1.1 habits) that refuses Base64-encoded tokens: our tokens hold a '-'."""

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        value = request.headers.get("Authorization", "").removeprefix("Token ")
        if "-" not in value:
            return self._reply(status=401, code=2000, message="raw tokens only")
        return await super()._middleware(request, handler)


async def test_a_peer_that_accepts_only_raw_tokens_is_remembered_as_such(
    runtime: Runtime,
) -> None:
    async with RawOnlyPeer() as peer:
        partner_id, token_a = await invite(runtime)
        offered = "R-" + secrets.token_urlsafe(16)
        peer.accepted_tokens.add(offered)
        status, answer, _ = await peer.call(
            "POST", cpo_url(runtime, "credentials"), token=token_a, body=peer.credentials(offered)
        )
        assert (status, answer["status_code"]) == (200, 1000), answer
        assert (await stored(runtime, partner_id)).auth_base64 is False

        # And when we register with such a peer, we call it raw too.
        ours = await register_with_peer(runtime, peer)
        assert (await stored(runtime, ours)).auth_base64 is False
        assert peer.received("POST", "/credentials")[-1].headers["Authorization"].count("-")
        assert peer.problems == []


# We register with the peer ------------------------------------------------------------------


async def test_we_register_with_the_peer_and_each_side_uses_the_others_token(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    partner_id = await register_with_peer(runtime, emsp_peer)

    assert emsp_peer.problems == []
    posted = emsp_peer.received("POST", "/credentials")
    assert len(posted) == 1
    check("Credentials", posted[0].body)
    assert posted[0].body["url"] == versions_url(runtime)
    assert posted[0].body["roles"] == our_roles(runtime.settings)
    # The peer read our versions and details with the token we offered (accepted before).
    assert emsp_peer.cpo_endpoints
    assert {e["identifier"] for e in emsp_peer.cpo_endpoints} >= {"credentials"}
    offered = posted[0].body["token"]
    assert emsp_peer.token_for_cpo == offered
    status, answer, _ = await emsp_peer.call("GET", cpo_url(runtime, "credentials"))
    assert (status, answer["data"]["token"]) == (200, offered)
    check("Credentials", answer["data"])

    partner = await stored(runtime, partner_id)
    assert (partner.state, partner.name, partner.version) == ("REGISTERED", "peer", "2.2.1")
    assert partner.roles == emsp_peer.credentials("x")["roles"]
    # We call the peer with the token it answered (its token C).
    async with runtime.uow() as work:
        link = await partner_link(work, runtime.vault, partner_id)
    reply = await runtime.ocpi_client.request(
        "GET", link.endpoint("credentials", "SENDER") or "", token=link.token
    )
    assert reply.ok, reply
    assert link.token in emsp_peer.accepted_tokens
    assert not any(t.startswith("A-") for t in emsp_peer.accepted_tokens)  # token A used up


async def test_a_refused_registration_leaves_the_offered_token_dead(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    class Refusing(EmspPeer):
        async def _credentials(self, request: web.Request) -> web.Response:
            return self._reply(code=3003, message="we need your tariffs")

    async with Refusing() as peer:
        with pytest.raises(RegistrationFailed) as failed:
            await register_with_peer(runtime, peer)
        offered = peer.received("POST", "/credentials")[0].body["token"]

    assert "3003" in str(failed.value)
    async with runtime.uow() as work:
        rows = list(await work.session.scalars(select(OcpiPartner)))
    assert [(row.state, row.incoming_token_hash) for row in rows] == [("UNREGISTERED", None)]
    assert await status_of(emsp_peer, versions_url(runtime), offered) == 401


async def test_a_wrong_token_a_fails_before_anything_is_stored(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    with pytest.raises(RegistrationFailed) as failed:
        await register(
            runtime.uow,
            runtime.vault,
            runtime.ocpi_client,
            name="peer",
            versions_url=emsp_peer.versions_url,
            token_a="not-the-token",
            our_versions_url=versions_url(runtime),
            our_roles=our_roles(runtime.settings),
        )

    assert failed.value.status_code == 3001
    assert "401" in failed.value.message
    async with runtime.uow() as work:
        assert list(await work.session.scalars(select(OcpiPartner))) == []


async def test_our_update_rotates_both_tokens(runtime: Runtime, emsp_peer: EmspPeer) -> None:
    partner_id = await register_with_peer(runtime, emsp_peer)
    old_ours = emsp_peer.token_for_cpo
    async with runtime.uow() as work:
        old_theirs = (await partner_link(work, runtime.vault, partner_id)).token

    await update(
        runtime.uow,
        runtime.vault,
        runtime.ocpi_client,
        partner_id,
        our_versions_url=versions_url(runtime),
        our_roles=our_roles(runtime.settings),
    )

    assert emsp_peer.problems == []
    put = emsp_peer.received("PUT", "/credentials")
    assert len(put) == 1
    assert put[0].token == old_theirs
    new_ours = put[0].body["token"]
    assert new_ours != old_ours
    # The peer read our versions with the new token while handling the PUT (else it would
    # have answered 3001), so the new token worked before the old one died.
    assert await status_of(emsp_peer, cpo_url(runtime, "credentials"), old_ours) == 401
    assert await status_of(emsp_peer, cpo_url(runtime, "credentials"), new_ours) == 200
    async with runtime.uow() as work:
        new_theirs = (await partner_link(work, runtime.vault, partner_id)).token
    assert new_theirs != old_theirs
    assert new_theirs in emsp_peer.accepted_tokens
    assert old_theirs not in emsp_peer.accepted_tokens


async def test_we_unregister_at_the_peer_and_its_token_stops_working(
    runtime: Runtime, emsp_peer: EmspPeer
) -> None:
    partner_id = await register_with_peer(runtime, emsp_peer)
    ours = emsp_peer.token_for_cpo

    problem = await unregister(runtime.uow, runtime.vault, runtime.ocpi_client, partner_id)

    assert problem is None
    assert len(emsp_peer.received("DELETE", "/credentials")) == 1
    assert await status_of(emsp_peer, cpo_url(runtime, "credentials"), ours) == 401
    assert (await stored(runtime, partner_id)).state == "UNREGISTERED"


# Tokens at rest ------------------------------------------------------------------------------


async def test_no_token_is_stored_in_clear(runtime: Runtime, emsp_peer: EmspPeer) -> None:
    _, token_a = await invite(runtime)
    await emsp_peer.register_with(versions_url(runtime), token_a)
    theirs_to_us = offered_by(emsp_peer)
    issued_by_us = emsp_peer.token_for_cpo
    async with EmspPeer() as other:
        other_id = await register_with_peer(runtime, other)
        offered_by_us = other.token_for_cpo
    async with runtime.uow() as work:
        theirs = (await partner_link(work, runtime.vault, other_id)).token
    _, pending_a = await invite(runtime, "pending")

    secrets_ = {token_a, theirs_to_us, issued_by_us, offered_by_us, theirs, pending_a}
    assert None not in secrets_
    async with runtime.uow() as work:
        rows = (await work.session.execute(text("SELECT * FROM ocpi_partner"))).all()
    dump = "\n".join(str(value) for row in rows for value in row)
    assert len(rows) == 3
    for token in secrets_:
        assert token not in dump
        assert base64.b64encode(token.encode()).decode() not in dump
