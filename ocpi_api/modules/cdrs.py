"""OCPI 2.2.1 CDRs, Sender interface: ``GET /2.2.1/cdrs`` (CHECKLIST 4.1).

A partner sees the CDRs it pays for (those of its tokens), credit CDRs included, exactly as
they were issued (``Cdr.document``: a CDR never changes), paginated (``ocpi_api.pagination``).
"""

from __future__ import annotations

from aiohttp import web

from cpms.publication import partner_cdrs
from ocpi_api.auth import CALLER
from ocpi_api.context import CONTEXT
from ocpi_api.pagination import paginated, window_of
from ocpi_api.transport import add_route

__all__ = ["ENDPOINTS", "add_routes"]

#: (module identifier, our interface role, path under /ocpi/2.2.1) this module serves.
ENDPOINTS: list[tuple[str, str, str]] = [("cdrs", "SENDER", "cdrs")]


async def list_cdrs(request: web.Request) -> web.Response:
    """List the caller's CDRs, one page."""
    window = window_of(request)
    async with request.config_dict[CONTEXT].uow() as uow:
        page = await partner_cdrs(uow, request[CALLER].partner_id, window)
        return paginated(request, page, [cdr.document for cdr in page.items])


def add_routes(app: web.Application) -> None:
    """Add this module's routes to the /ocpi/2.2.1 application."""
    add_route(app, "GET", "/2.2.1/cdrs", list_cdrs)
