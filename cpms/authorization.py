"""Authorization: may this token charge here? One service for every way a token is presented.

OCPP Authorize and StartTransaction (1.6), Authorize and TransactionEvent (2.0.1) and remote
starts all ask ``Authorizer.authorize``. Tokens are looked up in the token table, where the
operator's own tokens (``source='local'``) and tokens eMSPs push over OCPI (``source='ocpi'``)
live side by side. In order:

1. A token an eMSP sent us in an OCPI START_SESSION or RESERVE_NOW command in the last 15
   minutes (at this location, when the location is known) is allowed without asking anyone:
   the eMSP authorized it before sending the command, and OCPI forbids asking again
   (CHECKLIST 7.4). The session gets the command's token and authorization reference.
2. A known token is decided by its ``whitelist`` (OCPI WhitelistType, CHECKLIST 6.3):

   - ``ALWAYS``: locally (valid: ALLOWED, else BLOCKED); real-time asking is not allowed.
   - ``ALLOWED``: locally as well. The eMSP lets us choose; we choose the cache, because
     the driver is waiting at the charger and the eMSP told us the cache is good enough.
   - ``ALLOWED_OFFLINE``: the eMSP is asked; only when it cannot be reached do we decide
     locally (valid: ALLOWED, else BLOCKED).
   - ``NEVER``: the eMSP is asked; when it cannot be reached, NOT_ALLOWED.

   ``valid=false`` does not spare asking where the whitelist says to ask: the eMSP may
   have re-validated the token since it last told us.
3. A uid nobody pushed goes to the ``RemoteAuthorizer`` (which asks every eMSP we could
   ask); when nobody knows it, it is allowed with our own CdrToken if ``accept_unknown``,
   else UNKNOWN.

Decisions use OCPI's ``AllowedType`` vocabulary plus ``UNKNOWN``; the gateway maps them to
its OCPP version's status values.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import func, select

from cpms.errors import NotFound
from cpms.model import ChargingStation, OcpiCommand, Token, utcnow
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "COMMAND_GRACE",
    "REMOTE_DECISION_TTL",
    "Authorization",
    "AuthorizationStatus",
    "Authorizer",
    "Operator",
    "PendingDecision",
    "Presented",
    "RemoteAuthorizer",
    "cdr_token_for",
    "unknown_cdr_token",
]

# Search order when several tokens share a uid: cards first, as OCPP idTags mostly are.
_TYPE_ORDER = ("RFID", "APP_USER", "AD_HOC_USER", "OTHER")

#: How long after an OCPI START_SESSION / RESERVE_NOW its token needs no authorization at
#: the charger (OCPI 2.2.1 Commands: "no real-time auth ... within 15 minutes").
COMMAND_GRACE = timedelta(minutes=15)
#: Commands whose token the eMSP authorized before sending them.
_AUTHORIZING_COMMANDS = ("START_SESSION", "RESERVE_NOW")

#: Seconds a remote ALLOWED stands for the same uid and location; see ``_RemoteDecisions``.
REMOTE_DECISION_TTL = 180.0
#: Remote decisions kept at most; beyond it the oldest go (a bound, not a tuning knob).
_REMOTE_DECISIONS_MAX = 10_000


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


#: OCPI AuthMethod of a session, by where its authorization came from.
_AUTH_METHODS = {"command": "COMMAND", "remote": "AUTH_REQUEST"}


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
    """Where the decision came from: "local" or "ocpi" (the token table), "remote" (the
    eMSP answered in real time), "command" (an eMSP's START_SESSION or RESERVE_NOW), or
    "unknown" (nobody knows the uid)."""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        """Whether charging may start."""
        return self.status is AuthorizationStatus.ALLOWED

    @property
    def auth_method(self) -> str:
        """The OCPI AuthMethod of a session started with this decision."""
        return _AUTH_METHODS.get(self.source, "WHITELIST")


class RemoteAuthorizer(Protocol):
    """Asks a token's issuer in real time (OCPI ``POST tokens/{uid}/authorize``).

    Two steps, so no database connection is held while an eMSP takes its time: ``issuers``
    reads whom to ask inside the caller's unit of work; ``ask`` asks them with none open.
    """

    async def issuers(self, uow: UnitOfWork, token: Token | None) -> Sequence[object]:
        """Whom to ask about ``token`` (None: a uid nobody pushed); empty if nobody can be."""
        ...

    async def ask(
        self, issuers: Sequence[object], uid: str, token: Token | None, *, location_id: str | None
    ) -> Authorization | None:
        """Return the issuers' decision, or None when none of them answered."""
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


def unknown_cdr_token(uid: str, operator: Operator) -> dict[str, Any]:
    """Return the OCPI CdrToken of a uid nobody issued (ours, type OTHER)."""
    return {
        "country_code": operator.country_code,
        "party_id": operator.party_id,
        "uid": uid,
        "type": "OTHER",
        "contract_id": uid,
    }


class _RemoteDecisions:
    """Remote ALLOWED decisions of the last few minutes, per (uid, location).

    A station sends Authorize, then StartTransaction for the same idTag moments later, and
    StopTransaction may carry it again. Only the first needs to ask the eMSP: it has just said
    yes for this uid here, so asking again would add nothing but a wait the station's answer
    (and its driver) would sit through. Only ALLOWED is kept: a refusal must not
    outlive the eMSP changing its mind. The memory is per process, which is enough because a
    station's messages all reach the node that holds its websocket.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._kept: dict[tuple[str, str | None], tuple[float, Authorization]] = {}

    def get(self, uid: str, location_id: str | None) -> Authorization | None:
        now = time.monotonic()
        # An Authorize carries no location (OCPP 1.6); the start that follows at a known
        # location is the same driver at the same charger.
        for key in ((uid, location_id), (uid, None)):
            kept = self._kept.get(key)
            if kept is not None and kept[0] > now:
                return kept[1]
        return None

    def put(self, uid: str, location_id: str | None, decision: Authorization) -> None:
        now = time.monotonic()
        if len(self._kept) >= _REMOTE_DECISIONS_MAX:
            self._kept = {k: v for k, v in self._kept.items() if v[0] > now}
            while len(self._kept) >= _REMOTE_DECISIONS_MAX:
                del self._kept[next(iter(self._kept))]
        self._kept[(uid, location_id)] = (now + self.ttl, decision)


class Authorizer:
    """Decides about presented tokens; see the module docstring."""

    def __init__(
        self,
        operator: Operator,
        remote: RemoteAuthorizer | None = None,
        *,
        accept_unknown: bool = False,
        remote_ttl: float = REMOTE_DECISION_TTL,
    ) -> None:
        self.operator = operator
        self.remote = remote
        self.accept_unknown = accept_unknown
        """Allow uids nobody issued (free charging, demos); they still get a CdrToken."""
        self._remembered = _RemoteDecisions(remote_ttl)

    async def authorize(
        self, uow: UnitOfWork, uid: str, *, location_id: str | None = None
    ) -> Authorization:
        """Decide whether ``uid`` may charge (at ``location_id``); ``uow`` must be entered.

        Holds ``uow`` while an eMSP is asked; the gateway uses ``prepare`` and
        ``PendingDecision.decide`` instead, so its connection is back in the pool first.
        """
        return await (await self.prepare(uow, uid, location_id=location_id)).decide()

    async def prepare(
        self, uow: UnitOfWork, uid: str, *, location_id: str | None = None
    ) -> PendingDecision:
        """Read all the database says about ``uid``; ``decide()`` then needs no connection."""
        return (await self.prepare_many(uow, [(uid, location_id)]))[0]

    async def prepare_many(
        self, uow: UnitOfWork, asks: Sequence[tuple[str, str | None]]
    ) -> list[PendingDecision]:
        """``prepare`` for many ``(uid, location_id)`` pairs, in their order.

        One SELECT of recent commands and one of tokens serve them all; whom to ask is read
        once per token (once for every uid nobody pushed).
        """
        commands = await _recent_commands(uow, {uid for uid, _ in asks})
        commanded = [
            _command_decision(commands.get(uid, ()), uid, location_id) for uid, location_id in asks
        ]
        wanted = {
            uid.lower()
            for (uid, _), decision in zip(asks, commanded, strict=True)
            if decision is None
        }
        tokens = await _tokens(uow, wanted) if wanted else {}
        issuers_of: dict[int, Sequence[object]] = {}
        prepared: list[PendingDecision] = []
        for (uid, location_id), decision in zip(asks, commanded, strict=True):
            if decision is not None:
                prepared.append(PendingDecision(self, uid, location_id, None, decision, ()))
                continue
            token = _best_token(tokens.get(uid.lower(), ()), uid)
            if token is not None and token.whitelist in ("ALWAYS", "ALLOWED"):
                prepared.append(
                    PendingDecision(self, uid, location_id, token, self._local(token), ())
                )
                continue
            issuers: Sequence[object] = ()
            if self.remote is not None and self._remembered.get(uid, location_id) is None:
                # Keyed by the token object (the session holds one per row); every uid
                # nobody pushed shares the key of None, and so its issuers.
                key = id(token)
                if key not in issuers_of:
                    issuers_of[key] = await self.remote.issuers(uow, token)
                issuers = issuers_of[key]
            prepared.append(PendingDecision(self, uid, location_id, token, None, issuers))
        return prepared

    async def prepare_at_stations(
        self, uow: UnitOfWork, presented: Sequence[Presented]
    ) -> list[PendingDecision]:
        """``prepare_many`` for tokens presented at stations, each at its station's location.

        A ``GroupWork`` for ``cpms.group_commit.GroupReader``: a reconnect storm's
        StartTransactions are decided with three SELECTs a batch rather than three each.
        Raises ``NotFound`` for a station that does not exist (the reader then retries each
        item alone, so only its caller gets the error).
        """
        rows = await uow.session.execute(
            select(ChargingStation.id, ChargingStation.location_id).where(
                ChargingStation.id.in_(sorted({item.station_id for item in presented}))
            )
        )
        locations: dict[str, str] = {station_id: location_id for station_id, location_id in rows}
        for item in presented:
            if item.station_id not in locations:
                raise NotFound("station", item.station_id)
        return await self.prepare_many(
            uow, [(item.uid, locations[item.station_id]) for item in presented]
        )

    async def _settle(self, pending: PendingDecision) -> Authorization:
        """The decision of a prepared ``pending`` that the token table alone did not settle."""
        uid, token = pending.uid, pending.token
        decision = await self._ask(pending)
        if decision is not None:
            return decision
        if token is None:
            status = (
                AuthorizationStatus.ALLOWED if self.accept_unknown else AuthorizationStatus.UNKNOWN
            )
            return Authorization(status, uid, unknown_cdr_token(uid, self.operator))
        if token.whitelist == "ALLOWED_OFFLINE":
            return self._local(token, offline=True)
        return self._decision(token, AuthorizationStatus.NOT_ALLOWED, "issuer unreachable")

    async def _ask(self, pending: PendingDecision) -> Authorization | None:
        remembered = self._remembered.get(pending.uid, pending.location_id)
        if remembered is not None:
            return remembered
        if self.remote is None or not pending.issuers:
            return None
        decision = await self.remote.ask(
            pending.issuers, pending.uid, pending.token, location_id=pending.location_id
        )
        if decision is not None and decision.allowed:
            self._remembered.put(pending.uid, pending.location_id, decision)
        return decision

    def _local(self, token: Token, *, offline: bool = False) -> Authorization:
        if not token.valid:
            return self._decision(token, AuthorizationStatus.BLOCKED, "token is not valid")
        why = "issuer unreachable; its token may charge offline" if offline else ""
        return self._decision(token, AuthorizationStatus.ALLOWED, why)

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


@dataclass(frozen=True, slots=True)
class Presented:
    """A token presented at a station: its uid, and the station (whose location counts)."""

    station_id: str
    uid: str


async def _recent_commands(uow: UnitOfWork, uids: set[str]) -> dict[str, list[OcpiCommand]]:
    """The recent START_SESSION / RESERVE_NOW commands naming each uid, newest first."""
    commands = await uow.session.scalars(
        select(OcpiCommand)
        .where(
            OcpiCommand.id_tag.in_(sorted(uids)),
            # Also one the eMSP was answered TIMEOUT for: the driver may still plug in,
            # and that session is the command's (FIELD-NOTES 15).
            OcpiCommand.command.in_(_AUTHORIZING_COMMANDS),
            OcpiCommand.created_at >= utcnow() - COMMAND_GRACE,
        )
        .order_by(OcpiCommand.created_at.desc())
    )
    by_uid: dict[str, list[OcpiCommand]] = {}
    for command in commands:
        by_uid.setdefault(command.id_tag or "", []).append(command)
    return by_uid


def _command_decision(
    commands: Sequence[OcpiCommand], uid: str, location_id: str | None
) -> Authorization | None:
    """The decision an eMSP's recent command for ``uid`` (at ``location_id``) stands for."""
    for command in commands:
        request = command.request or {}
        wanted = str(request.get("location_id") or "")
        if location_id is not None and wanted.upper() != location_id.upper():
            continue
        token = request.get("token") or {}
        return Authorization(
            AuthorizationStatus.ALLOWED,
            uid,
            {
                name: token.get(name)
                for name in ("country_code", "party_id", "uid", "type", "contract_id")
            },
            group_id=token.get("group_id"),
            partner_id=command.partner_id,
            authorization_reference=request.get("authorization_reference"),
            source="command",
            details={"command": command.command, "command_id": command.id},
        )
    return None


async def _tokens(uow: UnitOfWork, lowered: set[str]) -> dict[str, list[Token]]:
    """The tokens whose uid is one of ``lowered`` in any case, by lower-cased uid."""
    # OCPP idTags are case-insensitive: a reader may send a card's hex uid in lower case.
    tokens = await uow.session.scalars(
        select(Token).where(func.lower(Token.uid).in_(sorted(lowered)))
    )
    by_uid: dict[str, list[Token]] = {}
    for token in tokens:
        by_uid.setdefault(token.uid.lower(), []).append(token)
    return by_uid


def _best_token(tokens: Sequence[Token], uid: str) -> Token | None:
    """The token a presented ``uid`` stands for, among those sharing it in any case."""
    if not tokens:
        return None

    def rank(token: Token) -> tuple[bool, bool, bool, int]:
        # A token spelt exactly as presented first, then valid, ours, and cards before others.
        order = _TYPE_ORDER.index(token.type) if token.type in _TYPE_ORDER else 9
        return (token.uid != uid, not token.valid, token.source != "local", order)

    return min(tokens, key=rank)


@dataclass(frozen=True, slots=True)
class PendingDecision:
    """What the token table says about a uid, and whom to ask if it does not settle it."""

    authorizer: Authorizer
    uid: str
    location_id: str | None
    token: Token | None
    settled: Authorization | None
    """The decision, when the database alone made it (a command's token, a cached token)."""
    issuers: Sequence[object]

    async def decide(self) -> Authorization:
        """The decision, asking the issuers in real time where needed (no database needed)."""
        if self.settled is not None:
            return self.settled
        return await self.authorizer._settle(self)
