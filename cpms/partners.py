"""OCPI partners as the core sees them: who is calling, and how we reach them.

The HTTP adapter decodes the ``Authorization`` header; ``identify_caller`` only says which
partner a token belongs to and which token it is (A before registration, the issued one
after). ``PartnerLink`` is what the adapter needs to call a registered partner: its
endpoints, its roles and the token it gave us (decrypted from the ``TokenVault``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select

from cpms.errors import NotFound
from cpms.model import OcpiPartner
from cpms.passwords import hash_token
from cpms.secrets import TokenVault
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "Caller",
    "PartnerLink",
    "TokenKind",
    "endpoints_by_module",
    "identify_caller",
    "link_of",
    "partner_link",
    "partner_links",
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

    def owns(self, country_code: str, party_id: str) -> bool:
        """Whether ``country_code``/``party_id`` is one of the partner's own parties."""
        return any(
            cc == country_code.upper() and pid == party_id.upper() for _, cc, pid in self.roles
        )


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
    kind = TokenKind.ISSUED if partner.incoming_token_hash == digest else TokenKind.REGISTRATION
    return Caller(partner_id=partner.id, name=partner.name, token_kind=kind, roles=_roles(partner))


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

    def endpoint(self, module: str, role: str) -> str | None:
        """The partner's URL of ``module`` in ``role`` (e.g. ``sessions``, ``RECEIVER``)."""
        return self.endpoints.get(module, {}).get(role)

    @property
    def party(self) -> tuple[str, str] | None:
        """The partner's first (country_code, party_id), for ``OCPI-to-*`` headers."""
        return (self.roles[0][1], self.roles[0][2]) if self.roles else None

    def owns(self, country_code: str, party_id: str) -> bool:
        """Whether ``country_code``/``party_id`` is one of the partner's own parties."""
        return any(
            cc == country_code.upper() and pid == party_id.upper() for _, cc, pid in self.roles
        )


def link_of(partner: OcpiPartner, vault: TokenVault) -> PartnerLink:
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
    )


async def partner_link(uow: UnitOfWork, vault: TokenVault, partner_id: int) -> PartnerLink:
    """Return the link of one registered partner (``uow`` entered)."""
    partner = await uow.session.get(OcpiPartner, partner_id)
    if partner is None or partner.state != "REGISTERED":
        raise NotFound("registered partner", partner_id)
    return link_of(partner, vault)


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
    links = [link_of(partner, vault) for partner in await uow.session.scalars(query)]
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
