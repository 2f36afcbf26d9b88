"""What the HTTP adapter needs from the running process, under one typed application key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cpms.config import Settings
from cpms.secrets import TokenVault
from cpms.station_port import StationPort
from cpms.unit_of_work import UnitOfWorkFactory

__all__ = ["CONTEXT", "HttpContext"]


@dataclass(frozen=True, slots=True)
class HttpContext:
    """The core services and settings the handlers use."""

    settings: Settings
    uow: UnitOfWorkFactory
    health: Callable[[], Awaitable[dict[str, Any]]]
    """Reports database and listener state (the runtime knows the listeners)."""
    base_url: Callable[[], str]
    """The public base URL of this HTTP server, known once it listens."""
    station_port: StationPort | None = None
    """Sends commands to stations; None where no gateway runs (commands answer 503)."""
    vault: TokenVault | None = None
    """Encrypts the tokens partners give us; None where no OCPI partner is served."""
    ocpi_client: Any = None
    """The ``ocpi_api.client.OcpiClient`` for calls to partners (set by the runtime)."""
    wake_pusher: Callable[[], None] = lambda: None
    """Tells the pusher that new pushes are queued (it also polls)."""


CONTEXT = web.AppKey("context", HttpContext)
