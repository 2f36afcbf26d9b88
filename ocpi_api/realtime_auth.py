"""Real-time authorization at the token's eMSP (being built; see issue 5)."""

from __future__ import annotations

from cpms.authorization import Authorization
from cpms.model import Token
from cpms.secrets import TokenVault
from cpms.unit_of_work import UnitOfWorkFactory
from ocpi_api.client import OcpiClient

__all__ = ["OcpiRemoteAuthorizer"]


class OcpiRemoteAuthorizer:
    """Asks eMSPs ``POST {tokens}/{uid}/authorize``."""

    def __init__(
        self, uow: UnitOfWorkFactory, vault: TokenVault, client: OcpiClient, *, timeout: float
    ) -> None:
        self.uow, self.vault, self.client, self.timeout = uow, vault, client, timeout

    async def authorize(
        self, uid: str, token: Token | None, *, location_id: str | None
    ) -> Authorization | None:
        """Return the issuer's decision, or None when nobody could be asked."""
        return None
