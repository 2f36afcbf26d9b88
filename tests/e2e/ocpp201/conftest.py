"""Fixtures of the OCPP 2.0.1 end-to-end tests: the same real nodes as the 1.6 tests.

The node fixtures (``start_node``, ``open_node``, ``known_node``) are the 1.6 tests' own,
imported so both versions run against identically built nodes; stations connect with
``node.connect(station_id, version="ocpp2.0.1")``.
"""

from __future__ import annotations

from e2e.ocpp16.conftest import known_node, node_settings, open_node, start_node

__all__ = ["known_node", "node_settings", "open_node", "start_node"]
