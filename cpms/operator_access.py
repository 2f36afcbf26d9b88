"""Operator credentials: the bearer tokens of the operator API.

``CPMS_ADMIN_TOKEN`` names a token the operator chose; otherwise one is generated on the
first start and shown once. Only SHA-256 digests are stored, so a database dump does not
hand out access.
"""

from __future__ import annotations

import hmac

from sqlalchemy import select

from cpms.model import AdminToken, utcnow
from cpms.passwords import hash_token, new_token
from cpms.unit_of_work import UnitOfWork

__all__ = ["ensure_admin_token", "verify_admin_token"]


async def ensure_admin_token(uow: UnitOfWork, configured: str | None) -> str | None:
    """Make sure an operator token exists; return a newly generated one (to show once).

    A configured token is registered (under the name ``configured``) if it is new. With none
    configured and none stored, a token is generated, stored hashed and returned.
    """
    async with uow:
        if configured is not None:
            digest = hash_token(configured)
            known = await uow.session.scalar(
                select(AdminToken.id).where(AdminToken.token_hash == digest)
            )
            if known is None:
                uow.session.add(AdminToken(name="configured", token_hash=digest))
                await uow.commit()
            return None
        any_token = await uow.session.scalar(
            select(AdminToken.id).where(AdminToken.revoked_at.is_(None)).limit(1)
        )
        if any_token is not None:
            return None
        token = new_token()
        uow.session.add(
            AdminToken(name="generated", token_hash=hash_token(token), created_at=utcnow())
        )
        await uow.commit()
        return token


async def verify_admin_token(uow: UnitOfWork, presented: str) -> bool:
    """Tell whether ``presented`` is a live operator token."""
    digest = hash_token(presented)
    async with uow:
        stored = await uow.session.scalar(
            select(AdminToken.token_hash).where(
                AdminToken.token_hash == digest, AdminToken.revoked_at.is_(None)
            )
        )
    return stored is not None and hmac.compare_digest(stored, digest)
