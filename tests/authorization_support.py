"""What the authorization tests share: tokens as an eMSP pushes them over OCPI."""

from __future__ import annotations

from typing import Any

from cpms.model import Token, utcnow
from cpms.unit_of_work import UnitOfWorkFactory

__all__ = ["emsp_token"]


async def emsp_token(uow: UnitOfWorkFactory, uid: str, **fields: Any) -> None:
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
