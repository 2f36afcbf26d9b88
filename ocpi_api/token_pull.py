"""Pulling an eMSP's token list: ``GET {their tokens}`` page by page (CHECKLIST 6.2, 1.9).

For a start-up sync or a resync, not per authorization. The pages are read by
``ocpi_api.pull`` (offset/limit by the partner's ``Link``, ``date_from`` when a ``since`` is
given, at most ``MAX_PAGES``), and every token is stored exactly as a pushed one is:
``cpms.tokens.put_partner_token``, the path of the Tokens receiver's PUT, with its checks.
So a pulled token authorizes like a pushed one.

Per token, one of:

- stored: created or replaced;
- skipped: its country code and party id are not one of the partner's own parties (a
  partner may only tell us about its own tokens, CHECKLIST 1.5), so it is not stored;
- rejected: it is not a valid OCPI Token, or its key belongs to a token of someone else;
  the reason is kept, the rest of the page is stored all the same.

A page that cannot be read at all stops the pull (``PullFailed``); what earlier pages
stored stays stored. The pull is additive: a token missing from the list is not
invalidated here (tokens are invalidated by the eMSP, never deleted).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cpms.errors import Conflict, InvalidRequest
from cpms.secrets import TokenVault
from cpms.tokens import put_partner_token
from cpms.unit_of_work import UnitOfWorkFactory
from ocpi_api.client import OcpiClient
from ocpi_api.pull import (
    MAX_PAGES,
    OnPage,
    PullReport,
    Refused,
    Stored,
    list_pages,
    pull_list,
    sender,
    since_params,
)

__all__ = ["pull_tokens"]


async def pull_tokens(
    uow: UnitOfWorkFactory,
    vault: TokenVault,
    client: OcpiClient,
    partner_id: int,
    *,
    since: datetime | None = None,
    max_pages: int = MAX_PAGES,
    on_page: OnPage | None = None,
) -> PullReport:
    """Pull the partner's token list and store each token; see the module docstring.

    Raise ``NotFound`` for a partner that is not registered, ``Conflict`` for one without a
    Tokens SENDER endpoint, ``PullFailed`` when a page cannot be read (its message says
    what was stored before).
    """
    link, url = await sender(uow, vault, partner_id, "tokens")

    async def store(item: Any) -> str:
        if not isinstance(item, dict):
            raise Refused(f"not a Token object but {type(item).__name__}")
        country_code, party_id = item.get("country_code"), item.get("party_id")
        named = isinstance(country_code, str) and isinstance(party_id, str)
        if named and not link.owns(country_code, party_id):
            return Stored.SKIPPED  # another party's token: not the partner's to tell
        uid = item.get("uid")
        try:
            _, created = await put_partner_token(
                uow(),
                partner_id,
                item,
                country_code=country_code if isinstance(country_code, str) else "",
                party_id=party_id if isinstance(party_id, str) else "",
                uid=uid if isinstance(uid, str) else "",
                type_=None,
            )
        except (InvalidRequest, Conflict) as error:
            raise Refused(str(error)) from None
        return Stored.CREATED if created else Stored.UPDATED

    pages = list_pages(
        client, link, url, params=since_params(since), to_party=link.party, max_pages=max_pages
    )
    return await pull_list(
        pages,
        PullReport(partner_id),
        store,
        key_fields=("country_code", "party_id", "uid"),
        on_page=on_page,
    )
