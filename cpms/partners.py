"""OCPI partners as the core sees them: who is calling, judged by the token presented.

The HTTP adapter decodes the ``Authorization`` header; this module only says which partner a
token belongs to and which token it is (A before registration, the issued one after).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import or_, select

from cpms.model import OcpiPartner
from cpms.passwords import hash_token
from cpms.unit_of_work import UnitOfWork

__all__ = ["Caller", "TokenKind", "identify_caller"]


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
    return Caller(partner_id=partner.id, name=partner.name, token_kind=kind)
