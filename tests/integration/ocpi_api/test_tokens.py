"""OCPI Tokens on a real node: the receiver eMSPs push to, and real-time authorization at them.

The receiver is driven by the real eMSP peer (``tests/ocpi_peer.py``) over HTTP with the
official token examples: PUT creates (201) and replaces (200, absent optional fields become
null), GET returns what was stored (checked with ocpi-types), PATCH changes fields and needs
``last_updated``; uids are compared case-insensitively, ``?type=`` picks the token; URLs of
another party are 404, bodies naming another token 2001, unknown tokens 404/2004, and POST
and DELETE 405, each changing nothing.

Real-time authorization is driven through the node's own authorizer against real peers:
what is sent (``?type=``, LocationReferences, routing headers), HTTP 404 and bare OCPI 2004
both meaning "unknown", an unknown uid asked of every partner with the first answer winning,
answers that are no AuthorizationInfo, partners that cannot be reached, and an ALLOWED
remembered for the start that follows.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from ocpi_models import check
from ocpi_peer import EmspPeer
from ocpi_support import cpo_url, register_directly
from sqlalchemy import select

from cpms.authorization import Authorization, AuthorizationStatus
from cpms.model import OcpiPartner, OutboxEntry, Token
from cpms.runtime import Runtime

from support import EXAMPLES

FULL_RFID = "token_example_2_full_rfid.json"  # DE/TNM, uid 12345678905880, whitelist ALLOWED
APP_USER = "token_example_1_app_user.json"  # DE/TNM, APP_USER, lower-case hex uid
PUT_EXAMPLE = "token_put_example.json"  # NL/TNM: another country than the DE peer
PATCH_EXAMPLE = "token_patch_example.json"  # {"valid": false, "last_updated": ...}


def example(name: str) -> dict[str, Any]:
    """A fresh copy of an official example file."""
    return json.loads((EXAMPLES / name).read_text())


@dataclass
class Partner:
    """A registered eMSP peer and its partner id."""

    peer: EmspPeer
    partner_id: int


@pytest.fixture
async def tnm(runtime: Runtime) -> AsyncIterator[Partner]:
    """The eMSP of the examples (DE/TNM), registered with the node."""
    async with EmspPeer(country_code="DE", party_id="TNM", name="TheNewMotion") as peer:
        yield Partner(peer, await register_directly(runtime, peer, name="tnm"))


def token_url(runtime: Runtime, country_code: str, party_id: str, uid: str, query: str = "") -> str:
    return cpo_url(runtime, f"tokens/{country_code}/{party_id}/{uid}") + query


async def stored_tokens(runtime: Runtime) -> list[Token]:
    async with runtime.uow() as uow:
        return list(await uow.session.scalars(select(Token).order_by(Token.pk)))


async def put(
    runtime: Runtime, peer: EmspPeer, body: dict[str, Any], query: str = ""
) -> tuple[int, dict[str, Any]]:
    url = token_url(runtime, body["country_code"], body["party_id"], body["uid"], query)
    status, envelope, _ = await peer.call("PUT", url, body=body)
    return status, envelope


async def get_data(runtime: Runtime, peer: EmspPeer, url: str) -> dict[str, Any]:
    status, envelope, _ = await peer.call("GET", url)
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    check("Token", envelope["data"])
    return envelope["data"]


# The receiver ----------------------------------------------------------------------------------


async def test_a_put_token_is_created_then_replaced_and_served_as_pushed(
    runtime: Runtime, tnm: Partner
) -> None:
    token = example(FULL_RFID)
    url = token_url(runtime, "DE", "TNM", token["uid"])
    status, envelope, headers = await tnm.peer.call("PUT", url, body=token)
    assert (status, envelope["status_code"]) == (201, 1000), envelope
    assert "data" not in envelope
    assert (headers["OCPI-from-country-code"], headers["OCPI-from-party-id"]) == ("NL", "CPM")
    assert (headers["OCPI-to-country-code"], headers["OCPI-to-party-id"]) == ("DE", "TNM")
    assert await get_data(runtime, tnm.peer, url) == token

    [row] = await stored_tokens(runtime)
    assert (row.source, row.partner_id, row.whitelist) == ("ocpi", tnm.partner_id, "ALLOWED")

    # A PUT replaces: fields it leaves out are gone, the rest is the new document.
    replacement = {
        key: value
        for key, value in token.items()
        if key
        not in ("visual_number", "group_id", "language", "default_profile_type", "energy_contract")
    } | {"whitelist": "NEVER", "last_updated": "2019-01-01T00:00:00.5Z"}
    status, envelope, _ = await tnm.peer.call("PUT", url, body=replacement)
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    served = await get_data(runtime, tnm.peer, url)
    assert served == replacement | {"last_updated": "2019-01-01T00:00:00.500Z"}
    assert len(await stored_tokens(runtime)) == 1

    async with runtime.uow() as uow:
        events = list(
            await uow.session.scalars(
                select(OutboxEntry).where(OutboxEntry.topic == "token.changed")
            )
        )
    assert len(events) == 2


async def test_the_official_put_example_is_refused_for_a_party_the_caller_is_not(
    runtime: Runtime, tnm: Partner
) -> None:
    token = example(PUT_EXAMPLE)  # NL/TNM, and our DE/TNM peer is not NL/TNM
    status, envelope = await put(runtime, tnm.peer, token)
    assert (status, envelope["status_code"]) == (404, 2000), envelope
    for method, body in (("GET", None), ("PATCH", example(PATCH_EXAMPLE))):
        url = token_url(runtime, "NL", "TNM", token["uid"])
        status, envelope, _ = await tnm.peer.call(method, url, body=body)
        assert status == 404, (method, envelope)
    assert await stored_tokens(runtime) == []

    # The NL party itself may push it.
    async with EmspPeer(country_code="NL", party_id="TNM") as dutch:
        await register_directly(runtime, dutch, name="tnm-nl")
        status, envelope = await put(runtime, dutch, token)
        assert (status, envelope["status_code"]) == (201, 1000), envelope
        assert await get_data(runtime, dutch, token_url(runtime, "nl", "tnm", "012345678")) == token
    # ... and our DE peer still cannot read it.
    status, _, _ = await tnm.peer.call("GET", token_url(runtime, "NL", "TNM", "012345678"))
    assert status == 404


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"uid": "99999"}, "uid"),
        ({"party_id": "EMS"}, "party_id"),
        ({"country_code": "NL"}, "country_code"),
    ],
)
async def test_a_put_body_naming_another_token_than_its_url_is_2001(
    runtime: Runtime, tnm: Partner, change: dict[str, str], problem: str
) -> None:
    body = example(FULL_RFID) | change
    url = token_url(runtime, "DE", "TNM", "12345678905880")
    status, envelope, _ = await tnm.peer.call("PUT", url, body=body)
    assert (status, envelope["status_code"]) == (200, 2001), envelope
    assert problem in envelope["status_message"]
    assert await stored_tokens(runtime) == []


@pytest.mark.parametrize(
    "broken",
    [
        {"whitelist": None},
        {"whitelist": "SOMETIMES"},
        {"valid": "yes"},
        {"contract_id": None},
        {"issuer": None},
        {"last_updated": None},
        {"last_updated": "2018-12-10T17:25:10+01:00"},
        {"type": "CARD"},
        {"uid": "x" * 37},
        {"energy_contract": {"contract_id": "no supplier"}},
        {"group_id": "tab\tin it"},
    ],
    ids=lambda broken: "-".join(f"{k}={v}"[:30] for k, v in broken.items()),
)
async def test_a_put_of_an_incomplete_or_wrong_token_is_2001_and_stores_nothing(
    runtime: Runtime, tnm: Partner, broken: dict[str, Any]
) -> None:
    body = {k: v for k, v in (example(FULL_RFID) | broken).items() if v is not None}
    url = token_url(runtime, "DE", "TNM", "12345678905880")
    status, envelope, _ = await tnm.peer.call("PUT", url, body=body)
    assert (status, envelope["status_code"]) == (200, 2001), envelope
    assert await stored_tokens(runtime) == []


async def test_a_put_that_is_not_json_is_400(runtime: Runtime, tnm: Partner) -> None:
    url = token_url(runtime, "DE", "TNM", "12345678905880")
    status, envelope, _ = await tnm.peer.call(
        "PUT", url, body=None, headers={"Content-Type": "application/json"}
    )
    assert (status, envelope["status_code"]) == (400, 2001), envelope
    assert await stored_tokens(runtime) == []


async def test_unknown_fields_are_ignored(runtime: Runtime, tnm: Partner) -> None:
    token = example(FULL_RFID)
    status, envelope = await put(runtime, tnm.peer, token | {"nltnm_extra": 1})
    assert (status, envelope["status_code"]) == (201, 1000), envelope
    assert await get_data(runtime, tnm.peer, token_url(runtime, "DE", "TNM", token["uid"])) == token


async def test_the_official_patch_invalidates_a_token_and_changes_nothing_else(
    runtime: Runtime, tnm: Partner
) -> None:
    token = example(FULL_RFID)
    await put(runtime, tnm.peer, token)
    url = token_url(runtime, "DE", "TNM", token["uid"])
    status, envelope, _ = await tnm.peer.call("PATCH", url, body=example(PATCH_EXAMPLE))
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    assert await get_data(runtime, tnm.peer, url) == token | example(PATCH_EXAMPLE)


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"valid": False}, "last_updated"),
        ({"whitelist": "NEVER"}, "last_updated"),
        ({"uid": "OTHER", "last_updated": "2019-06-19T02:11:11Z"}, "uid"),
        ({"type": "APP_USER", "last_updated": "2019-06-19T02:11:11Z"}, "type"),
        ({"group_id": None, "last_updated": "2019-06-19T02:11:11Z"}, "remove"),
        ({"valid": "no", "last_updated": "2019-06-19T02:11:11Z"}, "valid"),
    ],
)
async def test_a_patch_without_last_updated_or_changing_the_key_is_2001(
    runtime: Runtime, tnm: Partner, patch: dict[str, Any], problem: str
) -> None:
    token = example(FULL_RFID)
    await put(runtime, tnm.peer, token)
    url = token_url(runtime, "DE", "TNM", token["uid"])
    status, envelope, _ = await tnm.peer.call("PATCH", url, body=patch)
    assert (status, envelope["status_code"]) == (200, 2001), envelope
    assert problem in envelope["status_message"]
    assert await get_data(runtime, tnm.peer, url) == token


async def test_an_unknown_token_is_404_with_2004(runtime: Runtime, tnm: Partner) -> None:
    url = token_url(runtime, "DE", "TNM", "NOBODY")
    for method, body in (("GET", None), ("PATCH", example(PATCH_EXAMPLE))):
        status, envelope, _ = await tnm.peer.call(method, url, body=body)
        assert (status, envelope["status_code"]) == (404, 2004), (method, envelope)
    assert await stored_tokens(runtime) == []


async def test_tokens_are_never_posted_or_deleted(runtime: Runtime, tnm: Partner) -> None:
    token = example(FULL_RFID)
    await put(runtime, tnm.peer, token)
    url = token_url(runtime, "DE", "TNM", token["uid"])
    for method in ("POST", "DELETE"):
        status, envelope, _ = await tnm.peer.call(method, url, body=token)
        assert (status, envelope["status_code"]) == (405, 2000), (method, envelope)
    assert await get_data(runtime, tnm.peer, url) == token


async def test_the_type_parameter_picks_the_token(runtime: Runtime, tnm: Partner) -> None:
    app_user = example(APP_USER)
    uid = app_user["uid"]
    # Same uid, two types: two tokens.
    rfid = example(FULL_RFID) | {"uid": uid}
    assert (await put(runtime, tnm.peer, app_user, "?type=APP_USER"))[0] == 201
    assert (await put(runtime, tnm.peer, rfid))[0] == 201
    base = token_url(runtime, "DE", "TNM", uid)
    assert await get_data(runtime, tnm.peer, base + "?type=APP_USER") == app_user
    assert await get_data(runtime, tnm.peer, base) == rfid  # no type: RFID
    assert await get_data(runtime, tnm.peer, base + "?type=RFID") == rfid
    status, envelope, _ = await tnm.peer.call("GET", base + "?type=OTHER")
    assert (status, envelope["status_code"]) == (404, 2004)
    status, envelope, _ = await tnm.peer.call("GET", base + "?type=CARD")
    assert (status, envelope["status_code"]) == (200, 2001)

    # A PUT whose ?type= contradicts its body is refused; a PATCH changes only its type.
    status, envelope = await put(runtime, tnm.peer, app_user, "?type=OTHER")
    assert (status, envelope["status_code"]) == (200, 2001)
    patch = {"whitelist": "NEVER", "last_updated": "2020-01-01T00:00:00Z"}
    status, envelope, _ = await tnm.peer.call("PATCH", base + "?type=APP_USER", body=patch)
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    assert await get_data(runtime, tnm.peer, base + "?type=APP_USER") == app_user | patch
    assert await get_data(runtime, tnm.peer, base) == rfid
    assert len(await stored_tokens(runtime)) == 2


async def test_uids_country_codes_and_party_ids_are_case_insensitive(
    runtime: Runtime, tnm: Partner
) -> None:
    token = example(APP_USER)
    uid = token["uid"]
    assert uid != uid.upper()
    await put(runtime, tnm.peer, token, "?type=APP_USER")
    shouted = token_url(runtime, "de", "tnm", uid.upper(), "?type=APP_USER")
    assert await get_data(runtime, tnm.peer, shouted) == token

    # The same token spelled in capitals replaces it (200), in URL and body alike.
    again = token | {"uid": uid.upper(), "country_code": "de", "valid": False}
    status, envelope, _ = await tnm.peer.call(
        "PUT", token_url(runtime, "DE", "TNM", uid, "?type=APP_USER"), body=again
    )
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    [row] = await stored_tokens(runtime)
    assert (row.uid, row.country_code, row.valid) == (uid.upper(), "DE", False)
    status, envelope, _ = await tnm.peer.call(
        "PATCH",
        token_url(runtime, "de", "tnm", uid.lower(), "?type=APP_USER"),
        body={"valid": True, "last_updated": "2021-01-01T00:00:00Z"},
    )
    assert (status, envelope["status_code"]) == (200, 1000), envelope
    assert (await get_data(runtime, tnm.peer, shouted))["valid"] is True


# Real-time authorization -----------------------------------------------------------------------


def authorization_info(token: dict[str, Any], allowed: str = "ALLOWED", **extra: Any) -> dict:
    return {"allowed": allowed, "token": token, **extra}


async def authorize(runtime: Runtime, uid: str, location_id: str | None) -> Authorization:
    async with runtime.uow() as uow:
        return await runtime.authorizer.authorize(uow, uid, location_id=location_id)


async def test_a_never_token_is_asked_of_its_emsp_with_type_location_and_routing(
    runtime: Runtime, tnm: Partner
) -> None:
    token = example(APP_USER) | {"whitelist": "NEVER", "group_id": "GROUP-7"}
    await put(runtime, tnm.peer, token, "?type=APP_USER")
    tnm.peer.authorize_answers[token["uid"]] = authorization_info(
        token | {"contract_id": "DE8ACC12E46L90"}, authorization_reference="REF-42"
    )
    decision = await authorize(runtime, token["uid"], "LOC-1")

    assert decision.status is AuthorizationStatus.ALLOWED
    assert decision.source == "remote"
    assert decision.auth_method == "AUTH_REQUEST"
    assert decision.authorization_reference == "REF-42"
    assert decision.partner_id == tnm.partner_id
    assert decision.group_id == "GROUP-7"
    assert decision.cdr_token == {
        "country_code": "DE",
        "party_id": "TNM",
        "uid": token["uid"],
        "type": "APP_USER",
        "contract_id": "DE8ACC12E46L90",  # the eMSP's word, not our copy
    }
    [asked] = tnm.peer.received("POST", "/authorize")
    assert asked.path == f"/2.2.1/tokens/{token['uid']}/authorize"
    assert asked.query == {"type": "APP_USER"}
    assert asked.body == {"location_id": "LOC-1"}
    assert (asked.headers["OCPI-to-country-code"], asked.headers["OCPI-to-party-id"]) == (
        "DE",
        "TNM",
    )
    assert tnm.peer.problems == []


@pytest.mark.parametrize("unknown", ["unknown", "2004"], ids=["http-404", "ocpi-2004"])
async def test_an_emsp_that_does_not_know_its_own_never_token_gets_it_refused(
    runtime: Runtime, tnm: Partner, unknown: str
) -> None:
    token = example(FULL_RFID) | {"whitelist": "NEVER"}
    await put(runtime, tnm.peer, token)
    tnm.peer.authorize_answers[token["uid"]] = unknown
    decision = await authorize(runtime, token["uid"], "LOC-1")
    assert decision.status is AuthorizationStatus.NOT_ALLOWED
    assert decision.source == "remote"
    assert len(tnm.peer.received("POST", "/authorize")) == 1


async def test_an_allowed_offline_token_is_asked_and_refused_when_its_emsp_refuses(
    runtime: Runtime, tnm: Partner
) -> None:
    token = example(FULL_RFID) | {"whitelist": "ALLOWED_OFFLINE"}
    await put(runtime, tnm.peer, token)
    tnm.peer.authorize_answers[token["uid"]] = authorization_info(token, "EXPIRED")
    decision = await authorize(runtime, token["uid"], "LOC-1")
    assert decision.status is AuthorizationStatus.EXPIRED
    # A refusal is not remembered: the next presentation asks again.
    tnm.peer.authorize_answers[token["uid"]] = authorization_info(token, "ALLOWED")
    assert (await authorize(runtime, token["uid"], "LOC-1")).allowed
    assert len(tnm.peer.received("POST", "/authorize")) == 2


async def test_an_invalid_never_token_is_still_asked(runtime: Runtime, tnm: Partner) -> None:
    token = example(FULL_RFID) | {"whitelist": "NEVER", "valid": False}
    await put(runtime, tnm.peer, token)
    tnm.peer.authorize_answers[token["uid"]] = authorization_info(token | {"valid": True})
    assert (await authorize(runtime, token["uid"], "LOC-1")).allowed
    assert len(tnm.peer.received("POST", "/authorize")) == 1


@pytest.mark.parametrize("whitelist", ["ALWAYS", "ALLOWED"])
@pytest.mark.parametrize("valid", [True, False])
async def test_always_and_allowed_tokens_are_decided_without_asking(
    runtime: Runtime, tnm: Partner, whitelist: str, valid: bool
) -> None:
    token = example(FULL_RFID) | {"whitelist": whitelist, "valid": valid}
    await put(runtime, tnm.peer, token)
    tnm.peer.authorize_answers[token["uid"]] = authorization_info(token, "BLOCKED")
    decision = await authorize(runtime, token["uid"], "LOC-1")
    expected = AuthorizationStatus.ALLOWED if valid else AuthorizationStatus.BLOCKED
    assert decision.status is expected
    assert decision.source == "ocpi"
    assert decision.partner_id == tnm.partner_id
    assert decision.auth_method == "WHITELIST"
    assert tnm.peer.received("POST", "/authorize") == []


async def test_a_remote_allowed_is_remembered_for_the_start_that_follows(
    runtime: Runtime, tnm: Partner
) -> None:
    token = example(FULL_RFID) | {"whitelist": "NEVER"}
    await put(runtime, tnm.peer, token)
    tnm.peer.authorize_answers[token["uid"]] = authorization_info(
        token, authorization_reference="REF-1"
    )
    first = await authorize(runtime, token["uid"], None)  # OCPP 1.6 Authorize: no location
    second = await authorize(runtime, token["uid"], "LOC-1")  # the StartTransaction
    assert first.allowed
    assert second.allowed
    assert second.authorization_reference == "REF-1"
    assert len(tnm.peer.received("POST", "/authorize")) == 1
    [asked] = tnm.peer.received("POST", "/authorize")
    assert asked.body is None  # nothing to say where, when the location is not known
    # Elsewhere, or for another uid, it asks again.
    await authorize(runtime, token["uid"], "LOC-2")
    assert len(tnm.peer.received("POST", "/authorize")) == 1  # the location-free answer holds
    await authorize(runtime, "12345678905881", "LOC-1")
    assert len(tnm.peer.received("POST", "/authorize")) == 2


@pytest.mark.parametrize(
    "answer",
    [
        {"allowed": "MAYBE", "token": {}},
        {"allowed": "UNKNOWN", "token": {}},
        {"allowed": "ALLOWED"},
        ["ALLOWED"],
    ],
    ids=["bad-allowed", "unknown-allowed", "no-token", "a-list"],
)
async def test_an_answer_that_is_not_an_authorization_info_counts_as_none(
    runtime: Runtime, tnm: Partner, answer: Any
) -> None:
    never = example(FULL_RFID) | {"whitelist": "NEVER"}
    offline = example(FULL_RFID) | {"uid": "OFFLINE-1", "whitelist": "ALLOWED_OFFLINE"}
    for token in (never, offline):
        await put(runtime, tnm.peer, token)
        tnm.peer.authorize_answers[token["uid"]] = copy.deepcopy(answer)
    assert (await authorize(runtime, never["uid"], "L")).status is AuthorizationStatus.NOT_ALLOWED
    offline_decision = await authorize(runtime, offline["uid"], "L")
    assert offline_decision.status is AuthorizationStatus.ALLOWED
    assert offline_decision.source == "ocpi"
    assert len(tnm.peer.received("POST", "/authorize")) == 2


async def test_an_unknown_uid_is_asked_of_every_emsp_and_the_one_that_knows_it_answers(
    runtime: Runtime, tnm: Partner
) -> None:
    uid = "ROAMING-0001"
    async with EmspPeer(country_code="FR", party_id="ABC") as other, EmspPeer() as gone:
        other_id = await register_directly(runtime, other, name="other")
        await register_directly(runtime, gone, name="gone")
        gone.down = True  # 503 without an envelope: cannot be asked
        tnm.peer.authorize_answers[uid] = "2004"  # OCPI 2004 without HTTP 404
        roaming = {
            "country_code": "FR",
            "party_id": "ABC",
            "uid": uid,
            "type": "RFID",
            "contract_id": "FR-ABC-C0001",
            "issuer": "ABC",
            "valid": True,
            "whitelist": "NEVER",
            "last_updated": "2024-01-01T00:00:00Z",
        }
        other.authorize_answers[uid] = authorization_info(roaming, authorization_reference="R9")
        decision = await authorize(runtime, uid, "LOC-1")
        assert decision.status is AuthorizationStatus.ALLOWED
        assert decision.partner_id == other_id
        assert decision.authorization_reference == "R9"
        assert decision.cdr_token == {
            "country_code": "FR",
            "party_id": "ABC",
            "uid": uid,
            "type": "RFID",
            "contract_id": "FR-ABC-C0001",
        }
        [asked] = other.received("POST", "/authorize")
        assert asked.query == {}  # the type is not known
        assert asked.body == {"location_id": "LOC-1"}
        assert (asked.headers["OCPI-to-country-code"], asked.headers["OCPI-to-party-id"]) == (
            "FR",
            "ABC",
        )
        assert len(tnm.peer.received("POST", "/authorize")) == 1
        assert other.problems == []
        assert tnm.peer.problems == []

        # Nobody knows this one: unknown, as without OCPI.
        decision = await authorize(runtime, "STRANGER", "LOC-1")
        assert decision.status is AuthorizationStatus.UNKNOWN
        assert len(other.received("POST", "/authorize")) == 2


async def test_partners_without_a_tokens_sender_endpoint_are_not_asked(
    runtime: Runtime, tnm: Partner
) -> None:
    async with runtime.uow() as uow:
        partner = await uow.session.get(OcpiPartner, tnm.partner_id)
        assert partner is not None
        partner.endpoints = {k: v for k, v in partner.endpoints.items() if k != "tokens"}
        await uow.commit()
    decision = await authorize(runtime, "SOMEONE", "LOC-1")
    assert decision.status is AuthorizationStatus.UNKNOWN
    assert tnm.peer.requests == []
