"""OCPI partners as the core sees them: who is calling, how we reach them, their registration.

The HTTP adapter decodes the ``Authorization`` header; ``identify_caller`` only says which
partner a token belongs to and which token it is (A before registration, the issued one
after). ``PartnerLink`` is what the adapter needs to call a registered partner: its
endpoints, its roles and the token it gave us (decrypted from the ``TokenVault``).

Registration (CHECKLIST 1.3) is stored here; the HTTP exchanges are the adapter's
(``ocpi_api.registration``, ``ocpi_api.modules.credentials``). A partner row goes
INVITED -> REGISTERED -> UNREGISTERED:

- ``invite_partner``: INVITED, ``token_a_hash`` set; token A works once, on versions and
  credentials only.
- They register with us (their POST): ``check_registration``, then ``accept_credentials``
  stores their token (sealed), platform and roles, issues our token (hash kept), kills A.
  Their PUT does the same on a REGISTERED row and rotates our token at once.
- We register with them: ``begin_registration`` stores the token we are about to offer
  (INVITED, hash in ``incoming_token_hash``) so they can read our versions with it during
  our POST, ``complete_registration`` stores what they answered. ``begin_rotation`` /
  ``complete_rotation`` do the same for our PUT: the offered token waits in ``token_a_hash``
  (which always means "opens versions and credentials only") while the old one still works.
  ``abandon_offer`` forgets an offered token when the exchange failed.
- ``unregister_partner``: UNREGISTERED, every token cleared.

Every step is one guarded ``UPDATE`` (state and token in the ``WHERE``), so two racing
requests cannot both succeed and nothing is written half.

Whose tokens a partner may tell us of (``owns``): its own parties (the roles of its
credentials) and, for a hub, the eMSP parties it reported as its clients through
HubClientInfo (``cpms.hub_clients``), whatever their connection status: a hub's
credentials name only the hub (CHECKLIST 1.3), its clients' tokens reach us through it.
A party the hub never reported stays refused. ``identify_caller``, ``partner_link`` and
``partner_links`` load those clients (one query, for hubs only).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, case, or_, select, update
from sqlalchemy.engine import CursorResult

from cpms.documents import format_datetime
from cpms.errors import Conflict, NotFound
from cpms.model import HubClient, OcpiPartner, utcnow
from cpms.passwords import hash_token, new_token
from cpms.secrets import TokenVault
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "Caller",
    "PartnerLink",
    "PartnerPlatform",
    "RegistrationStateError",
    "TokenKind",
    "abandon_offer",
    "accept_credentials",
    "begin_registration",
    "begin_rotation",
    "check_registration",
    "complete_registration",
    "complete_rotation",
    "endpoints_by_module",
    "identify_caller",
    "invite_partner",
    "link_of",
    "list_partners",
    "partner_link",
    "partner_links",
    "partner_summary",
    "unregister_partner",
]


class TokenKind(enum.Enum):
    """Which of a partner's tokens was presented."""

    REGISTRATION = "A"
    """Token A: valid only for versions and credentials, before registration."""
    ISSUED = "C"
    """The token we issued at registration (B or C, depending on who initiated)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated OCPI partner."""

    partner_id: int
    name: str
    token_kind: TokenKind
    roles: tuple[tuple[str, str, str], ...] = ()
    """The partner's (role, country_code, party_id) triples, upper-cased."""
    clients: tuple[tuple[str, str], ...] = ()
    """A hub's eMSP clients (country_code, party_id), upper-cased; empty for others."""

    def owns(self, country_code: str, party_id: str) -> bool:
        """Whether the partner may speak for ``country_code``/``party_id`` (module docstring)."""
        return _owns(self.roles, self.clients, country_code, party_id)


def _owns(
    roles: tuple[tuple[str, str, str], ...],
    clients: tuple[tuple[str, str], ...],
    country_code: str,
    party_id: str,
) -> bool:
    party = (country_code.upper(), party_id.upper())
    return party in clients or any((cc, pid) == party for _, cc, pid in roles)


