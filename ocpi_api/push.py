"""The pusher: delivers queued OCPI pushes to partners (being built; see issue 5)."""

from __future__ import annotations

from cpms.secrets import TokenVault
from cpms.unit_of_work import UnitOfWorkFactory
from ocpi_api.client import OcpiClient

__all__ = ["Pusher"]


class Pusher:
    """Turns outbox events into per-partner pushes and sends them."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        vault: TokenVault,
        client: OcpiClient,
        *,
        retry_max: float,
        base_url: object = None,
    ) -> None:
        self.uow, self.vault, self.client, self.retry_max = uow, vault, client, retry_max

    def wake(self) -> None:
        """Deliver soon: something was queued."""

    async def start(self) -> None:
        """Start delivering in the background."""

    async def stop(self) -> None:
        """Stop delivering; what is not sent stays queued."""
