"""OCPP connector status to OCPI EVSE status: the one place this mapping is written down.

OCPI's EVSE status answers "can a driver use this EVSE now?", so every OCPP state in which a
vehicle occupies the EVSE, charging or not yet or no longer, is ``CHARGING`` ("in use").

=====================  =====================  ==============
OCPP 1.6               OCPP 2.0.1             OCPI 2.2.1
=====================  =====================  ==============
Available              Available              AVAILABLE
Preparing              Occupied               CHARGING
Charging               Occupied               CHARGING
SuspendedEV            Occupied               CHARGING
SuspendedEVSE          Occupied               CHARGING
Finishing              Occupied               CHARGING
Reserved               Reserved               RESERVED
Unavailable            Unavailable            INOPERATIVE
Faulted                Faulted                OUTOFORDER
(anything else)        (anything else)        UNKNOWN
=====================  =====================  ==============

A station that goes offline makes its EVSEs ``UNKNOWN`` (``cpms.station_lifecycle``).
"""

from __future__ import annotations

from ocpp_gateway.rpc import OcppVersion

__all__ = ["UNKNOWN", "ocpi_status"]

UNKNOWN = "UNKNOWN"

_TO_OCPI: dict[OcppVersion, dict[str, str]] = {
    OcppVersion.V16: {
        "Available": "AVAILABLE",
        "Preparing": "CHARGING",
        "Charging": "CHARGING",
        "SuspendedEV": "CHARGING",
        "SuspendedEVSE": "CHARGING",
        "Finishing": "CHARGING",
        "Reserved": "RESERVED",
        "Unavailable": "INOPERATIVE",
        "Faulted": "OUTOFORDER",
    },
    OcppVersion.V201: {
        "Available": "AVAILABLE",
        "Occupied": "CHARGING",
        "Reserved": "RESERVED",
        "Unavailable": "INOPERATIVE",
        "Faulted": "OUTOFORDER",
    },
}


def ocpi_status(version: OcppVersion, ocpp_status: str) -> str:
    """Return the OCPI EVSE status for an OCPP connector status (UNKNOWN if unheard of)."""
    return _TO_OCPI[version].get(ocpp_status, UNKNOWN)