def _is_hub(partner: OcpiPartner) -> bool:
    return any(role == "HUB" for role, _, _ in _roles(partner))


async def _clients_of(
    uow: UnitOfWork, partners: Sequence[OcpiPartner]
) -> dict[int, tuple[tuple[str, str], ...]]:
    """The eMSP clients each hub among ``partners`` reported (``uow`` entered)."""
    hubs = [partner.id for partner in partners if _is_hub(partner)]
    if not hubs:
        return {}  # no query for partners that are not hubs: the common case
    rows = await uow.session.execute(
        select(HubClient.partner_id, HubClient.country_code, HubClient.party_id)
        .where(HubClient.partner_id.in_(hubs), HubClient.role == "EMSP")
        .order_by(HubClient.id)
    )
    found: dict[int, list[tuple[str, str]]] = {}
    for partner_id, country_code, party_id in rows:
        found.setdefault(partner_id, []).append((country_code.upper(), party_id.upper()))
    return {partner_id: tuple(parties) for partner_id, parties in found.items()}


def _roles(partner: OcpiPartner) -> tuple[tuple[str, str, str], ...]:
    return tuple(
        (
            str(role.get("role", "")).upper(),
            str(role.get("country_code", "")).upper(),
            str(role.get("party_id", "")).upper(),
        )
        for role in partner.roles or ()
    )


async def identify_caller(uow: UnitOfWork, token: str) -> Caller | None:
    """Return who presented ``token``, or None if nobody we know did."""
    digest = hash_token(token)
    async with uow:
        partner = await uow.session.scalar(
            select(OcpiPartner).where(
                or_(OcpiPartner.incoming_token_hash == digest, OcpiPartner.token_a_hash == digest),
                OcpiPartner.state != "UNREGISTERED",
            )
        )
        if partner is None:
            return None
        # Only a REGISTERED partner's issued token opens the functional modules: the token
        # we offer during our own POST (INVITED row) serves versions and credentials only.
        issued = partner.state == "REGISTERED" and partner.incoming_token_hash == digest
        clients = (await _clients_of(uow, [partner])).get(partner.id, ()) if issued else ()
    kind = TokenKind.ISSUED if issued else TokenKind.REGISTRATION
    return Caller(
        partner_id=partner.id,
        name=partner.name,
        token_kind=kind,
        roles=_roles(partner),
        clients=clients,
    )


@dataclass(frozen=True, slots=True)
class PartnerLink:
    """How to call one registered partner."""

    partner_id: int
    name: str
    token: str
    """The token the partner gave us (their token B or C), decrypted."""
    auth_base64: bool
    version: str | None
    endpoints: dict[str, dict[str, str]] = field(default_factory=dict)
    """``{module identifier: {role: url}}`` from the partner's version details."""
    roles: tuple[tuple[str, str, str], ...] = ()
    clients: tuple[tuple[str, str], ...] = ()
    """A hub's eMSP clients (country_code, party_id), upper-cased; empty for others (and
    in a link made by ``link_of`` alone: ``partner_link``/``partner_links`` fill it)."""

    def endpoint(self, module: str, role: str) -> str | None:
        """The partner's URL of ``module`` in ``role`` (e.g. ``sessions``, ``RECEIVER``)."""
        return self.endpoints.get(module, {}).get(role)

    @property
    def party(self) -> tuple[str, str] | None:
        """The partner's first (country_code, party_id), for ``OCPI-to-*`` headers."""
        return (self.roles[0][1], self.roles[0][2]) if self.roles else None

    @property
    def hub(self) -> bool:
        """Whether the partner is a roaming hub (a role HUB in its credentials)."""
        return any(role == "HUB" for role, _, _ in self.roles)

    def owns(self, country_code: str, party_id: str) -> bool:
        """Whether the partner may speak for ``country_code``/``party_id`` (module docstring)."""
        return _owns(self.roles, self.clients, country_code, party_id)


