"""A full token pull invalidates what the eMSP's list left out; nothing else does.

A real node and the eMSP test peer with a paged tokens SENDER (``tests/hub_peer.py``). A
pull without ``since`` reads the partner's whole list: its tokens we hold valid that the
list does not name are set ``valid`` false through the receiver's PATCH path (a
``token.changed`` event recorded, as for the eMSP's own PATCH), counted in the report and
in the operator API's answer. Spared: tokens the list names (even when that entry was
rejected), tokens already invalid, tokens pushed with a ``last_updated`` after the pull
began, and every other partner's tokens. A pull that fails on the way, and an incremental
pull (``since``), invalidate nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from hub_peer import ListingEmspPeer, ListServer, token
from ocpi_support import cpo_url, register_directly
from operator_check import operator
from sqlalchemy import select

from cpms.model import OutboxEntry, Token
from cpms.runtime import Runtime
from ocpi_api.pull import PullFailed
from ocpi_api.token_pull import pull_tokens


@pytest.fixture
async def emsp(runtime: Runtime) -> AsyncIterator[tuple[ListingEmspPeer, int]]:
    async with ListingEmspPeer() as peer:
        yield peer, await register_directly(runtime, peer, name="emsp")


def lists(peer: ListingEmspPeer) -> ListServer:
    assert peer.lists is not None
    return peer.lists


async def validity(runtime: Runtime) -> dict[str, bool]:
    async with runtime.uow() as uow:
        rows = await uow.session.execute(select(Token.uid, Token.valid).order_by(Token.uid))
        return {uid: valid for uid, valid in rows}


async def changed_events(runtime: Runtime) -> list[str]:
    """The uids of the ``token.changed`` events recorded, oldest first."""
    async with runtime.uow() as uow:
        rows = await uow.session.scalars(
            select(OutboxEntry.payload)
            .where(OutboxEntry.topic == "token.changed")
            .order_by(OutboxEntry.id)
        )
        return [payload["uid"] for payload in rows]


async def test_a_full_pull_invalidates_the_tokens_its_list_left_out(
    runtime: Runtime, emsp: tuple[ListingEmspPeer, int]
) -> None:
    peer, partner_id = emsp
    async with ListingEmspPeer(country_code="NL", party_id="OTH", name="Other") as other:
        other_id = await register_directly(runtime, other, name="other")
        lists(other).tokens = [token("OTHER-1", country_code="NL", party_id="OTH")]
        await pull_tokens(runtime.uow, runtime.vault, runtime.ocpi_client, other_id)

        lists(peer).tokens = [
            token("KEEP"),
            token("DROP"),
            token("Named-Badly"),
            token("GONE-ALREADY", valid=False),
        ]
        first = await pull_tokens(runtime.uow, runtime.vault, runtime.ocpi_client, partner_id)
        assert (first.created, first.invalidated) == (4, 0)
        # Pushed while we were pulling, as it were: newer than the pull's start.
        status, _, _ = await peer.call(
            "PUT",
            cpo_url(runtime, "tokens/DE/EMS/FRESH"),
            body=token("FRESH", last_updated="2999-01-01T00:00:00Z"),
        )
        assert status == 201
        events = len(await changed_events(runtime))

        lists(peer).tokens = [
            token("KEEP"),
            token("named-badly", whitelist="MAYBE"),  # rejected, yet named (uid any case)
            token("NEW"),
        ]
        status, report = await operator(runtime, "POST", f"/ocpi/partners/{partner_id}/pull-tokens")

    assert status == 200, report
    assert (report["created"], report["rejected"], report["invalidated"]) == (1, 1, 1)
    assert await validity(runtime) == {
        "DROP": False,
        "FRESH": True,
        "GONE-ALREADY": False,
        "KEEP": True,
        "NEW": True,
        "Named-Badly": True,
        "OTHER-1": True,
    }
    # Recorded as the eMSP's PATCH would be: one token.changed for DROP, after the pull's.
    assert (await changed_events(runtime))[events:] == ["KEEP", "NEW", "DROP"]
    async with runtime.uow() as uow:
        dropped = await uow.session.scalar(select(Token).where(Token.uid == "DROP"))
    assert dropped is not None
    assert dropped.last_updated > datetime(2024, 1, 1, tzinfo=UTC)


async def test_a_pull_that_fails_on_the_way_invalidates_nothing(
    runtime: Runtime, emsp: tuple[ListingEmspPeer, int]
) -> None:
    peer, partner_id = emsp
    lists(peer).tokens = [token(f"T{n}") for n in range(6)]
    await pull_tokens(runtime.uow, runtime.vault, runtime.ocpi_client, partner_id)
    lists(peer).tokens = [token("T0"), token("T1"), token("T2"), token("T3")]
    # The second page of the second and of the third pull (pages are counted across pulls).
    lists(peer).spoiled |= {4: "down", 6: "down"}

    with pytest.raises(PullFailed):
        await pull_tokens(runtime.uow, runtime.vault, runtime.ocpi_client, partner_id)

    assert await validity(runtime) == {f"T{n}": True for n in range(6)}
    status, answer = await operator(runtime, "POST", f"/ocpi/partners/{partner_id}/pull-tokens")
    assert (status, answer["error"]["code"]) == (502, "pull_failed")
    assert await validity(runtime) == {f"T{n}": True for n in range(6)}


async def test_an_incremental_pull_invalidates_nothing(
    runtime: Runtime, emsp: tuple[ListingEmspPeer, int]
) -> None:
    peer, partner_id = emsp
    lists(peer).tokens = [token(f"T{n}") for n in range(3)]
    await pull_tokens(runtime.uow, runtime.vault, runtime.ocpi_client, partner_id)
    lists(peer).tokens = [token("T0", last_updated="2024-06-01T00:00:00Z")]

    report = await pull_tokens(
        runtime.uow, runtime.vault, runtime.ocpi_client, partner_id,
        since=datetime(2024, 5, 1, tzinfo=UTC),
    )  # fmt: skip

    assert (report.updated, report.invalidated) == (1, None)
    assert "invalidated" not in report.summary()
    assert await validity(runtime) == {"T0": True, "T1": True, "T2": True}
