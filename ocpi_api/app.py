"""The root aiohttp application: ``/ocpi`` and ``/api`` sub-applications under one port."""

from __future__ import annotations

from aiohttp import web

from ocpi_api.context import CONTEXT, HttpContext
from ocpi_api.operator import create_operator_app
from ocpi_api.versions import create_ocpi_app

__all__ = ["create_app"]


def create_app(context: HttpContext) -> web.Application:
    """Build the HTTP application around the core services in ``context``."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[CONTEXT] = context
    app.add_subapp("/ocpi", create_ocpi_app())
    app.add_subapp("/api", create_operator_app())
    return app
