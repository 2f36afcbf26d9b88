"""OCPP 2.0.1: the messages stations send us, turned into core service calls.

``handlers(services)`` returns the dispatch table for ``OcppServer(handlers=...)``: the
station's life and transactions (``handlers``) plus its reports (``reports``). Which commands
we may send to a 2.0.1 station, and how the core's actions map to them, is in
``ocpp_gateway.station_port``.
"""

from ocpp_gateway.v201.handlers import handlers

__all__ = ["handlers"]
