"""Pulling an eMSP's token list on a real node: page after page, stored as pushed tokens are.

The eMSP is the test peer with a paged tokens SENDER (``tests/hub_peer.py``), registered by
the real credentials handshake or written directly. Checked: the ``Link`` is followed to the
last page (three and more), ``date_from`` goes with ``since``, routing headers are sent,
pulled tokens authorize like pushed ones, tokens of other parties are skipped and counted,
an invalid token is rejected with its reason while the rest of its page is stored, and a
page that cannot be read (not a list, an OCPI error, HTTP 503, a partner that is gone, a
Link that never ends or leads to another host) stops the pull with a message naming the
page and what was stored before. The operator API answers each case as openapi.json says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hub_peer import ListingEmspPeer, ListServer, token
from ocpi_support import register_directly
from operator_check import operator
from sqlalchemy import select

from cpms.authorization import AuthorizationStatus
from cpms.errors import Conflict, NotFound
from cpms.model import Token
from cpms.partners import invite_partner
from cpms.runtime import Runtime
from ocpi_api.pull import PullFailed, PullReport
from ocpi_api.token_pull import pull_tokens


@dataclass
class Emsp:
    """A registered eMSP peer whose token list can be pulled."""

    peer: ListingEmspPeer
    partner_id: int

    @property
    def lists(self) -> ListServer:
        assert self.peer.lists is not None
        return self.peer.lists


@pytest.fixture
async def emsp(runtime: Runtime) -> AsyncIterator[Emsp]:
    async with ListingEmspPeer() as peer:
        yield Emsp(peer, await register_directly(runtime, peer, name="emsp"))


async def pull(runtime: Runtime, partner_id: int, **options: Any) -> PullReport:
    return await pull_tokens(runtime.uow, runtime.vault, runtime.ocpi_client, partner_id, **options)


async def stored_uids(runtime: Runtime) -> list[str]:
    async with runtime.uow() as uow:
        return list(await uow.session.scalars(select(Token.uid).order_by(Token.uid)))


# Pages -----------------------------------------------------------------------------------------


async def test_a_peer_that_registered_by_handshake_has_its_tokens_pulled_over_three_pages(
    runtime: Runtime,
) -> None:
    async with ListingEmspPeer() as peer:
        partner_id, token_a = await invite_partner(runtime.uow(), "")
        await peer.register_with(f"{runtime.base_url()}/ocpi/versions", token_a)
        assert peer.lists is not None
        peer.lists.tokens = [token(f"UID-{n}") for n in range(8)]

        status, report = await operator(runtime, "POST", f"/ocpi/partners/{partner_id}/pull-tokens")

        assert status == 200, report
        assert report | {"rejections": None} == {
            "partner_id": partner_id,
            "pages": 3,
            "received": 8,
            "stored": 8,
            "created": 8,
            "updated": 0,
            "kept": 0,
            "skipped": 0,
            "rejected": 0,
            "total": 8,
            "invalidated": 0,  # a full pull: nothing held was left out
            "rejections": None,
        }
        asked = peer.lists.pages_asked("tokens")
        assert [r.query for r in asked] == [
            {},
            {"offset": "3", "limit": "3"},
            {"offset": "6", "limit": "3"},
        ]
        for request in asked:  # a functional module: routed, with the token the peer gave us
            assert request.token in peer.accepted_tokens
            assert request.headers["OCPI-to-country-code"] == "DE"
            assert request.headers["OCPI-to-party-id"] == "EMS"
            assert request.headers["OCPI-from-party-id"] == "CPM"
        assert peer.problems == []
    assert await stored_uids(runtime) == [f"UID-{n}" for n in range(8)]


async def test_pulled_tokens_authorize_like_pushed_ones(runtime: Runtime, emsp: Emsp) -> None:
    emsp.lists.tokens = [
        token("ALLOWED-1"),
        token("BLOCKED-1", valid=False),
        token("ALWAYS-1", whitelist="ALWAYS", group_id="G-1"),
        token("APP-1", type="APP_USER"),
    ]
    report = await pull(runtime, emsp.partner_id)
    assert (report.pages, report.stored) == (2, 4)

    async with runtime.uow() as uow:
        allowed = await runtime.authorizer.authorize(uow, "ALLOWED-1", location_id="LOC-1")
        blocked = await runtime.authorizer.authorize(uow, "BLOCKED-1", location_id="LOC-1")
        grouped = await runtime.authorizer.authorize(uow, "ALWAYS-1")
    assert allowed.status is AuthorizationStatus.ALLOWED
    assert (allowed.source, allowed.partner_id) == ("ocpi", emsp.partner_id)
    assert allowed.cdr_token["contract_id"] == "DE-EMS-CALLOWED-1"
    assert blocked.status is AuthorizationStatus.BLOCKED
    assert (grouped.status, grouped.group_id) == (AuthorizationStatus.ALLOWED, "G-1")
    async with runtime.uow() as uow:
        app = await uow.session.scalar(select(Token).where(Token.uid == "APP-1"))
    assert app is not None
    assert (app.type, app.source, app.partner_id) == ("APP_USER", "ocpi", emsp.partner_id)


async def test_a_second_pull_replaces_and_since_asks_for_changes_only(
    runtime: Runtime, emsp: Emsp
) -> None:
    emsp.lists.tokens = [token(f"T{n}") for n in range(4)]
    await pull(runtime, emsp.partner_id)
    emsp.lists.tokens[3] = token("T3", valid=False, last_updated="2024-06-01T12:00:00Z")
    since = datetime(2024, 6, 1, tzinfo=UTC)

    report = await pull(runtime, emsp.partner_id, since=since)

    assert (report.pages, report.received, report.created, report.updated) == (1, 1, 0, 1)
    assert emsp.lists.pages_asked("tokens")[-1].query == {"date_from": "2024-06-01T00:00:00Z"}
    async with runtime.uow() as uow:
        t3 = await uow.session.scalar(select(Token).where(Token.uid == "T3"))
    assert t3 is not None
    assert t3.valid is False
    assert t3.last_updated == datetime(2024, 6, 1, 12, tzinfo=UTC)


async def test_tokens_of_another_party_are_skipped_and_counted(
    runtime: Runtime, emsp: Emsp
) -> None:
    emsp.lists.tokens = [
        token("MINE-1"),
        token("THEIRS-1", country_code="NL", party_id="XYZ"),
        token("MINE-2", country_code="de", party_id="ems"),  # CiStrings: its own, any case
    ]
    report = await pull(runtime, emsp.partner_id)

    assert (report.stored, report.skipped, report.rejected) == (2, 1, 0)
    assert await stored_uids(runtime) == ["MINE-1", "MINE-2"]


async def test_an_invalid_token_is_rejected_with_its_reason_and_the_rest_is_stored(
    runtime: Runtime, emsp: Emsp
) -> None:
    incomplete = token("NO-ISSUER")
    del incomplete["issuer"]
    emsp.lists.tokens = [
        token("GOOD-1"),
        incomplete,
        token("GOOD-2"),
        token("BAD-WHITELIST", whitelist="SOMETIMES"),
        "not a token",
        token("GOOD-3"),
    ]
    seen: list[tuple[int, int, list[str]]] = []
    report = await pull(
        runtime,
        emsp.partner_id,
        on_page=lambda page, so_far, rejected: seen.append(
            (page.number, so_far.stored, [r.key for r in rejected])
        ),
    )

    assert (report.pages, report.received, report.stored, report.rejected) == (2, 6, 3, 3)
    assert seen == [(1, 2, ["DE/EMS/NO-ISSUER"]), (2, 3, ["DE/EMS/BAD-WHITELIST", "?"])]
    assert [(r.page, r.index, r.key) for r in report.rejections] == [
        (1, 1, "DE/EMS/NO-ISSUER"),
        (2, 0, "DE/EMS/BAD-WHITELIST"),
        (2, 1, "?"),
    ]
    assert "issuer" in report.rejections[0].reason
    assert "whitelist" in report.rejections[1].reason
    assert "not a Token object" in report.rejections[2].reason
    assert await stored_uids(runtime) == ["GOOD-1", "GOOD-2", "GOOD-3"]


async def test_a_token_that_is_ours_already_is_rejected_not_taken_over(
    runtime: Runtime, emsp: Emsp
) -> None:
    from cpms.tokens import create_token

    await create_token(runtime.uow(), {"uid": "LOCAL-1"}, country_code="DE", party_id="EMS")
    emsp.lists.tokens = [token("LOCAL-1"), token("OTHER-1")]

    report = await pull(runtime, emsp.partner_id)

    assert (report.stored, report.rejected) == (1, 1)
    assert "belongs to another party" in report.rejections[0].reason


# Pages that cannot be read ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoiled", "said"),
    [
        ({"data": {"uid": "not a list"}}, "data is not a list but dict"),
        ({"data": "nothing"}, "data is not a list but str"),
        ({"status_code": 3000}, "OCPI status 3000"),
        ("down", "HTTP 503 without an OCPI envelope"),
    ],
    ids=["object", "string", "ocpi-error", "http-503"],
)
async def test_a_page_that_cannot_be_read_stops_the_pull_keeping_what_came_before(
    runtime: Runtime, emsp: Emsp, spoiled: Any, said: str
) -> None:
    emsp.lists.tokens = [token(f"T{n}") for n in range(7)]
    emsp.lists.spoiled[2] = spoiled

    with pytest.raises(PullFailed) as failed:
        await pull(runtime, emsp.partner_id)

    assert failed.value.page == 2
    assert str(failed.value).startswith("page 2: ")
    assert said in str(failed.value)
    assert "(before that: 1 page(s), 3 received, 3 stored (3 new)" in str(failed.value)
    assert await stored_uids(runtime) == ["T0", "T1", "T2"]
    assert len(emsp.lists.pages_asked("tokens")) == 2


async def test_an_unreachable_partner_is_a_clear_error(runtime: Runtime, emsp: Emsp) -> None:
    await emsp.lists.stop()

    with pytest.raises(PullFailed, match=r"^page 1: GET http://127\.0\.0\.1:\d+/2\.2\.1/tokens"):
        await pull(runtime, emsp.partner_id)
    status, answer = await operator(
        runtime, "POST", f"/ocpi/partners/{emsp.partner_id}/pull-tokens"
    )
    assert status == 502
    assert answer["error"]["code"] == "pull_failed"
    assert "page 1: GET" in answer["error"]["message"]
    assert "ClientConnectorError" in answer["error"]["message"]
    assert await stored_uids(runtime) == []


async def test_a_list_that_never_ends_is_given_up_after_the_page_bound(
    runtime: Runtime, emsp: Emsp
) -> None:
    emsp.lists.tokens = [token("T0")]
    emsp.lists.never_ends()

    with pytest.raises(PullFailed, match="stopped after 5 pages: the partner still sends a next"):
        await pull(runtime, emsp.partner_id, max_pages=5)
    assert len(emsp.lists.pages_asked("tokens")) == 5


async def test_the_operator_pull_stops_after_a_thousand_pages(runtime: Runtime, emsp: Emsp) -> None:
    emsp.lists.never_ends()
    status, answer = await operator(
        runtime, "POST", f"/ocpi/partners/{emsp.partner_id}/pull-tokens"
    )
    assert status == 502
    assert "stopped after 1000 pages" in answer["error"]["message"]
    assert len(emsp.lists.pages_asked("tokens")) == 1000


async def test_a_next_page_on_another_host_is_not_asked(runtime: Runtime, emsp: Emsp) -> None:
    emsp.lists.tokens = [token(f"T{n}") for n in range(5)]
    emsp.lists.links_elsewhere()

    with pytest.raises(PullFailed, match="not on the endpoint's host; our token is not sent"):
        await pull(runtime, emsp.partner_id)
    assert len(emsp.lists.pages_asked("tokens")) == 1
    assert await stored_uids(runtime) == ["T0", "T1", "T2"]


# Who can be pulled -----------------------------------------------------------------------------


async def test_only_a_registered_partner_with_a_tokens_sender_is_pulled(
    runtime: Runtime, emsp: Emsp
) -> None:
    with pytest.raises(NotFound):
        await pull(runtime, 999)
    status, answer = await operator(runtime, "POST", "/ocpi/partners/999/pull-tokens")
    assert (status, answer["error"]["code"]) == (404, "not_found")

    plain = ListingEmspPeer(party_id="PLN")
    plain.endpoints = lambda: [  # type: ignore[method-assign]
        e for e in ListingEmspPeer.endpoints(emsp.peer) if e["identifier"] != "tokens"
    ]
    partner_id = await register_directly(runtime, plain, name="no tokens sender")
    with pytest.raises(Conflict, match="offers no tokens SENDER endpoint"):
        await pull(runtime, partner_id)
    status, answer = await operator(runtime, "POST", f"/ocpi/partners/{partner_id}/pull-tokens")
    assert (status, answer["error"]["code"]) == (409, "conflict")


@pytest.mark.parametrize(
    "body",
    [{"since": "2024-01-01T00:00:00+01:00"}, {"since": 5}, {"until": "2024-01-01T00:00:00Z"}, []],
    ids=["offset", "number", "unknown-field", "not-an-object"],
)
async def test_the_operator_pull_refuses_a_bad_body(
    runtime: Runtime, emsp: Emsp, body: Any
) -> None:
    status, answer = await operator(
        runtime, "POST", f"/ocpi/partners/{emsp.partner_id}/pull-tokens", body
    )
    assert (status, answer["error"]["code"]) == (400, "invalid_request")
    assert emsp.lists.pages_asked("tokens") == []


async def test_the_operator_pull_passes_since_on(runtime: Runtime, emsp: Emsp) -> None:
    emsp.lists.tokens = [token("OLD"), token("NEW", last_updated="2025-02-02T00:00:00Z")]
    status, report = await operator(
        runtime,
        "POST",
        f"/ocpi/partners/{emsp.partner_id}/pull-tokens",
        {"since": "2025-01-01T00:00:00Z"},
    )
    assert (status, report["stored"], report["total"]) == (200, 1, 1)
    assert await stored_uids(runtime) == ["NEW"]
