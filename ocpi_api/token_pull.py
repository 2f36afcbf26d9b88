"""Pulling an eMSP's token list: ``GET {their tokens}`` page by page (CHECKLIST 6.2, 1.9).

For a start-up sync or a resync, not per authorization. The pages are read by
``ocpi_api.pull`` (offset/limit by the partner's ``Link``, ``date_from`` when a ``since`` is
given, at most ``MAX_PAGES``), and every token is stored exactly as a pushed one is:
``cpms.tokens.put_partner_token``, the path of the Tokens receiver's PUT, with its checks.
So a pulled token authorizes like a pushed one.

Per token, one of:

- stored: created or replaced;
- skipped: its country code and party id are not one of the partner's parties (a partner
  may only tell us about its own tokens, CHECKLIST 1.5; a hub about those of the eMSP
  clients it reported through HubClientInfo, ``cpms.partners``), so it is not stored;
- rejected: it is not a valid OCPI Token, or its key belongs to a token of someone else;
  the reason is kept, the rest of the page is stored all the same.

A page that cannot be read at all stops the pull (``PullFailed``); what earlier pages
stored stays stored, and nothing is invalidated.

A full pull (no ``since``) that read the list to its end is the partner's whole list: its
tokens we hold that the list left out are invalidated (``valid`` false), each through
``cpms.tokens.patch_partner_token``, the path of the receiver's PATCH, so the change is
recorded (``TokenChanged``) and logged as the eMSP's own PATCH would be. Tokens are never
deleted. Left out means named by no object of the list, whatever became of that object
(a token the list names but that was rejected or skipped is not "left out"); uids compare
case-insensitively (CiString). A token whose ``last_updated`` is later than the pull's
start was pushed meanwhile and is spared. The count is ``PullReport.invalidated``. An
incremental pull (``since``) lists only changes, so it invalidates nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from cpms.documents import format_datetime
from cpms.errors import Conflict, InvalidRequest, NotFound
from cpms.model import utcnow
from cpms.secrets import TokenVault
from cpms.tokens import partner_token_keys, patch_partner_token, put_partner_token
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

log = logging.getLogger("ocpi_api.token_pull")

#: A token the list named: (country_code, party_id, uid lower-cased, type or None: any).
_Named = tuple[str, str, str, str | None]


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
    started = utcnow()
    link, url = await sender(uow, vault, partner_id, "tokens")
    listed: set[_Named] = set()

    async def store(item: Any) -> str:
        if not isinstance(item, dict):
            raise Refused(f"not a Token object but {type(item).__name__}")
        _remember(listed, item)
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
    report = await pull_list(
        pages,
        PullReport(partner_id),
        store,
        key_fields=("country_code", "party_id", "uid"),
        on_page=on_page,
    )  # PullFailed: the list was not read to its end, nothing is invalidated
    if since is None:
        report.invalidated = await _invalidate_left_out(uow, partner_id, listed, started)
    return report


def _remember(listed: set[_Named], item: dict[str, Any]) -> None:
    """Note the token ``item`` names, valid or not (so it is never "left out")."""
    country_code, party_id, uid = item.get("country_code"), item.get("party_id"), item.get("uid")
    if isinstance(country_code, str) and isinstance(party_id, str) and isinstance(uid, str):
        type_ = item.get("type")
        listed.add(
            (
                country_code.upper(),
                party_id.upper(),
                uid.lower(),
                type_ if isinstance(type_, str) else None,
            )
        )


async def _invalidate_left_out(
    uow: UnitOfWorkFactory, partner_id: int, listed: set[_Named], started: datetime
) -> int:
    """Invalidate the partner's valid tokens the full list left out; return how many."""
    invalidated = 0
    at = format_datetime(utcnow())
    for country_code, party_id, uid, type_ in await partner_token_keys(
        uow(), partner_id, valid=True, before=started
    ):
        named = (country_code.upper(), party_id.upper(), uid.lower())
        if (*named, type_) in listed or (*named, None) in listed:
            continue
        try:
            # The receiver's PATCH path: checked, recorded (TokenChanged), as the eMSP's own.
            await patch_partner_token(
                uow(),
                partner_id,
                {"valid": False, "last_updated": at},
                country_code=country_code,
                party_id=party_id,
                uid=uid,
                type_=type_,
            )
        except NotFound:
            continue  # gone meanwhile (cannot happen: tokens are never deleted)
        invalidated += 1
        log.info(
            "partner %d: token %s/%s/%s (%s) invalidated: not in its full token list",
            partner_id, country_code, party_id, uid, type_,
        )  # fmt: skip
    return invalidated
