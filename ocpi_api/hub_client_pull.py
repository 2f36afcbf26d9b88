"""Pulling a hub's client list: ``GET {hub hubclientinfo SENDER}`` page by page (CHECKLIST 9).

For a start-up sync or a resync of what ``ocpi_api.modules.hubclientinfo`` receives by PUT.
The pages are read by ``ocpi_api.pull`` (``Link`` followed, ``date_from`` when a ``since`` is
given, at most ``MAX_PAGES``); every ClientInfo is stored by ``cpms.hub_clients.put_client_info``,
the path of the receiver's PUT, with its checks: one that is not valid is a rejection, the
rest of its page is stored all the same; one older than what we hold changes nothing.
HubClientInfo is a configuration module, so the requests carry no routing headers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cpms import hub_clients
from cpms.errors import Conflict, InvalidRequest
from cpms.secrets import TokenVault
from cpms.unit_of_work import UnitOfWorkFactory
from ocpi_api.client import OcpiClient
from ocpi_api.pull import (
    MAX_PAGES,
    OnPage,
    PullReport,
    Refused,
    list_pages,
    pull_list,
    sender,
    since_params,
)

__all__ = ["pull_hub_clients"]


async def pull_hub_clients(
    uow: UnitOfWorkFactory,
    vault: TokenVault,
    client: OcpiClient,
    partner_id: int,
    *,
    since: datetime | None = None,
    max_pages: int = MAX_PAGES,
    on_page: OnPage | None = None,
) -> PullReport:
    """Pull the hub's ClientInfo list and store each one as a PUT would.

    Raise ``NotFound`` for a partner that is not registered, ``Conflict`` for one without a
    hubclientinfo SENDER endpoint, ``PullFailed`` when a page cannot be read (its message
    says what was stored before). A ClientInfo that is not valid is a rejection; the rest of
    its page is stored all the same.
    """
    link, url = await sender(uow, vault, partner_id, "hubclientinfo")

    async def store(item: Any) -> str:
        try:
            _, stored = await hub_clients.put_client_info(uow(), partner_id, item)
        except (InvalidRequest, Conflict) as error:
            raise Refused(str(error)) from None
        return str(stored)

    # A configuration module: no routing headers (CHECKLIST 1.10), so no to_party.
    pages = list_pages(client, link, url, params=since_params(since), max_pages=max_pages)
    return await pull_list(
        pages,
        PullReport(partner_id),
        store,
        key_fields=("country_code", "party_id"),
        on_page=on_page,
    )
