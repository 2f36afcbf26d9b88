"""The domain model: SQLAlchemy 2.0 typed ORM classes, one module per aggregate.

Shaped like OCPI 2.2.1 where OCPI defines the concept (Location, EVSE, Connector, Tariff,
Token, Session, CDR) and like OCPP where only OCPP does (ChargingStation). Everything stored
is UTC and SI-normalised (Wh, W, A); money is ``Decimal``.
"""

from cpms.model.base import Base, utcnow
from cpms.model.cdr import Cdr
from cpms.model.device_model import DeviceMonitor, DeviceVariable
from cpms.model.hub_client import HubClient
from cpms.model.location import Connector, Evse, Location
from cpms.model.ocpi import OcpiCommand, OcpiPush
from cpms.model.outbox import AdminToken, OutboxEntry
from cpms.model.partner import OcpiPartner
from cpms.model.reservation import Reservation
from cpms.model.session import BilledReading, ChargingPeriod, MeterSample, Session
from cpms.model.station import ChargingStation
from cpms.model.station_event import StationEvent
from cpms.model.tariff import Tariff
from cpms.model.token import Token
from cpms.model.transaction_event import TransactionEvent
from cpms.model.transaction_number import TransactionNumber

__all__ = [
    "AdminToken",
    "Base",
    "BilledReading",
    "Cdr",
    "ChargingPeriod",
    "ChargingStation",
    "Connector",
    "DeviceMonitor",
    "DeviceVariable",
    "Evse",
    "HubClient",
    "Location",
    "MeterSample",
    "OcpiCommand",
    "OcpiPartner",
    "OcpiPush",
    "OutboxEntry",
    "Reservation",
    "Session",
    "StationEvent",
    "Tariff",
    "Token",
    "TransactionEvent",
    "TransactionNumber",
    "utcnow",
]
