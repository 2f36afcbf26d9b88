"""The HTTP adapter: one aiohttp application serving OCPI 2.2.1 and the operator API.

``create_app`` builds the root application with two sub-applications, each with its own
authentication: ``/ocpi/...`` (OCPI tokens) and ``/api/...`` (operator bearer tokens).
It talks to the core only through its services and units of work.
"""

from ocpi_api.app import create_app
from ocpi_api.context import HttpContext

__all__ = ["HttpContext", "create_app"]