def link_of(
    partner: OcpiPartner, vault: TokenVault, clients: tuple[tuple[str, str], ...] = ()
) -> PartnerLink:
    """Return the link of a registered partner row."""
    if partner.outgoing_token is None:
        raise NotFound("registered partner", partner.id)
    return PartnerLink(
        partner_id=partner.id,
        name=partner.name,
        token=vault.open(partner.outgoing_token),
        auth_base64=partner.auth_base64,
        version=partner.version,
        endpoints=dict(partner.endpoints or {}),
        roles=_roles(partner),
        clients=clients,
    )


async def partner_link(uow: UnitOfWork, vault: TokenVault, partner_id: int) -> PartnerLink:
    """Return the link of one registered partner (``uow`` entered)."""
    partner = await uow.session.get(OcpiPartner, partner_id)
    if partner is None or partner.state != "REGISTERED":
        raise NotFound("registered partner", partner_id)
    clients = await _clients_of(uow, [partner])
    return link_of(partner, vault, clients.get(partner.id, ()))


async def partner_links(
    uow: UnitOfWork,
    vault: TokenVault,
    *,
    module: str | None = None,
    role: str | None = None,
    only: Sequence[int] | None = None,
) -> list[PartnerLink]:
    """Registered partners (``uow`` entered), those with ``module``/``role`` if given."""
    query = select(OcpiPartner).where(OcpiPartner.state == "REGISTERED").order_by(OcpiPartner.id)
    if only is not None:
        query = query.where(OcpiPartner.id.in_(list(only)))
    partners = list(await uow.session.scalars(query))
    clients = await _clients_of(uow, partners)
    links = [link_of(partner, vault, clients.get(partner.id, ())) for partner in partners]
    if module is not None:
        links = [
            link
            for link in links
            if (link.endpoint(module, role) if role else link.endpoints.get(module))
        ]
    return links


