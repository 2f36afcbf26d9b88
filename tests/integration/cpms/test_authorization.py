"""Authorization over the token table on a real database, without OCPP.

Covers ``cpms.authorization.Authorizer``: valid, invalid and unknown tokens, the group id
passed through, unknown tokens accepted with our own CdrToken when configured, tokens that
must always be asked of their issuer (``whitelist`` NEVER), a real-time issuer consulted
for unknown and NEVER tokens with its answer used or, when it cannot be reached, the local
decision, and which token wins when several share a uid. Then the OCPI WhitelistType rules
(ALWAYS and ALLOWED decided here, ALLOWED_OFFLINE asked with an offline fallback, ``valid``
false never sparing a question), a remote ALLOWED remembered for a few minutes and a refusal
not, and tokens of an eMSP's START_SESSION / RESERVE_NOW command allowed without asking for
15 minutes at the command's location, their session marked COMMAND.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from authorization_support import emsp_token

from cpms.authorization import Authorization, AuthorizationStatus, Authorizer, Operator
from cpms.model import OcpiCommand, OcpiPartner, Token, utcnow
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

OPERATOR = Operator("NL", "CPM")


async def _token(
    uow: UnitOfWorkFactory,
    uid: str,
    *,
    country_code: str = "NL",
    party_id: str = "CPM",
    **fields: Any,
) -> Token:
    return await create_token(
        uow(), {"uid": uid, **fields}, country_code=country_code, party_id=party_id
    )


async def _authorize(
    uow: UnitOfWorkFactory, authorizer: Authorizer, uid: str, location_id: str | None = None
) -> Authorization:
    async with uow() as unit:
        return await authorizer.authorize(unit, uid, location_id=location_id)


class Issuer:
    """An eMSP answering real-time authorization requests (the external party's role).

    Answers ``answer`` (None: "could not be asked") and remembers every question.
    """

    def __init__(self, answer: AuthorizationStatus | None) -> None:
        self.answer = answer
        self.asked: list[tuple[str, Token | None, str | None]] = []

    async def issuers(self, uow: UnitOfWork, token: Token | None) -> list[object]:
        return [self]

    async def ask(
        self, issuers: Sequence[object], uid: str, token: Token | None, *, location_id: str | None
    ) -> Authorization | None:
        assert issuers == [self]
        self.asked.append((uid, token, location_id))
        if self.answer is None:
            return None
        cdr_token = {
            "country_code": "DE",
            "party_id": "MSP",
            "uid": uid,
            "type": "APP_USER",
            "contract_id": "DE-MSP-REMOTE",
        }
        return Authorization(
            self.answer, uid, cdr_token, authorization_reference="AUTH-REF-1", source="remote"
        )


async def test_a_valid_local_token_is_allowed_with_its_group(uow: UnitOfWorkFactory) -> None:
    await _token(uow, "CARD-1", group_id="FLEET-7", contract_id="NL-CPM-C00001")
    decision = await _authorize(uow, Authorizer(OPERATOR), "CARD-1")
    assert decision.status is AuthorizationStatus.ALLOWED
    assert decision.allowed is True
    assert decision.uid == "CARD-1"
    assert decision.group_id == "FLEET-7"
    assert decision.source == "local"
    assert decision.partner_id is None
    assert decision.cdr_token == {
        "country_code": "NL",
        "party_id": "CPM",
        "uid": "CARD-1",
        "type": "RFID",
        "contract_id": "NL-CPM-C00001",
    }


async def test_an_invalid_token_is_blocked(uow: UnitOfWorkFactory) -> None:
    await _token(uow, "CARD-2", valid=False, group_id="FLEET-7")
    decision = await _authorize(uow, Authorizer(OPERATOR), "CARD-2")
    assert decision.status is AuthorizationStatus.BLOCKED
    assert decision.allowed is False
    assert decision.group_id == "FLEET-7"
    assert decision.cdr_token["uid"] == "CARD-2"


async def test_a_token_nobody_issued_is_unknown(uow: UnitOfWorkFactory) -> None:
    await _token(uow, "CARD-1")
    decision = await _authorize(uow, Authorizer(OPERATOR), "CARD-X")
    assert decision.status is AuthorizationStatus.UNKNOWN
    assert decision.allowed is False
    assert decision.group_id is None


async def test_uids_are_found_in_any_case_the_exact_spelling_first(
    uow: UnitOfWorkFactory,
) -> None:
    # OCPP idTags and OCPI uids are CiStrings: a reader sending a card's hex uid in lower
    # case presents the same card.
    await _token(uow, "AbC123")
    authorizer = Authorizer(OPERATOR)
    assert (await _authorize(uow, authorizer, "AbC123")).allowed is True
    found = await _authorize(uow, authorizer, "abc123")
    assert (found.allowed, found.cdr_token["uid"]) == (True, "AbC123")

    await _token(uow, "abc123", valid=False)
    assert (await _authorize(uow, authorizer, "abc123")).status is AuthorizationStatus.BLOCKED
    assert (await _authorize(uow, authorizer, "ABC123")).allowed is True  # a valid one first
    assert (await _authorize(uow, authorizer, "xbc123")).status is AuthorizationStatus.UNKNOWN


async def test_unknown_tokens_may_be_accepted_with_our_own_cdr_token(
    uow: UnitOfWorkFactory,
) -> None:
    decision = await _authorize(uow, Authorizer(OPERATOR, accept_unknown=True), "FREE-99")
    assert decision.status is AuthorizationStatus.ALLOWED
    assert decision.cdr_token == {
        "country_code": "NL",
        "party_id": "CPM",
        "uid": "FREE-99",
        "type": "OTHER",
        "contract_id": "FREE-99",
    }
    assert decision.partner_id is None


async def test_accepting_unknown_tokens_does_not_unblock_a_known_invalid_one(
    uow: UnitOfWorkFactory,
) -> None:
    await _token(uow, "STOLEN", valid=False)
    decision = await _authorize(uow, Authorizer(OPERATOR, accept_unknown=True), "STOLEN")
    assert decision.status is AuthorizationStatus.BLOCKED


async def test_a_never_whitelisted_token_without_an_issuer_to_ask_is_not_allowed(
    uow: UnitOfWorkFactory,
) -> None:
    await emsp_token(uow, "APP-1", whitelist="NEVER")
    decision = await _authorize(uow, Authorizer(OPERATOR, accept_unknown=True), "APP-1")
    assert decision.status is AuthorizationStatus.NOT_ALLOWED
    assert decision.source == "ocpi"
    assert decision.cdr_token["party_id"] == "MSP"


async def test_the_issuer_is_asked_about_unknown_tokens_and_its_answer_used(
    uow: UnitOfWorkFactory,
) -> None:
    issuer = Issuer(AuthorizationStatus.ALLOWED)
    decision = await _authorize(uow, Authorizer(OPERATOR, issuer), "ROAMING-1", "LOC-9")
    assert issuer.asked == [("ROAMING-1", None, "LOC-9")]
    assert decision.status is AuthorizationStatus.ALLOWED
    assert decision.source == "remote"
    assert decision.authorization_reference == "AUTH-REF-1"
    assert decision.cdr_token["contract_id"] == "DE-MSP-REMOTE"


async def test_the_issuer_is_asked_about_never_tokens_and_may_refuse(
    uow: UnitOfWorkFactory,
) -> None:
    await emsp_token(uow, "APP-2", whitelist="NEVER")
    issuer = Issuer(AuthorizationStatus.NO_CREDIT)
    decision = await _authorize(uow, Authorizer(OPERATOR, issuer), "APP-2", "LOC-9")
    assert len(issuer.asked) == 1
    uid, token, location_id = issuer.asked[0]
    assert (uid, location_id) == ("APP-2", "LOC-9")
    assert token is not None
    assert (token.uid, token.whitelist, token.party_id) == ("APP-2", "NEVER", "MSP")
    assert decision.status is AuthorizationStatus.NO_CREDIT
    assert decision.allowed is False


async def test_an_unreachable_issuer_falls_back_to_the_local_decision(
    uow: UnitOfWorkFactory,
) -> None:
    await emsp_token(uow, "APP-3", whitelist="NEVER")
    issuer = Issuer(None)
    authorizer = Authorizer(OPERATOR, issuer)
    never = await _authorize(uow, authorizer, "APP-3")
    unknown = await _authorize(uow, authorizer, "NOBODY")
    assert [uid for uid, _, _ in issuer.asked] == ["APP-3", "NOBODY"]
    assert never.status is AuthorizationStatus.NOT_ALLOWED
    assert unknown.status is AuthorizationStatus.UNKNOWN
    accepting = Authorizer(OPERATOR, issuer, accept_unknown=True)
    assert (await _authorize(uow, accepting, "NOBODY")).status is AuthorizationStatus.ALLOWED


async def test_the_issuer_is_not_asked_about_tokens_known_here(uow: UnitOfWorkFactory) -> None:
    await _token(uow, "CARD-1")
    await _token(uow, "CARD-2", valid=False)
    await emsp_token(uow, "APP-4", whitelist="ALLOWED")
    issuer = Issuer(AuthorizationStatus.BLOCKED)
    authorizer = Authorizer(OPERATOR, issuer)
    assert (await _authorize(uow, authorizer, "CARD-1")).status is AuthorizationStatus.ALLOWED
    assert (await _authorize(uow, authorizer, "CARD-2")).status is AuthorizationStatus.BLOCKED
    emsp = await _authorize(uow, authorizer, "APP-4")
    assert emsp.status is AuthorizationStatus.ALLOWED
    assert emsp.source == "ocpi"
    assert issuer.asked == []


async def test_when_tokens_share_a_uid_the_valid_local_rfid_card_wins(
    uow: UnitOfWorkFactory,
) -> None:
    uid = "04A1B2C3D4"
    # Stored before the winner, so the answer cannot be "the first row".
    await emsp_token(uow, uid)
    await emsp_token(uow, uid, party_id="OTH", type="APP_USER")
    await _token(uow, uid, type="APP_USER", group_id="APP-GROUP")
    await _token(uow, uid, party_id="OLD", valid=False, group_id="OLD-GROUP")
    await _token(uow, uid, type="OTHER", group_id="OTHER-GROUP")
    await _token(uow, uid, group_id="CARD-GROUP")
    decision = await _authorize(uow, Authorizer(OPERATOR), uid)
    assert decision.status is AuthorizationStatus.ALLOWED
    assert decision.source == "local"
    assert decision.group_id == "CARD-GROUP"
    assert decision.cdr_token["type"] == "RFID"
    assert (decision.cdr_token["country_code"], decision.cdr_token["party_id"]) == ("NL", "CPM")


async def test_a_valid_token_wins_over_an_invalid_local_one_of_the_same_uid(
    uow: UnitOfWorkFactory,
) -> None:
    uid = "04FFEE"
    await _token(uow, uid, valid=False)
    await emsp_token(uow, uid, type="APP_USER")
    decision = await _authorize(uow, Authorizer(OPERATOR), uid)
    assert decision.status is AuthorizationStatus.ALLOWED
    assert decision.source == "ocpi"
    assert decision.cdr_token["party_id"] == "MSP"


# OCPI WhitelistType ----------------------------------------------------------------------------


@pytest.mark.parametrize("whitelist", ["ALWAYS", "ALLOWED"])
async def test_always_and_allowed_tokens_are_decided_here_valid_or_not(
    uow: UnitOfWorkFactory, whitelist: str
) -> None:
    await emsp_token(uow, "OK-1", whitelist=whitelist)
    await emsp_token(uow, "OFF-1", whitelist=whitelist, valid=False)
    issuer = Issuer(AuthorizationStatus.NOT_ALLOWED)
    authorizer = Authorizer(OPERATOR, issuer)
    assert (await _authorize(uow, authorizer, "OK-1")).status is AuthorizationStatus.ALLOWED
    assert (await _authorize(uow, authorizer, "OFF-1")).status is AuthorizationStatus.BLOCKED
    assert issuer.asked == []


async def test_allowed_offline_asks_and_decides_here_only_when_nobody_answers(
    uow: UnitOfWorkFactory,
) -> None:
    await emsp_token(uow, "OFFLINE-OK", whitelist="ALLOWED_OFFLINE")
    await emsp_token(uow, "OFFLINE-OFF", whitelist="ALLOWED_OFFLINE", valid=False)
    refusing = Issuer(AuthorizationStatus.EXPIRED)
    decision = await _authorize(uow, Authorizer(OPERATOR, refusing), "OFFLINE-OK", "LOC-1")
    assert decision.status is AuthorizationStatus.EXPIRED
    assert decision.source == "remote"
    unreachable = Issuer(None)
    authorizer = Authorizer(OPERATOR, unreachable)
    offline = await _authorize(uow, authorizer, "OFFLINE-OK")
    assert offline.status is AuthorizationStatus.ALLOWED
    assert offline.source == "ocpi"
    assert offline.auth_method == "WHITELIST"
    assert (await _authorize(uow, authorizer, "OFFLINE-OFF")).status is (
        AuthorizationStatus.BLOCKED
    )
    assert [uid for uid, _, _ in unreachable.asked] == ["OFFLINE-OK", "OFFLINE-OFF"]


@pytest.mark.parametrize("whitelist", ["ALLOWED_OFFLINE", "NEVER"])
async def test_an_invalid_token_is_still_asked_where_its_whitelist_says_so(
    uow: UnitOfWorkFactory, whitelist: str
) -> None:
    await emsp_token(uow, "REVIVED", whitelist=whitelist, valid=False)
    issuer = Issuer(AuthorizationStatus.ALLOWED)
    decision = await _authorize(uow, Authorizer(OPERATOR, issuer), "REVIVED", "LOC-1")
    assert decision.status is AuthorizationStatus.ALLOWED
    assert decision.auth_method == "AUTH_REQUEST"
    assert len(issuer.asked) == 1


async def test_a_remote_allowed_is_remembered_and_a_refusal_is_not(
    uow: UnitOfWorkFactory,
) -> None:
    await emsp_token(uow, "APP-5", whitelist="NEVER")
    issuer = Issuer(AuthorizationStatus.ALLOWED)
    authorizer = Authorizer(OPERATOR, issuer)
    for location_id in (None, "LOC-1", "LOC-1"):  # Authorize, StartTransaction, Stop
        decision = await _authorize(uow, authorizer, "APP-5", location_id)
        assert decision.authorization_reference == "AUTH-REF-1"
    assert len(issuer.asked) == 1
    await _authorize(uow, authorizer, "APP-6")  # another uid is asked
    assert len(issuer.asked) == 2

    refusing = Issuer(AuthorizationStatus.BLOCKED)
    authorizer = Authorizer(OPERATOR, refusing)
    await _authorize(uow, authorizer, "APP-5", "LOC-1")
    await _authorize(uow, authorizer, "APP-5", "LOC-1")
    assert len(refusing.asked) == 2

    forgetful = Issuer(AuthorizationStatus.ALLOWED)
    authorizer = Authorizer(OPERATOR, forgetful, remote_ttl=0)
    await _authorize(uow, authorizer, "APP-5", "LOC-1")
    await _authorize(uow, authorizer, "APP-5", "LOC-1")
    assert len(forgetful.asked) == 2


# Tokens of OCPI commands -----------------------------------------------------------------------

APP_TOKEN = {
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


async def _command(
    uow: UnitOfWorkFactory,
    *,
    command: str = "START_SESSION",
    id_tag: str = "APP-CMD",
    location_id: str = "LOC-1",
    state: str = "PENDING",
    age: timedelta = timedelta(minutes=1),
    reference: str | None = "CMD-REF",
) -> int:
    """An OCPI command row as the commands module keeps it; returns the partner id."""
    async with uow() as unit:
        partner = OcpiPartner(name=f"emsp-{command}-{state}-{age}", state="REGISTERED")
        unit.session.add(partner)
        await unit.session.flush()
        request: dict[str, Any] = {
            "response_url": "https://emsp.example/cb",
            "token": APP_TOKEN,
            "location_id": location_id,
        }
        if reference is not None:
            request["authorization_reference"] = reference
        created = utcnow() - age
        unit.session.add(
            OcpiCommand(
                id=f"{command}-{state}-{age.total_seconds()}-{location_id}",
                partner_id=partner.id,
                command=command,
                response_url="https://emsp.example/cb",
                request=request,
                id_tag=id_tag,
                state=state,
                deadline=created + timedelta(seconds=30),
                created_at=created,
            )
        )
        await unit.commit()
        return partner.id


@pytest.mark.parametrize("command", ["START_SESSION", "RESERVE_NOW"])
async def test_the_token_of_a_recent_command_is_allowed_without_asking(
    uow: UnitOfWorkFactory, command: str
) -> None:
    partner_id = await _command(uow, command=command)
    issuer = Issuer(AuthorizationStatus.BLOCKED)
    authorizer = Authorizer(OPERATOR, issuer)
    for location_id in ("LOC-1", "loc-1", None):
        decision = await _authorize(uow, authorizer, "APP-CMD", location_id)
        assert decision.status is AuthorizationStatus.ALLOWED
        assert decision.source == "command"
        assert decision.auth_method == "COMMAND"
        assert decision.partner_id == partner_id
        assert decision.authorization_reference == "CMD-REF"
        assert decision.group_id == "APP-GROUP"
        assert decision.cdr_token == {
            "country_code": "DE",
            "party_id": "MSP",
            "uid": "APP-CMD",
            "type": "APP_USER",
            "contract_id": "DE-MSP-APPCMD",
        }
    assert issuer.asked == []


async def test_a_command_wins_over_the_stored_token_of_its_uid(uow: UnitOfWorkFactory) -> None:
    await emsp_token(uow, "APP-CMD", whitelist="NEVER", valid=False)
    await _command(uow, reference=None)
    issuer = Issuer(AuthorizationStatus.BLOCKED)
    decision = await _authorize(uow, Authorizer(OPERATOR, issuer), "APP-CMD", "LOC-1")
    assert decision.source == "command"
    assert decision.allowed is True
    assert decision.authorization_reference is None
    assert issuer.asked == []


async def test_a_command_the_emsp_was_answered_timeout_for_still_stands(
    uow: UnitOfWorkFactory,
) -> None:
    """FIELD-NOTES 15: the station answered too late, but the driver's session is the command's."""
    await _command(uow, state="TIMEOUT")
    issuer = Issuer(AuthorizationStatus.BLOCKED)
    decision = await _authorize(uow, Authorizer(OPERATOR, issuer), "APP-CMD", "LOC-1")
    assert decision.source == "command"
    assert decision.allowed is True
    assert issuer.asked == []


@pytest.mark.parametrize(
    "command",
    [
        {"command": "STOP_SESSION"},
        {"age": timedelta(minutes=16)},
        {"location_id": "LOC-2"},
        {"id_tag": "SOMEONE-ELSE"},
    ],
    ids=["stop-session", "too-old", "elsewhere", "another-token"],
)
async def test_commands_that_do_not_stand_for_this_token_here_and_now_are_ignored(
    uow: UnitOfWorkFactory, command: dict[str, Any]
) -> None:
    await _command(uow, **command)
    issuer = Issuer(AuthorizationStatus.BLOCKED)
    decision = await _authorize(uow, Authorizer(OPERATOR, issuer), "APP-CMD", "LOC-1")
    assert decision.status is AuthorizationStatus.BLOCKED
    assert decision.source == "remote"
    assert len(issuer.asked) == 1
