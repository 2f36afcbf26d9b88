"""Pulling a partner's list: ``GET`` an OCPI Sender list endpoint page after page (CHECKLIST 1.9).

``list_pages`` asks for the first page (with the caller's ``date_from``, ``limit``, ...),
then follows each answer's ``Link: <url>; rel="next"`` until an answer carries none, and
yields every page with its number, its objects and the partner's ``X-Total-Count``. The Link
is taken as the partner gave it: it carries the filters and the next offset, we only check
that it points to the same origin as the endpoint (the partner's token goes with it) and that
it does not lead back to a page already read.

Every page must be an OCPI answer of status 1xxx whose ``data`` is a list. Anything else
stops the pull with ``PullFailed`` saying which page and why: the partner cannot be reached
(``PartnerUnreachable``), answers an HTTP or OCPI error, answers something that is not a
list, or keeps sending a next page beyond ``max_pages`` (a bound, so a partner that never
ends its list cannot keep us busy). Whatever the caller did with the pages before stays done.

``pull_list`` stores what the pages hold, one object at a time, with a function the caller
gives, and counts what it did in a ``PullReport``: created, updated, kept (ours is newer),
skipped (not the partner's to tell), rejected (``Refused``, with the reason; the rest of the
page is stored all the same). A pull that does more once the whole list is read says so in
the report too (the Tokens pull: ``invalidated``).

Generic on purpose: the Tokens pull (``ocpi_api.token_pull``) and the HubClientInfo pull
(``ocpi_api.hub_client_pull``) both read their lists through it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from cpms.documents import format_datetime
from cpms.errors import Conflict
from cpms.partners import PartnerLink, partner_link
from cpms.secrets import TokenVault
from cpms.unit_of_work import UnitOfWorkFactory
from ocpi_api.client import OcpiClient, OcpiReply, PartnerUnreachable

__all__ = [
    "MAX_PAGES",
    "ListPage",
    "OnPage",
    "PullFailed",
    "PullReport",
    "Refused",
    "Rejection",
    "Stored",
    "list_pages",
    "next_link",
    "pull_list",
    "sender",
    "since_params",
]

#: The most pages one pull reads before it gives up (CHECKLIST 1.9 sets no bound; we do).
MAX_PAGES = 1000
#: Rejections kept with their reason in a report (the count goes on beyond).
REJECTIONS_KEPT = 100

# One link of a Link header: <url> followed by its parameters, up to the next link.
_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_REL = re.compile(r"""rel\s*=\s*(?:"([^"]*)"|([^\s;,"]+))""", re.IGNORECASE)


class PullFailed(Exception):
    """A partner's list could not be read to its end; the message says which page and why."""

    def __init__(self, message: str, *, page: int) -> None:
        super().__init__(message)
        self.page = page


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a partner's list."""

    number: int
    """1 for the first page."""
    url: str
    items: list[Any]
    total: int | None
    """The partner's ``X-Total-Count`` (objects matching the filters), if it sent one."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name (the reply keeps the partner's)."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def next_link(headers: Mapping[str, str], base: str) -> str | None:
    """The URL of ``rel="next"`` in the ``Link`` header, made absolute against ``base``."""
    value = _header(headers, "Link")
    if not value:
        return None
    for match in _LINK.finditer(value):
        for rel in _REL.finditer(match.group(2)):
            if "next" in (rel.group(1) or rel.group(2) or "").lower().split():
                return urljoin(base, match.group(1).strip())
    return None


def _total(headers: Mapping[str, str]) -> int | None:
    value = (_header(headers, "X-Total-Count") or "").strip()
    return int(value) if value.isdigit() else None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _refusal(reply: OcpiReply) -> str:
    code = reply.status_code if reply.status_code is not None else "none"
    return f"HTTP {reply.http_status}, OCPI status {code}" + (
        f": {reply.message}" if reply.message else ""
    )


async def list_pages(
    client: OcpiClient,
    link: PartnerLink,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    to_party: tuple[str, str] | None = None,
    max_pages: int = MAX_PAGES,
) -> AsyncIterator[ListPage]:
    """Yield the pages of the list at ``url``; see the module docstring.

    ``params`` go with the first request only (the Link carries them on). ``to_party`` sets
    the routing headers of functional modules; None for configuration modules.
    """
    current = url
    query: dict[str, str] | None = dict(params) if params else None
    seen: set[str] = set()
    for number in range(1, max_pages + 1):
        try:
            reply = await client.request(
                "GET",
                current,
                token=link.token,
                base64_encoded=link.auth_base64,
                params=query,
                to_party=to_party,
            )
        except PartnerUnreachable as error:
            raise PullFailed(f"page {number}: {error}", page=number) from None
        if not reply.ok:
            raise PullFailed(f"page {number}: {current}: {_refusal(reply)}", page=number)
        if not isinstance(reply.data, list):
            raise PullFailed(
                f"page {number}: {current}: data is not a list but {type(reply.data).__name__}"
                f" ({reply.data!r:.80})",
                page=number,
            )
        yield ListPage(number, current, reply.data, _total(reply.headers))
        seen.add(current)
        following = next_link(reply.headers, current)
        if following is None:
            return
        if _origin(following) != _origin(url):
            raise PullFailed(
                f"page {number}: the next page {following} is not on the endpoint's host; "
                "our token is not sent there",
                page=number + 1,
            )
        if following in seen:
            raise PullFailed(
                f"page {number}: the next page {following} was read already (a loop)",
                page=number + 1,
            )
        current, query = following, None
    raise PullFailed(
        f"stopped after {max_pages} pages: the partner still sends a next page", page=max_pages
    )


# Pulls that store what they read -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    """An object of a pulled page that was not stored, and why."""

    page: int
    index: int
    """Its position in the page, from 0."""
    key: str
    """What names it (``DE/TNM/uid``), as far as the object says."""
    reason: str

    def view(self) -> dict[str, Any]:
        """The rejection as JSON."""
        return {"page": self.page, "index": self.index, "key": self.key, "reason": self.reason}


@dataclass(slots=True)
class PullReport:
    """What one pull did with the objects it read."""

    partner_id: int
    pages: int = 0
    received: int = 0
    created: int = 0
    updated: int = 0
    kept: int = 0
    """Objects not changed because what we hold is newer (their ``last_updated``)."""
    skipped: int = 0
    """Objects the partner may not tell us about (another party's)."""
    rejected: int = 0
    total: int | None = None
    """The partner's last ``X-Total-Count``."""
    rejections: list[Rejection] = field(default_factory=list)
    """The first ``REJECTIONS_KEPT`` rejections."""
    invalidated: int | None = None
    """Objects we held that the full list left out, now invalidated (the Tokens pull);
    None where a pull invalidates nothing (an incremental pull, a hub's client list)."""

    @property
    def stored(self) -> int:
        """Objects created or replaced."""
        return self.created + self.updated

    def reject(self, rejection: Rejection) -> None:
        """Count ``rejection``, keeping it while fewer than ``REJECTIONS_KEPT`` are kept."""
        self.rejected += 1
        if len(self.rejections) < REJECTIONS_KEPT:
            self.rejections.append(rejection)

    def summary(self) -> str:
        """One line: pages, received, stored, skipped, rejected (and invalidated)."""
        kept = f", {self.kept} older than ours" if self.kept else ""
        invalidated = (
            f", {self.invalidated} invalidated (not in the full list)"
            if self.invalidated is not None
            else ""
        )
        return (
            f"{self.pages} page(s), {self.received} received, {self.stored} stored "
            f"({self.created} new){kept}, {self.skipped} skipped, {self.rejected} rejected"
            f"{invalidated}"
        )

    def view(self) -> dict[str, Any]:
        """The report as JSON."""
        return {
            "partner_id": self.partner_id,
            "pages": self.pages,
            "received": self.received,
            "stored": self.stored,
            "created": self.created,
            "updated": self.updated,
            "kept": self.kept,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "total": self.total,
            "invalidated": self.invalidated,
            "rejections": [rejection.view() for rejection in self.rejections],
        }


class Refused(Exception):
    """Raised by a ``StoreOne``: this object is not stored, for the reason in the message."""


class Stored:
    """What storing one pulled object did (the values ``StoreOne`` returns)."""

    CREATED = "created"
    UPDATED = "updated"
    KEPT = "kept"
    SKIPPED = "skipped"


#: Store one object of a page; a ``Stored`` value, or raise ``Refused`` saying why not.
StoreOne = Callable[[Any], Awaitable[str]]
#: Called after each page is stored: the page, the report so far, that page's rejections.
OnPage = Callable[[ListPage, PullReport, list[Rejection]], None]
#: The object's fields that name it in a rejection (``DE/TNM/uid``).
KeyFields = tuple[str, ...]


async def sender(
    uow: UnitOfWorkFactory, vault: TokenVault, partner_id: int, module: str
) -> tuple[PartnerLink, str]:
    """The registered partner's link and URL of its ``module`` SENDER endpoint.

    Raise ``NotFound`` for a partner that is not registered, ``Conflict`` for one that
    offers no such endpoint.
    """
    async with uow() as unit:
        link = await partner_link(unit, vault, partner_id)
    url = link.endpoint(module, "SENDER")
    if url is None:
        raise Conflict(f"partner {partner_id} ({link.name}) offers no {module} SENDER endpoint")
    return link, url


def since_params(since: datetime | None) -> dict[str, str]:
    """The query of a pull's first page: ``date_from`` when pulling changes only."""
    return {"date_from": format_datetime(since)} if since is not None else {}


def _key(item: Any, fields: KeyFields) -> str:
    if not isinstance(item, dict):
        return "?"
    return "/".join(value if isinstance(value := item.get(name), str) else "?" for name in fields)


async def pull_list(
    pages: AsyncIterator[ListPage],
    report: PullReport,
    store: StoreOne,
    *,
    key_fields: KeyFields,
    on_page: OnPage | None = None,
) -> PullReport:
    """Store every object of ``pages`` with ``store``, counting in ``report``; return it.

    An object ``store`` refuses (``Refused``) is a rejection; the rest of its page is
    stored all the same. A page that cannot be read raises ``PullFailed``, its message
    saying what earlier pages stored.
    """
    try:
        async for page in pages:
            report.pages += 1
            report.received += len(page.items)
            report.total = page.total
            rejected: list[Rejection] = []
            for index, item in enumerate(page.items):
                try:
                    outcome = await store(item)
                except Refused as error:
                    rejection = Rejection(page.number, index, _key(item, key_fields), str(error))
                    report.reject(rejection)
                    rejected.append(rejection)
                    continue
                if outcome == Stored.CREATED:
                    report.created += 1
                elif outcome == Stored.UPDATED:
                    report.updated += 1
                elif outcome == Stored.KEPT:
                    report.kept += 1
                else:
                    report.skipped += 1
            if on_page is not None:
                on_page(page, report, rejected)
    except PullFailed as error:
        if not report.pages:
            raise
        raise PullFailed(f"{error} (before that: {report.summary()})", page=error.page) from None
    return report
