"""Domain events: typed, past-tense facts about changes the outside world cares about.

Services record events on their unit of work; ``UnitOfWork.commit`` writes each one to the
outbox in the same transaction as the change, then hands them to in-process subscribers.
An event knows its ``topic`` and which aggregate it is about; its payload is its fields.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

__all__ = [
    "CdrIssued",
    "ConnectorChanged",
    "DomainEvent",
    "EvseChanged",
    "EvseStatusChanged",
    "LocationChanged",
    "SessionEnded",
    "SessionEvent",
    "SessionStarted",
    "SessionUpdated",
    "StationChanged",
    "StationConnectionChanged",
    "StationRegistered",
    "TariffChanged",
    "TokenChanged",
]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@functools.cache
def _field_names(event_class: type[DomainEvent]) -> tuple[str, ...]:
    # dataclasses.fields() walks the class's fields again on every call: once per event.
    return tuple(f.name for f in dataclasses.fields(event_class))


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """Base of every event. Subclasses set ``topic`` and ``aggregate``."""

    topic: ClassVar[str]
    aggregate: ClassVar[str]
    occurred_at: datetime

    @property
    def aggregate_id(self) -> str:
        """The id of the object the event is about."""
        raise NotImplementedError

    def payload(self) -> dict[str, Any]:
        """Return the event's fields as JSON-ready values."""
        return {name: _jsonable(getattr(self, name)) for name in _field_names(type(self))}


@dataclass(frozen=True, kw_only=True)
class LocationChanged(DomainEvent):
    """A location was created, replaced, changed or retired."""

    topic = "location.changed"
    aggregate = "location"
    location_id: str
    fields: tuple[str, ...] = ()
    """Names of the OCPI fields that changed; empty means "the whole object"."""

    @property
    def aggregate_id(self) -> str:
        return self.location_id


@dataclass(frozen=True, kw_only=True)
class EvseChanged(DomainEvent):
    """An EVSE was added, replaced, changed or removed (status REMOVED)."""

    topic = "evse.changed"
    aggregate = "location"
    location_id: str
    evse_uid: str
    fields: tuple[str, ...] = ()

    @property
    def aggregate_id(self) -> str:
        return self.location_id


@dataclass(frozen=True, kw_only=True)
class EvseStatusChanged(DomainEvent):
    """An EVSE's status changed: reported by its station, or UNKNOWN when the station left."""

    topic = "evse.status_changed"
    aggregate = "location"
    location_id: str
    evse_uid: str
    status: str

    @property
    def aggregate_id(self) -> str:
        return self.location_id


@dataclass(frozen=True, kw_only=True)
class ConnectorChanged(DomainEvent):
    """A connector was added, replaced, changed (e.g. its tariffs) or removed."""

    topic = "connector.changed"
    aggregate = "location"
    location_id: str
    evse_uid: str
    connector_id: str
    fields: tuple[str, ...] = ()
    removed: bool = False

    @property
    def aggregate_id(self) -> str:
        return self.location_id


@dataclass(frozen=True, kw_only=True)
class TariffChanged(DomainEvent):
    """A tariff was created, replaced or retired."""

    topic = "tariff.changed"
    aggregate = "tariff"
    tariff_id: str
    retired: bool = False

    @property
    def aggregate_id(self) -> str:
        return self.tariff_id


@dataclass(frozen=True, kw_only=True)
class StationRegistered(DomainEvent):
    """A charging station came into existence (by the operator or by open admission)."""

    topic = "station.registered"
    aggregate = "station"
    station_id: str
    location_id: str
    registered_by: str

    @property
    def aggregate_id(self) -> str:
        return self.station_id


@dataclass(frozen=True, kw_only=True)
class StationChanged(DomainEvent):
    """A station's settings changed, or it was retired."""

    topic = "station.changed"
    aggregate = "station"
    station_id: str
    fields: tuple[str, ...] = ()
    retired: bool = False

    @property
    def aggregate_id(self) -> str:
        return self.station_id


@dataclass(frozen=True, kw_only=True)
class TokenChanged(DomainEvent):
    """A token was created, changed or invalidated."""

    topic = "token.changed"
    aggregate = "token"
    country_code: str
    party_id: str
    uid: str
    type: str

    @property
    def aggregate_id(self) -> str:
        return f"{self.country_code}/{self.party_id}/{self.uid}/{self.type}"


@dataclass(frozen=True, kw_only=True)
class StationConnectionChanged(DomainEvent):
    """A station came online or went offline (closed, replaced elsewhere, or fell silent)."""

    topic = "station.connection_changed"
    aggregate = "station"
    station_id: str
    online: bool
    reason: str = ""

    @property
    def aggregate_id(self) -> str:
        return self.station_id


@dataclass(frozen=True, kw_only=True)
class SessionEvent(DomainEvent):
    """Base of the session lifecycle events."""

    aggregate = "session"
    session_id: str
    status: str

    @property
    def aggregate_id(self) -> str:
        return self.session_id


@dataclass(frozen=True, kw_only=True)
class SessionStarted(SessionEvent):
    """A charging session began."""

    topic = "session.started"


@dataclass(frozen=True, kw_only=True)
class SessionUpdated(SessionEvent):
    """A running session got new meter readings or another change."""

    topic = "session.updated"


@dataclass(frozen=True, kw_only=True)
class SessionEnded(SessionEvent):
    """A session ended (COMPLETED, or INVALID when it was never authorized)."""

    topic = "session.ended"


@dataclass(frozen=True, kw_only=True)
class CdrIssued(DomainEvent):
    """A CDR (or a credit CDR) was issued; it must reach the eMSP that pays for it."""

    topic = "cdr.issued"
    aggregate = "cdr"
    cdr_id: str
    session_id: str | None
    credit: bool = False

    @property
    def aggregate_id(self) -> str:
        return self.cdr_id
