"""OCPI pagination of every list we serve (CHECKLIST 1.9).

``window_of`` reads the query parameters: ``date_from`` (inclusive) and ``date_to``
(exclusive) bound ``last_updated``, ``offset`` skips, ``limit`` asks for at most that many.
Any of them malformed is answered HTTP 400 with OCPI 2001 naming the parameter. DateTimes
follow OCPI: UTC, the ``Z`` optional, no numeric offset (CHECKLIST 1.11).

``paginated`` answers one page with the headers: ``X-Total-Count`` (what matches the filters
for this caller), ``X-Limit`` (our page size cap, ``MAX_PAGE_SIZE``, whatever the client
asked) and, unless this is the last page, ``Link: <next page>; rel="next"``, an absolute URL
carrying the client's own ``date_from``/``date_to`` text, the limit used and the next offset.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from yarl import URL

from cpms.documents import parse_datetime
from cpms.errors import DocumentError
from cpms.pages import Page
from cpms.publication import Window
from ocpi_api.context import CONTEXT
from ocpi_api.envelope import OcpiStatus, ocpi_response
from ocpi_api.transport import OcpiError

__all__ = ["MAX_PAGE_SIZE", "paginated", "window_of"]

#: The most objects one page holds; a larger ``limit`` gets this many (and ``X-Limit`` says so).
MAX_PAGE_SIZE = 100
# Nine digits: far beyond any list we hold, and short of the databases' integer limits.
_COUNT = re.compile(r"[0-9]{1,9}")


def _invalid(message: str) -> OcpiError:
    return OcpiError(OcpiStatus.INVALID_PARAMETERS, message, http_status=400)


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise _invalid(f"{name} is given {len(values)} times; give it once")
    return values[0] if values else None


def _count(request: web.Request, name: str, *, minimum: int) -> int | None:
    text = _single(request, name)
    if text is None:
        return None
    if not _COUNT.fullmatch(text) or int(text) < minimum:
        raise _invalid(f"{name} must be a whole number of {minimum} or more, not {text!r}")
    return int(text)


def window_of(request: web.Request, *, date_from_required: bool = False) -> Window:
    """Read the pagination parameters of ``request``; raise ``OcpiError`` (400, 2001)."""
    moments = {}
    for name in ("date_from", "date_to"):
        text = _single(request, name)
        if text is None:
            moments[name] = None
            continue
        try:
            moments[name] = parse_datetime(text, name)
        except DocumentError as error:
            raise _invalid(str(error)) from None
    date_from, date_to = moments["date_from"], moments["date_to"]
    if date_from is None and date_from_required:
        raise _invalid("date_from is required here (a DateTime such as '2015-06-29T20:39:09Z')")
    if date_from is not None and date_to is not None and date_to < date_from:
        raise _invalid("date_to must not be before date_from")
    offset = _count(request, "offset", minimum=0) or 0
    limit = _count(request, "limit", minimum=1)
    return Window(
        date_from=date_from,
        date_to=date_to,
        offset=offset,
        limit=MAX_PAGE_SIZE if limit is None else min(limit, MAX_PAGE_SIZE),
    )


def _next_url(request: web.Request, offset: int, limit: int) -> str:
    query = {
        name: request.query[name] for name in ("date_from", "date_to") if name in request.query
    }
    query |= {"offset": str(offset), "limit": str(limit)}
    base = request.config_dict[CONTEXT].base_url()
    return str(URL(base + request.path).with_query(query))


def paginated(request: web.Request, page: Page[Any], data: list[Any]) -> web.Response:
    """Answer ``data`` (``page``'s items, rendered) with the OCPI pagination headers."""
    headers = {"X-Total-Count": str(page.total), "X-Limit": str(MAX_PAGE_SIZE)}
    next_offset = page.offset + len(page.items)
    if page.items and next_offset < page.total:
        headers["Link"] = f'<{_next_url(request, next_offset, page.limit)}>; rel="next"'
    return ocpi_response(request, data, headers=headers)
