"""A fleet of simulated OCPP 1.6J and 2.0.1 charging stations, a client on the wire only.

The simulator imports nothing from the server's packages (``cpms``, ``ocpp_gateway``,
``ocpi_api``): it speaks OCPP-J over a websocket as a real station does, so what it proves about
the server holds for real stations too.

Layout, from the wire up:

- ``ocppj``: OCPP-J frames (CALL, CALLRESULT, CALLERROR) as values; no I/O.
- ``link``: one websocket to the CSMS: correlated calls, incoming calls, faults, figures.
- ``templates``: what a station model is (vendor, EVSEs, connectors, power), read from JSON.
- ``physics``: an EV's battery and charge curve, the power a connector delivers, the register.
- ``station``: a station's life (boot, status, heartbeat, transactions, offline queue), with
  ``v16`` and ``v201`` as its two dialects.
- ``scenarios``: the automatic transaction generator and scripted scenarios.
- ``fleet``: many stations in one process, with live progress and the closing figures.
- ``cli``: ``cpms simulate`` (also ``python -m simulator``).
"""

from simulator.fleet import Fleet, FleetOptions, FleetReport

__all__ = ["Fleet", "FleetOptions", "FleetReport"]
