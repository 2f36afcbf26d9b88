"""Unit tests of the ocpp_gateway public names: every ``__all__`` entry exists."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

import ocpp_gateway

MODULES = ["ocpp_gateway", "ocpp_gateway.rpc", "ocpp_gateway.handshake", "ocpp_gateway.server"]


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_is_defined(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    missing = [export for export in module.__all__ if not hasattr(module, export)]
    assert missing == []


def test_the_package_re_exports_public_names_of_its_modules() -> None:
    public = {}
    for name in MODULES[1:]:
        module = importlib.import_module(name)
        public.update({export: getattr(module, export) for export in module.__all__})
    for export in ocpp_gateway.__all__:
        assert getattr(ocpp_gateway, export) is public.get(export), export
