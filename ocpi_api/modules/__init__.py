"""The OCPI 2.2.1 modules we serve, one file each; each lists its version-details endpoints.

``MODULES`` is the one place a module is switched on: its ``ENDPOINTS`` appear in our version
details and its ``add_routes`` adds its paths under ``/ocpi/2.2.1``.
"""

from __future__ import annotations

from types import ModuleType

from ocpi_api.modules import (
    cdrs,
    chargingprofiles,
    commands,
    credentials,
    hubclientinfo,
    locations,
    sessions,
    tariffs,
    tokens,
)

__all__ = ["MODULES"]

MODULES: tuple[ModuleType, ...] = (
    credentials,
    locations,
    sessions,
    cdrs,
    tariffs,
    tokens,
    commands,
    chargingprofiles,
    hubclientinfo,
)
