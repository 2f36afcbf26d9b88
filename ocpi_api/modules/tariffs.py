"""OCPI 2.2.1 Tariffs, Sender interface: ``GET /2.2.1/tariffs`` (CHECKLIST 5.1).

Every partner sees every tariff not retired, paginated (``ocpi_api.pagination``); a puller
replaces its whole list with what the pages hold together.
"""

from __future__ import annotations

from aiohttp import web

from cpms.documents import tariff_to_ocpi
from cpms.publication import current_tariffs
from ocpi_api.context import CONTEXT
from ocpi_api.pagination import paginated, window_of
from ocpi_api.transport import add_route

__all__ = ["ENDPOINTS", "add_routes"]

#: (module identifier, our interface role, path under /ocpi/2.2.1) this module serves.
ENDPOINTS: list[tuple[str, str, str]] = [("tariffs", "SENDER", "tariffs")]


async def list_tariffs(request: web.Request) -> web.Response:
    """List our current tariffs, one page."""
    window = window_of(request)
    async with request.config_dict[CONTEXT].uow() as uow:
        page = await current_tariffs(uow, window)
        return paginated(request, page, [tariff_to_ocpi(tariff) for tariff in page.items])


def add_routes(app: web.Application) -> None:
    """Add this module's routes to the /ocpi/2.2.1 application."""
    add_route(app, "GET", "/2.2.1/tariffs", list_tariffs)
