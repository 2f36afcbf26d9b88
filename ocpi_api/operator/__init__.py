"""The operator API: JSON over HTTP under ``/api``, with bearer-token authentication.

Create, list, read, change and retire locations, EVSEs, connectors, stations, tariffs and
local tokens, and assign tariffs to connectors. Locations, EVSEs, connectors and tariffs are
OCPI 2.2.1 documents; an EVSE may carry ``station_id`` and ``ocpp_evse_id`` beside its OCPI
fields to say which station serves it. Send OCPP commands to connected stations, read each
station's log, and approve stations waiting in Pending. Described by ``/api/openapi.json``.
"""

from ocpi_api.operator.routes import create_operator_app

__all__ = ["create_operator_app"]
