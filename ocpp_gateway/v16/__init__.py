"""OCPP 1.6J: the messages stations send us, turned into core service calls.

``handlers(services)`` returns the dispatch table for ``OcppServer(handlers=...)``; which
commands we may send to a 1.6 station, and when, is in ``ocpp_gateway.station_port``.
"""

from ocpp_gateway.v16.handlers import handlers

__all__ = ["handlers"]
