"""Tokens presented together are decided as they would be one at a time, with a few SELECTs.

The gateway reads what the database says about a presented token through the group reader
(``GroupReader.run_grouped(authorizer.prepare_at_stations, Presented(...))``), so the tokens
of a reconnect storm's StartTransactions are read with one SELECT of stations, one of recent
OCPI commands and one of tokens for the whole batch. Here one script of presentations (valid,
invalid and unknown tokens, uids in another case, tokens sharing a uid, eMSP tokens to ask
and not to ask, an eMSP command's token at its location and elsewhere, a uid presented twice)
is decided both ways by two fresh authorizers: every decision, what each pending decision
held, and what the issuer was asked must be the same. Then the statements a batch costs,
4 or 40 presentations alike, and a real ``GroupReader`` answering concurrent callers, one of
them at a station that does not exist.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from authorization_support import emsp_token
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from cpms import stations
from cpms.authorization import (
    Authorization,
    AuthorizationStatus,
    Authorizer,
    Operator,
    PendingDecision,
    Presented,
)
from cpms.errors import NotFound
from cpms.group_commit import GroupReader
from cpms.locations import ensure_default_location
from cpms.model import OcpiCommand, OcpiPartner, Token, utcnow
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

from support import DEFAULT_LOCATION, TIME_UNIT

OPERATOR = Operator("NL", "CPM")
BOUND = 10 * TIME_UNIT
"""Longest wait for the group reader (it answers far sooner)."""
LOCATIONS = {"S1": "LOC-1", "S2": "LOC-1", "S3": "LOC-2", "S4": "LOC-2"}
"""The stations of these tests, at two locations."""


async def _stations(uow: UnitOfWorkFactory) -> None:
    async with uow() as unit:
        for location_id in sorted(set(LOCATIONS.values())):
            await ensure_default_location(
                unit, dataclasses.replace(DEFAULT_LOCATION, id=location_id)
            )
        await unit.commit()
    for station_id, location_id in LOCATIONS.items():
        await stations.create_station(uow(), station_id, location_id=location_id)


async def _token(uow: UnitOfWorkFactory, uid: str, **fields: Any) -> Token:
    """A local token (ours: NL CPM, whitelist ALWAYS unless told)."""
    return await create_token(uow(), {"uid": uid, **fields}, country_code="NL", party_id="CPM")


COMMAND_TOKEN = {
    "country_code": "DE",
    "party_id": "MSP",
    "uid": "APP-CMD",
    "type": "APP_USER",
    "contract_id": "DE-MSP-APPCMD",
    "issuer": "Some eMSP",
    "group_id": "APP-GROUP",
    "valid": True,
    "whitelist": "NEVER",
    "last_updated": "2024-01-01T00:00:00Z",
}


async def _command(uow: UnitOfWorkFactory, location_id: str) -> None:
    """An eMSP's START_SESSION for ``COMMAND_TOKEN`` a minute ago, as the commands module
    keeps it."""
    async with uow() as unit:
        partner = OcpiPartner(name="emsp", state="REGISTERED")
        unit.session.add(partner)
        await unit.session.flush()
        created = utcnow() - timedelta(minutes=1)
        unit.session.add(
            OcpiCommand(
                id="START-1",
                partner_id=partner.id,
                command="START_SESSION",
                response_url="https://emsp.example/cb",
                request={
                    "response_url": "https://emsp.example/cb",
                    "token": COMMAND_TOKEN,
                    "location_id": location_id,
                    "authorization_reference": "CMD-REF",
                },
                id_tag=COMMAND_TOKEN["uid"],
                state="PENDING",
                deadline=created + timedelta(seconds=30),
                created_at=created,
            )
        )
        await unit.commit()


class Issuer:
    """eMSPs answering real-time authorization requests (the external parties' role).

    Answers ``answers[uid]``, or None ("could not be asked") for a uid it has no answer for,
    and remembers every question and every look-up of whom to ask.
    """

    def __init__(self, answers: dict[str, AuthorizationStatus]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str | None, str | None]] = []
        """``(uid, uid of the stored token or None, location_id)`` per question."""
        self.looked_up: list[str | None] = []
        """The stored token's uid (None: a uid nobody pushed) per ``issuers`` call."""

    async def issuers(self, uow: UnitOfWork, token: Token | None) -> list[object]:
        self.looked_up.append(token.uid if token is not None else None)
        return [self]

    async def ask(
        self, issuers: Sequence[object], uid: str, token: Token | None, *, location_id: str | None
    ) -> Authorization | None:
        assert issuers == [self]
        self.asked.append((uid, token.uid if token is not None else None, location_id))
        answer = self.answers.get(uid)
        if answer is None:
            return None
        cdr_token = {
            "country_code": "DE",
            "party_id": "MSP",
            "uid": uid,
            "type": "APP_USER",
            "contract_id": f"DE-MSP-R-{uid}",
        }
        return Authorization(
            answer, uid, cdr_token, authorization_reference=f"REF-{uid}", source="remote"
        )


ANSWERS = {
    "ROAM-YES": AuthorizationStatus.ALLOWED,
    "APP-NEVER": AuthorizationStatus.NO_CREDIT,
    "APP-CMD": AuthorizationStatus.EXPIRED,
}
"""What the issuer answers; any other uid it cannot answer for."""

S = AuthorizationStatus
SCRIPT: tuple[tuple[Presented, tuple[AuthorizationStatus, str, str]], ...] = (
    # A presentation, and the decision expected: status, source, the CdrToken's uid.
    (Presented("S1", "CARD-OK"), (S.ALLOWED, "local", "CARD-OK")),
    (Presented("S2", "CARD-OFF"), (S.BLOCKED, "local", "CARD-OFF")),
    (Presented("S3", "abc123"), (S.ALLOWED, "local", "AbC123")),  # stored in another case
    (Presented("S1", "dup1"), (S.BLOCKED, "local", "dup1")),  # the exact spelling wins
    (Presented("S2", "DUP1"), (S.ALLOWED, "local", "DuP1")),  # neither exact: the valid one
    (Presented("S1", "ROAM-YES"), (S.ALLOWED, "remote", "ROAM-YES")),  # unknown, asked
    (Presented("S3", "NOBODY"), (S.UNKNOWN, "unknown", "NOBODY")),  # unknown, no answer
    (Presented("S2", "APP-NEVER"), (S.NO_CREDIT, "remote", "APP-NEVER")),  # NEVER: asked
    (Presented("S3", "APP-OK"), (S.ALLOWED, "ocpi", "APP-OK")),  # ALLOWED: decided here
    (Presented("S1", "APP-CMD"), (S.ALLOWED, "command", "APP-CMD")),  # the command's location
    (Presented("S4", "APP-CMD"), (S.EXPIRED, "remote", "APP-CMD")),  # another location
    (Presented("S2", "ROAM-YES"), (S.ALLOWED, "remote", "ROAM-YES")),  # remembered: not asked
    (Presented("S4", "CARD-OK"), (S.ALLOWED, "local", "CARD-OK")),  # the same uid again
)
ASKED = [
    ("ROAM-YES", None, "LOC-1"),
    ("NOBODY", None, "LOC-2"),
    ("APP-NEVER", "APP-NEVER", "LOC-1"),
    ("APP-CMD", None, "LOC-2"),
]
"""What the issuer is asked, either way: the second ROAM-YES at LOC-1 is remembered."""


async def _set_up_script(uow: UnitOfWorkFactory) -> None:
    await _stations(uow)
    await _token(uow, "CARD-OK", group_id="FLEET-1")
    await _token(uow, "CARD-OFF", valid=False)
    await _token(uow, "AbC123")
    await _token(uow, "DuP1", group_id="VALID")
    await _token(uow, "dup1", valid=False, group_id="INVALID")
    await emsp_token(uow, "APP-NEVER", whitelist="NEVER")
    await emsp_token(uow, "APP-OK", whitelist="ALLOWED")
    await _command(uow, "LOC-1")


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """What one side learnt about one presentation, comparable with ``==``."""

    location_id: str | None
    token: tuple[str, str, str, bool] | None
    """The stored token the decision used: uid, country, party, valid."""
    settled: Authorization | None
    decision: Authorization


def _outcome(pending: PendingDecision, decision: Authorization) -> _Outcome:
    token = pending.token
    return _Outcome(
        pending.location_id,
        (token.uid, token.country_code, token.party_id, token.valid) if token else None,
        pending.settled,
        decision,
    )


async def _one_at_a_time(
    uow: UnitOfWorkFactory, authorizer: Authorizer, script: Sequence[Presented]
) -> list[_Outcome]:
    outcomes = []
    for item in script:
        async with uow() as unit:
            [pending] = await authorizer.prepare_at_stations(unit, [item])
        outcomes.append(_outcome(pending, await pending.decide()))
    return outcomes


async def _together(
    uow: UnitOfWorkFactory, authorizer: Authorizer, script: Sequence[Presented]
) -> list[_Outcome]:
    async with uow() as unit:
        pendings = await authorizer.prepare_at_stations(unit, script)
    assert len(pendings) == len(script)
    return [_outcome(pending, await pending.decide()) for pending in pendings]


async def test_tokens_presented_together_are_decided_as_one_at_a_time(
    uow: UnitOfWorkFactory,
) -> None:
    await _set_up_script(uow)
    script = [item for item, _ in SCRIPT]
    alone_issuer, grouped_issuer = Issuer(ANSWERS), Issuer(ANSWERS)
    # A fresh authorizer each: the remote ALLOWEDs one remembers must not serve the other.
    alone = await _one_at_a_time(uow, Authorizer(OPERATOR, alone_issuer), script)
    grouped = await _together(uow, Authorizer(OPERATOR, grouped_issuer), script)

    for item, one, other in zip(script, alone, grouped, strict=True):
        assert one == other, item
    expected = [decision for _, decision in SCRIPT]
    assert [
        (o.decision.status, o.decision.source, o.decision.cdr_token["uid"]) for o in grouped
    ] == expected
    assert [o.location_id for o in grouped] == [LOCATIONS[item.station_id] for item in script]
    command = grouped[9]
    assert command.settled == command.decision
    assert command.decision.authorization_reference == "CMD-REF"
    assert command.decision.details == {"command": "START_SESSION", "command_id": "START-1"}
    assert grouped[3].decision.group_id == "INVALID"
    assert grouped[4].decision.group_id == "VALID"
    assert alone_issuer.asked == grouped_issuer.asked == ASKED
    # Whom to ask is read once per stored token in a batch, once for every uid nobody pushed.
    assert grouped_issuer.looked_up in (["APP-NEVER", None], [None, "APP-NEVER"])
    assert sorted(alone_issuer.looked_up, key=str) == ["APP-NEVER", None, None, None]


async def _cards(uow: UnitOfWorkFactory, count: int) -> list[str]:
    uids = [f"CARD-{k:02d}" for k in range(count)]
    for uid in uids:
        await _token(uow, uid)
    return uids


def _at_stations(uids: Sequence[str]) -> list[Presented]:
    names = sorted(LOCATIONS)
    return [Presented(names[k % len(names)], uid) for k, uid in enumerate(uids)]


async def test_a_batch_of_presentations_costs_the_same_statements_however_many_it_holds(
    uow: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    await _stations(uow)
    uids = await _cards(uow, 40)
    authorizer = Authorizer(OPERATOR, Issuer({}))
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async def batch(presented: list[Presented]) -> int:
        statements.clear()
        async with uow() as unit:
            event.listen(engine.sync_engine, "before_cursor_execute", count)
            try:
                pendings = await authorizer.prepare_at_stations(unit, presented)
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", count)
        decisions = [await pending.decide() for pending in pendings]
        assert [decision.uid for decision in decisions] == [item.uid for item in presented]
        assert all(decision.allowed and decision.source == "local" for decision in decisions)
        return len(statements)

    few = await batch(_at_stations(uids[:4]))
    many = await batch(_at_stations(uids))
    # The stations' locations, the recent commands, the tokens: none of them one per token.
    assert many == few
    assert many <= 3


async def test_a_group_reader_decides_concurrent_presentations_together(
    uow: UnitOfWorkFactory,
) -> None:
    await _stations(uow)
    uids = await _cards(uow, 20)
    await _token(uow, "CARD-OFF", valid=False)
    authorizer = Authorizer(OPERATOR)
    reader = GroupReader(uow)
    await reader.start()
    try:
        # One station that does not exist (retired while its websocket was still open).
        presented = _at_stations([*uids[:17], "CARD-OFF", "NOBODY"])
        presented.insert(7, Presented("NO-SUCH-STATION", uids[17]))
        results = await asyncio.wait_for(
            asyncio.gather(
                *(reader.run_grouped(authorizer.prepare_at_stations, p) for p in presented),
                return_exceptions=True,
            ),
            BOUND,
        )
        failed = results.pop(7)
        assert isinstance(failed, NotFound)
        assert (failed.kind, failed.key) == ("station", "NO-SUCH-STATION")
        presented.pop(7)
        assert all(isinstance(result, PendingDecision) for result in results)
        pendings = cast(list[PendingDecision], results)
        assert [p.location_id for p in pendings] == [LOCATIONS[p.station_id] for p in presented]
        statuses = [(await pending.decide()).status for pending in pendings]
        assert statuses == [S.ALLOWED] * 17 + [S.BLOCKED, S.UNKNOWN]
        # Its batch failed and each work was read again alone: the 19 answered count once
        # each, the failure never.
        assert reader.items == 19
        assert reader.batches <= reader.items

        # Without a failure among them, concurrent presentations share batches.
        batches, items = reader.batches, reader.items
        again = _at_stations(uids)
        pendings = await asyncio.wait_for(
            asyncio.gather(*(reader.run_grouped(authorizer.prepare_at_stations, p) for p in again)),
            BOUND,
        )
        assert [pending.uid for pending in pendings] == uids
        assert all([(await pending.decide()).allowed for pending in pendings])
        assert reader.items - items == 20
        assert reader.batches - batches < 20
    finally:
        await reader.stop()
