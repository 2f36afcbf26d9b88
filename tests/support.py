"""Constants the tests share; importable as ``support`` (pytest puts tests/ on the path)."""

from __future__ import annotations

import os
from pathlib import Path

from cpms.event_loop import EventLoop, resolve
from cpms.locations import DefaultLocation

__all__ = [
    "ADMIN_TOKEN",
    "DEFAULT_LOCATION",
    "EVENT_LOOP",
    "EXAMPLES",
    "POSTGRES_URL",
    "TIME_UNIT",
]

#: Scale every timeout in tests by this (slow machines: CPMS_TEST_TIME_UNIT=3).
TIME_UNIT = float(os.environ.get("CPMS_TEST_TIME_UNIT", "1"))
#: A PostgreSQL server the database tests may create databases on; unset: they skip.
POSTGRES_URL = os.environ.get("CPMS_TEST_POSTGRES_URL")
#: The event loop async tests run on: the node's default (uvloop where installed), unless
#: CPMS_TEST_EVENT_LOOP=asyncio (or uvloop) says otherwise.
EVENT_LOOP = resolve(EventLoop(os.environ.get("CPMS_TEST_EVENT_LOOP", "auto")))
#: The operator API bearer token of the test nodes.
ADMIN_TOKEN = "test-operator-token-0123456789"
#: The location new stations join in the core's tests (``stations.admit_station``).
DEFAULT_LOCATION = DefaultLocation(
    id="DEFAULT", country_code="NL", party_id="CPM", name="Depot", address="Street 1",
    city="Town", postal_code="1234 AB", country="NLD", latitude="52.00000",
    longitude="4.00000", time_zone="Europe/Amsterdam",
)  # fmt: skip


def _find_examples() -> Path:
    """Find shared/ocpi/examples/2.2.1 beside the checkout (or name it in CPMS_SHARED_DIR)."""
    if "CPMS_SHARED_DIR" in os.environ:
        return Path(os.environ["CPMS_SHARED_DIR"]) / "ocpi" / "examples" / "2.2.1"
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "shared" / "ocpi" / "examples" / "2.2.1"
        if candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[2] / "shared" / "ocpi" / "examples" / "2.2.1"


#: The official OCPI 2.2.1 example payloads (shared/, never modified).
EXAMPLES = _find_examples()
