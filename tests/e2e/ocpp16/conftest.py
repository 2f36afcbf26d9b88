"""Fixtures of the OCPP 1.6 end-to-end tests: real nodes on the test database.

Every node is a real ``cpms.runtime.Runtime`` (OCPP websocket server, HTTP server, group
committer, database) on loopback ports, on the database of the ``settings`` fixture, so each
test runs on SQLite and, when ``CPMS_TEST_POSTGRES_URL`` is set, on PostgreSQL. Stations talk
to it through ``raw_station`` (plain JSON text frames); tests read the rows it wrote through
``e2e.ocpp16.node.Node``.

- ``open_node``: admission ``open`` (unknown station ids are registered on connect);
- ``known_node``: admission ``known`` (only stations created beforehand may connect);
- ``start_node``: starts a node with other settings (pending admission, TLS, ...).

Every node sends ``HEARTBEAT_INTERVAL`` (not the default) at boot, so a test can tell the
setting from a constant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from e2e.ocpp16.node import HEARTBEAT_INTERVAL, Node, NodeStarter

from cpms.admission import AdmissionPolicy
from cpms.config import Settings
from cpms.runtime import Runtime


@pytest.fixture
def node_settings(settings: Settings) -> Settings:
    """The shared test settings with a recognisable heartbeat interval."""
    return settings.replace(heartbeat_interval=HEARTBEAT_INTERVAL)


@pytest.fixture
async def start_node(node_settings: Settings) -> AsyncIterator[NodeStarter]:
    """Start nodes with changed settings; all are stopped at the end of the test."""
    started: list[Runtime] = []

    async def start(**changes: Any) -> Node:
        runtime = Runtime(node_settings.replace(**changes), node=f"e2e-{len(started)}")
        await runtime.start()
        started.append(runtime)
        return Node(runtime)

    try:
        yield start
    finally:
        for runtime in reversed(started):
            await runtime.stop()


@pytest.fixture
async def open_node(start_node: NodeStarter) -> Node:
    """A node that registers unknown stations on connect."""
    return await start_node(station_admission=AdmissionPolicy.OPEN)


@pytest.fixture
async def known_node(start_node: NodeStarter) -> Node:
    """A node that admits only stations created beforehand."""
    return await start_node(station_admission=AdmissionPolicy.KNOWN)
