"""Unit tests of the ocpp_gateway public names: every ``__all__`` entry exists.

Covers the package, each of its modules and the ``v16`` sub-package; the package itself
re-exports names of its modules, never objects of its own.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

import ocpp_gateway

MODULES = [
    "ocpp_gateway",
    "ocpp_gateway.rpc",
    "ocpp_gateway.handshake",
    "ocpp_gateway.server",
    "ocpp_gateway.validation",
    "ocpp_gateway.station_port",
    "ocpp_gateway.status_mapping",
    "ocpp_gateway.units",
    "ocpp_gateway.timestamps",
    "ocpp_gateway.services",
    "ocpp_gateway.v16",
    "ocpp_gateway.v16.handlers",
    "ocpp_gateway.v16.meter_values",
    "ocpp_gateway.handler_base",
    "ocpp_gateway.v201",
    "ocpp_gateway.v201.handlers",
    "ocpp_gateway.v201.meter_values",
    "ocpp_gateway.v201.reports",
]


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_is_defined(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    assert module.__all__, f"{name} declares no public names"
    missing = [export for export in module.__all__ if not hasattr(module, export)]
    assert missing == []


def test_the_package_re_exports_public_names_of_its_modules() -> None:
    public: dict[str, list[object]] = {}
    for name in MODULES[1:]:
        module = importlib.import_module(name)
        for export in module.__all__:
            public.setdefault(export, []).append(getattr(module, export))
    for export in ocpp_gateway.__all__:
        exported = getattr(ocpp_gateway, export)
        assert any(exported is candidate for candidate in public.get(export, [])), export
