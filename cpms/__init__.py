"""The domain core of the CPMS: model, services, events, persistence.

Knows no protocol: no OCPP, no OCPI, no websockets, no HTTP. The adapters (``ocpp_gateway``,
``ocpi_api``) call its services; ``cpms.runtime`` is the one module that wires them together
and ``cpms.cli`` is the ``cpms`` command.
"""
