"""Authorization over the token table on a real database, without OCPP.

Covers ``cpms.authorization.Authorizer``: valid, invalid and unknown tokens, the group id
passed through, unknown tokens accepted with our own CdrToken when configured, tokens that
must always be asked of their issuer (``whitelist`` NEVER), a real-time issuer consulted
for unknown and NEVER tokens with its answer used or, when it cannot be reached, the local
decision, and which token wins when several share a uid.
"""

from __future__ import annotations

from typing import Any

from cpms.authorization import Authorization, AuthorizationStatus, Authorizer, Operator
from cpms.model import Token, utcnow
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWorkFactory

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


async def _emsp_token(uow: UnitOfWorkFactory, uid: str, **fields: Any) -> None:
    """A token an eMSP pushed over OCPI (the OCPI module is not needed to store one)."""
    values: dict[str, Any] = {
        "country_code": "DE",
        "party_id": "MSP",
        "uid": uid,
        "type": "RFID",
        "contract_id": f"DE-MSP-{uid}",
        "issuer": "Some eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "source": "ocpi",
        "last_updated": utcnow(),
        **fields,
    }
    async with uow() as unit:
        unit.session.add(Token(**values))
        await unit.commit()


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

    async def authorize(
        self, uid: str, token: Token | None, *, location_id: str | None
    ) -> Authorization | None:
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


async def test_uids_are_matched_exactly(uow: UnitOfWorkFactory) -> None:
    await _token(uow, "AbC123")
    authorizer = Authorizer(OPERATOR)
    assert (await _authorize(uow, authorizer, "AbC123")).allowed is True
    assert (await _authorize(uow, authorizer, "abc123")).status is AuthorizationStatus.UNKNOWN


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
    await _emsp_token(uow, "APP-1", whitelist="NEVER")
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
    await _emsp_token(uow, "APP-2", whitelist="NEVER")
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
    await _emsp_token(uow, "APP-3", whitelist="NEVER")
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
    await _emsp_token(uow, "APP-4", whitelist="ALLOWED")
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
    await _emsp_token(uow, uid)
    await _emsp_token(uow, uid, party_id="OTH", type="APP_USER")
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
    await _emsp_token(uow, uid, type="APP_USER")
    decision = await _authorize(uow, Authorizer(OPERATOR), uid)
    assert decision.status is AuthorizationStatus.ALLOWED
    assert decision.source == "ocpi"
    assert decision.cdr_token["party_id"] == "MSP"