def endpoints_by_module(endpoints: Sequence[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Index OCPI ``Endpoint`` objects as ``{identifier: {role: url}}``."""
    index: dict[str, dict[str, str]] = {}
    for endpoint in endpoints:
        identifier, role = endpoint.get("identifier"), endpoint.get("role")
        url = endpoint.get("url")
        if isinstance(identifier, str) and isinstance(role, str) and isinstance(url, str):
            index.setdefault(identifier, {})[role.upper()] = url
    return index


# Registration ---------------------------------------------------------------------------------


class RegistrationStateError(Conflict):
    """The partner's registration is not in the state the request needs (OCPI answers 405)."""


@dataclass(frozen=True, slots=True)
class PartnerPlatform:
    """What a partner's versions and version details told us, and how it wants its token."""

    versions_url: str
    version: str
    endpoints: dict[str, dict[str, str]]
    """``{module identifier: {role: url}}``, see ``endpoints_by_module``."""
    auth_base64: bool = True
    """Send our token Base64-encoded (2.2.x) or raw (what the partner accepted)."""


_NOT_INVITED = (
    "already registered (or the token is not a token A): "
    "PUT updates the credentials, DELETE unregisters"
)
_NOT_REGISTERED = "not registered with this token: POST the credentials with token A first"


async def invite_partner(uow: UnitOfWork, name: str = "") -> tuple[int, str]:
    """Create an INVITED partner; return its id and its token A (shown once, kept hashed).

    Without a ``name`` the partner is named after its business at registration.
    """
    token = new_token()
    async with uow:
        partner = OcpiPartner(name=name[:100], state="INVITED", token_a_hash=hash_token(token))
        uow.session.add(partner)
        await uow.commit()
        return partner.id, token


def _may(token: str, *, registered: bool) -> list[ColumnElement[bool]]:
    """The rows ``token`` may POST credentials on (a token A), or PUT/DELETE on."""
    digest = hash_token(token)
    if registered:
        return [OcpiPartner.state == "REGISTERED", OcpiPartner.incoming_token_hash == digest]
    return [OcpiPartner.state == "INVITED", OcpiPartner.token_a_hash == digest]


async def check_registration(
    uow: UnitOfWork, partner_id: int, token: str, *, registered: bool
) -> None:
    """Raise ``RegistrationStateError`` unless ``token`` may register (POST) or update it.

    ``registered=False``: the partner is INVITED and ``token`` is its token A.
    ``registered=True``: the partner is REGISTERED and ``token`` is the one we issued.
    Checked before the partner is called, so a refused request costs no call to it.
    """
    async with uow:
        found = await uow.session.scalar(
            select(OcpiPartner.id).where(
                OcpiPartner.id == partner_id, *_may(token, registered=registered)
            )
        )
    if found is None:
        raise RegistrationStateError(_NOT_REGISTERED if registered else _NOT_INVITED)


def _registered(
    vault: TokenVault,
    their_token: str,
    roles: Sequence[dict[str, Any]],
    platform: PartnerPlatform,
) -> dict[str, Any]:
    """The column values of a partner once its credentials are known."""
    business = str((roles[0].get("business_details") or {}).get("name") or "partner")[:100]
    return {
        "state": "REGISTERED",
        "outgoing_token": vault.seal(their_token),
        "auth_base64": platform.auth_base64,
        "versions_url": platform.versions_url,
        "version": platform.version,
        "endpoints": platform.endpoints,
        "roles": list(roles),
        "registered_at": utcnow(),
        "updated_at": utcnow(),
        # A partner invited without a name is called after its business.
        "name": case((OcpiPartner.name == "", business), else_=OcpiPartner.name),
    }


async def _guarded_update(
    uow: UnitOfWork,
    partner_id: int,
    guard: Sequence[ColumnElement[bool]],
    values: dict[str, Any],
    refusal: str,
) -> None:
    """Apply ``values`` to the partner if ``guard`` holds, in one statement; else refuse."""
    async with uow:
        result = await uow.session.execute(
            update(OcpiPartner)
            .where(OcpiPartner.id == partner_id, *guard)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if not isinstance(result, CursorResult) or result.rowcount != 1:
            raise RegistrationStateError(refusal)
        await uow.commit()


async def accept_credentials(
    uow: UnitOfWork,
    vault: TokenVault,
    partner_id: int,
    *,
    presented: str,
    their_token: str,
    roles: Sequence[dict[str, Any]],
    platform: PartnerPlatform,
    registered: bool,
) -> str:
    """Store the credentials a partner POSTed (or PUT) to us; return the token we issue it.

    ``presented`` is the token of the request: token A for a POST (it dies here), the
    issued token for a PUT (it stops working at once, replaced by the returned one).
    """
    issued = new_token()
    values = _registered(vault, their_token, roles, platform)
    values |= {"incoming_token_hash": hash_token(issued), "token_a_hash": None}
    refusal = _NOT_REGISTERED if registered else _NOT_INVITED
    await _guarded_update(uow, partner_id, _may(presented, registered=registered), values, refusal)
    return issued


async def begin_registration(uow: UnitOfWork, *, name: str, versions_url: str) -> tuple[int, str]:
    """Create the partner we are about to register with; return its id and our new token.

    The token is accepted (versions and credentials only) before we send it, because the
    partner reads our versions with it while it handles our POST (CHECKLIST 1.3 step 3).
    """
    token = new_token()
    async with uow:
        partner = OcpiPartner(
            name=name[:100],
            state="INVITED",
            incoming_token_hash=hash_token(token),
            versions_url=versions_url[:255],
        )
        uow.session.add(partner)
        await uow.commit()
        return partner.id, token


async def complete_registration(
    uow: UnitOfWork,
    vault: TokenVault,
    partner_id: int,
    *,
    our_token: str,
    their_token: str,
    roles: Sequence[dict[str, Any]],
    platform: PartnerPlatform,
) -> None:
    """Store the credentials a partner answered our POST with: it is REGISTERED."""
    guard = [
        OcpiPartner.state == "INVITED",
        OcpiPartner.incoming_token_hash == hash_token(our_token),
    ]
    values = _registered(vault, their_token, roles, platform)
    await _guarded_update(
        uow, partner_id, guard, values, "the registration was abandoned meanwhile"
    )


async def begin_rotation(uow: UnitOfWork, partner_id: int) -> str:
    """Offer a registered partner a new token; return it. The old one works until completion.

    The new token waits in ``token_a_hash``, so until ``complete_rotation`` it opens versions
    and credentials only: what the partner needs while it handles our PUT.
    """
    token = new_token()
    await _guarded_update(
        uow,
        partner_id,
        [OcpiPartner.state == "REGISTERED"],
        {"token_a_hash": hash_token(token), "updated_at": utcnow()},
        f"partner {partner_id} is not registered",
    )
    return token


async def complete_rotation(
    uow: UnitOfWork,
    vault: TokenVault,
    partner_id: int,
    *,
    our_token: str,
    their_token: str,
    roles: Sequence[dict[str, Any]],
    platform: PartnerPlatform,
) -> None:
    """Store what a partner answered our PUT; the new token replaces the old one at once."""
    digest = hash_token(our_token)
    guard = [OcpiPartner.state == "REGISTERED", OcpiPartner.token_a_hash == digest]
    values = _registered(vault, their_token, roles, platform)
    values |= {"incoming_token_hash": digest, "token_a_hash": None}
    await _guarded_update(uow, partner_id, guard, values, "the update was abandoned meanwhile")


async def abandon_offer(uow: UnitOfWork, partner_id: int, our_token: str) -> None:
    """Stop accepting a token we offered in a registration or update that failed.

    A registration that failed leaves the partner UNREGISTERED (kept, so the operator sees
    the attempt); a failed update leaves the registration as it was.
    """
    digest = hash_token(our_token)
    async with uow:
        await uow.session.execute(
            update(OcpiPartner)
            .where(
                OcpiPartner.id == partner_id,
                OcpiPartner.state == "INVITED",
                OcpiPartner.incoming_token_hash == digest,
            )
            .values(state="UNREGISTERED", incoming_token_hash=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        await uow.session.execute(
            update(OcpiPartner)
            .where(OcpiPartner.id == partner_id, OcpiPartner.token_a_hash == digest)
            .values(token_a_hash=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        await uow.commit()


async def unregister_partner(uow: UnitOfWork, partner_id: int, *, token: str | None = None) -> None:
    """Make the partner UNREGISTERED and forget every token: theirs and ours.

    With ``token`` (their DELETE to us) the partner must be REGISTERED under that token;
    without it (the operator) any partner not yet unregistered, an invitation included.
    """
    if token is not None:
        guard, refusal = _may(token, registered=True), _NOT_REGISTERED
    else:
        guard = [OcpiPartner.state != "UNREGISTERED"]
        refusal = f"partner {partner_id} does not exist or is already unregistered"
    values = {
        "state": "UNREGISTERED",
        "token_a_hash": None,
        "incoming_token_hash": None,
        "outgoing_token": None,
        "updated_at": utcnow(),
    }
    await _guarded_update(uow, partner_id, guard, values, refusal)


async def list_partners(uow: UnitOfWork) -> list[OcpiPartner]:
    """Every partner, oldest first."""
    async with uow:
        return list(await uow.session.scalars(select(OcpiPartner).order_by(OcpiPartner.id)))


def partner_summary(partner: OcpiPartner) -> dict[str, Any]:
    """A partner as the operator sees it: never a token, not even a hash."""
    return {
        "id": partner.id,
        "name": partner.name,
        "state": partner.state,
        "version": partner.version,
        "versions_url": partner.versions_url,
        "roles": [
            {
                "role": role.get("role"),
                "country_code": role.get("country_code"),
                "party_id": role.get("party_id"),
                "name": (role.get("business_details") or {}).get("name"),
            }
            for role in partner.roles or ()
        ],
        "modules": sorted(partner.endpoints or {}),
        "auth_base64": partner.auth_base64,
        "registered_at": (
            format_datetime(partner.registered_at) if partner.registered_at else None
        ),
    }
