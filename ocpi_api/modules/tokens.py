"""OCPI 2.2.1 tokens module (not served yet)."""

from __future__ import annotations

from aiohttp import web

__all__ = ["ENDPOINTS", "add_routes"]

#: (module identifier, our interface role, path under /ocpi/2.2.1) this module serves.
ENDPOINTS: list[tuple[str, str, str]] = []


def add_routes(app: web.Application) -> None:
    """Add this module's routes to the /ocpi/2.2.1 application."""
