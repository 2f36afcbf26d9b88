"""Authorization: may this token charge here? One service for every way a token is presented.

OCPP Authorize and StartTransaction (1.6), Authorize and TransactionEvent (2.0.1) and remote
starts all ask ``Authorizer.authorize``. Tokens are looked up in the token table, where the
operator's own tokens (``source='local'``) and tokens eMSPs push over OCPI (``source='ocpi'``)
live side by side. A token whose ``whitelist`` says the eMSP must be asked every time, or a
token nobody pushed, goes to the ``RemoteAuthorizer`` when one is plugged in (OCPI real-time
authorization); without one, it is not allowed.

Decisions use OCPI's ``AllowedType`` vocabulary plus ``UNKNOWN``; the gateway maps them to
its OCPP version's status values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select

from cpms.model import Token
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "Authorization",
    "AuthorizationStatus",
    "Authorizer",
    "Operator",
    "RemoteAuthorizer",
    "cdr_token_for",
]

# Search order when several tokens share a uid: cards first, as OCPP idTags mostly are.
_TYPE_ORDER = ("RFID", "APP_USER", "AD_HOC_USER", "OTHER")


class AuthorizationStatus(enum.StrEnum):
    """The answer to "may this token charge?" (OCPI AllowedType plus UNKNOWN)."""

    ALLOWED = "ALLOWED"
    BLOCKED = "BLOCKED"
    EXPIRED = "EXPIRED"
    NO_CREDIT = "NO_CREDIT"
    NOT_ALLOWED = "NOT_ALLOWED"
    UNKNOWN = "UNKNOWN"
    """No token with this uid is known here, and nobody we could ask knows it."""


@dataclass(frozen=True, slots=True)
class Operator:
    """Who we are as a CPO: the party that issues unknown tokens' CdrTokens and sessions."""

    country_code: str
    party_id: str


@dataclass(frozen=True, slots=True)
class Authorization:
    """A decision about one presented token."""

    status: AuthorizationStatus
    uid: str
    cdr_token: dict[str, Any]
    """OCPI CdrToken to put on the session (the token's own, or ours for an unknown uid)."""
    group_id: str | None = None
    """Tokens of one group may stop each other's sessions (OCPP parentIdTag)."""
    partner_id: int | None = None
    """The eMSP that issued the token, when it came over OCPI."""
    authorization_reference: str | None = None
    source: str = "unknown"
    """Where the decision came from: "local", "ocpi", "remote" or "unknown"."""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        """Whether charging may start."""
        return self.status is AuthorizationStatus.ALLOWED


class RemoteAuthorizer(Protocol):
    """Asks a token's issuer in real time (OCPI ``POST tokens/{uid}/authorize``)."""

    async def authorize(
        self, uid: str, token: Token | None, *, location_id: str | None
    ) -> Authorization | None:
        """Return the issuer's decision, or None when nobody could be asked."""
        ...


def cdr_token_for(token: Token) -> dict[str, Any]:
    """Return the OCPI CdrToken of a known token."""
    return {
        "country_code": token.country_code,
        "party_id": token.party_id,
        "uid": token.uid,
        "type": token.type,
        "contract_id": token.contract_id,
    }


def _unknown_cdr_token(uid: str, operator: Operator) -> dict[str, Any]:
    return {
        "country_code": operator.country_code,
        "party_id": operator.party_id,
        "uid": uid,
        "type": "OTHER",
        "contract_id": uid,
    }


class Authorizer:
    """Decides about presented tokens; see the module docstring."""

    def __init__(
        self,
        operator: Operator,
        remote: RemoteAuthorizer | None = None,
        *,
        accept_unknown: bool = False,
    ) -> None:
        self.operator = operator
        self.remote = remote
        self.accept_unknown = accept_unknown
        """Allow uids nobody issued (free charging, demos); they still get a CdrToken."""

    async def authorize(
        self, uow: UnitOfWork, uid: str, *, location_id: str | None = None
    ) -> Authorization:
        """Decide whether ``uid`` may charge (at ``location_id``); ``uow`` must be entered."""
        token = await self._find(uow, uid)
        if token is None or token.whitelist == "NEVER":
            if self.remote is not None:
                decision = await self.remote.authorize(uid, token, location_id=location_id)
                if decision is not None:
                    return decision
            if token is None:
                status = (
                    AuthorizationStatus.ALLOWED
                    if self.accept_unknown
                    else AuthorizationStatus.UNKNOWN
                )
                return Authorization(status, uid, _unknown_cdr_token(uid, self.operator))
            return self._decision(token, AuthorizationStatus.NOT_ALLOWED, "issuer unreachable")
        if not token.valid:
            return self._decision(token, AuthorizationStatus.BLOCKED, "token is not valid")
        return self._decision(token, AuthorizationStatus.ALLOWED)

    @staticmethod
    def _decision(token: Token, status: AuthorizationStatus, why: str = "") -> Authorization:
        return Authorization(
            status,
            token.uid,
            cdr_token_for(token),
            group_id=token.group_id,
            partner_id=token.partner_id,
            source=token.source,
            details={"reason": why} if why else {},
        )

    @staticmethod
    async def _find(uow: UnitOfWork, uid: str) -> Token | None:
        # Exact match: OCPP calls idTags case-insensitive, but eMSPs' uids are case-exact.
        tokens = list(await uow.session.scalars(select(Token).where(Token.uid == uid)))
        if not tokens:
            return None

        def rank(token: Token) -> tuple[bool, bool, int]:
            order = _TYPE_ORDER.index(token.type) if token.type in _TYPE_ORDER else 9
            return (not token.valid, token.source != "local", order)

        return min(tokens, key=rank)
