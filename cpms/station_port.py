"""The station port: how the core asks a station to act, whatever protocol it speaks.

Two ways in, both implemented by the gateway for the station's OCPP version:

- ``send``: the operator's way. The operator names an OCPP command and its arguments, in
  OCPP's own shapes (``Reset`` with ``{"type": "Soft"}``): an operator reading the OCPP
  specification knows them, and the gateway checks arguments against the message schemas
  before anything reaches the station. Outcomes are values (``CommandResult``: the station's
  answer or its CALLERROR) or one of the errors below.
- ``act``: the core's way. Services name a typed, protocol-neutral ``StationAction``
  (``StartCharging``, ``Reserve``, ``SetChargingLimit``...) and get an ``ActionOutcome``
  whose ``status`` speaks OCPI's CommandResultType vocabulary (``ACCEPTED``, ``EVSE_OCCUPIED``,
  ``TIMEOUT``...), with the station's raw answer beside it. The core never sees an OCPP
  message name; the gateway maps each action to the message of the station's version.

Both raise ``StationOffline``, ``StationNotReady`` (and ``act`` also ``UnsupportedAction``)
when nothing could be sent; everything that happened once the station was asked, a missing
answer included, is an outcome.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from cpms.errors import Conflict, CpmsError, InvalidRequest, NotFound

__all__ = [
    "ActionOutcome",
    "ActionStatus",
    "CancelReservation",
    "ChargingLimit",
    "ClearChargingLimit",
    "CommandResult",
    "CommandTimedOut",
    "GetSchedule",
    "InvalidCommand",
    "LimitPeriod",
    "Reserve",
    "SetChargingLimit",
    "StartCharging",
    "StationAction",
    "StationNotReady",
    "StationOffline",
    "StationPort",
    "StopCharging",
    "UnknownCommand",
    "Unlock",
    "UnsupportedAction",
]


class StationOffline(Conflict):
    """The station has no open connection."""

    def __init__(self, station_id: str) -> None:
        super().__init__(f"station {station_id!r} is not connected")
        self.station_id = station_id


class StationNotReady(Conflict):
    """The station is connected but its boot is not (yet) accepted for this command."""


class CommandTimedOut(CpmsError):
    """The station did not answer in time; a late answer will be dropped."""


class UnknownCommand(NotFound):
    """No such command for the station's protocol version."""

    def __init__(self, command: str, available: Sequence[str]) -> None:
        super().__init__("command", command)
        self.available = tuple(available)


class InvalidCommand(InvalidRequest):
    """The arguments do not fit the command's schema; nothing was sent."""

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class UnsupportedAction(CpmsError):
    """The station's protocol version (as the gateway maps it) has no way to do this action."""

    def __init__(self, station_id: str, action: StationAction) -> None:
        super().__init__(f"station {station_id!r} cannot be asked to {type(action).__name__}")
        self.station_id = station_id
        self.action = action


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What the station answered."""

    command: str
    response: dict[str, Any] | None = None
    """The station's answer (OCPP CALLRESULT payload), None when it answered an error."""
    error_code: str | None = None
    error_description: str = ""
    error_details: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    """Where the answer breaks the message schema (kept; the answer is still returned)."""

    @property
    def answered(self) -> bool:
        """Whether the station answered with a result rather than an error."""
        return self.error_code is None


# Typed actions


@dataclass(frozen=True, slots=True)
class LimitPeriod:
    """One period of a charging limit: from ``start_period`` seconds on, at most ``limit``."""

    start_period: int
    limit: Decimal
    number_phases: int | None = None


@dataclass(frozen=True, slots=True)
class ChargingLimit:
    """A charging schedule of maximum rates (OCPI ChargingProfile, OCPP chargingSchedule).

    ``rate_unit`` "W" is total power over all phases, "A" current per phase (both OCPI and
    OCPP define them so). Without ``start`` the periods count from the start of charging.
    """

    rate_unit: Literal["W", "A"]
    periods: tuple[LimitPeriod, ...]
    start: datetime | None = None
    duration: int | None = None
    """Seconds the schedule lasts; None: until the last period ends the transaction."""
    min_rate: Decimal | None = None


@dataclass(frozen=True, slots=True)
class StartCharging:
    """Start charging for ``id_tag`` on EVSE ``evse_number`` (None: the station chooses)."""

    evse_number: int | None
    id_tag: str
    charging_profile: ChargingLimit | None = None


@dataclass(frozen=True, slots=True)
class StopCharging:
    """Stop the transaction the station knows as ``transaction_id``."""

    transaction_id: str


@dataclass(frozen=True, slots=True)
class Reserve:
    """Hold EVSE ``evse_number`` (0: any EVSE of the station) for ``id_tag`` until ``expiry``.

    ``reservation_id`` is ours (``Reservation.id``), never a partner's; the same id again
    replaces the reservation.
    """

    reservation_id: int
    evse_number: int
    id_tag: str
    expiry: datetime
    parent_id_tag: str | None = None


@dataclass(frozen=True, slots=True)
class CancelReservation:
    """Cancel reservation ``reservation_id`` (ours)."""

    reservation_id: int


@dataclass(frozen=True, slots=True)
class Unlock:
    """Unlock a connector: a help-desk action for a cable stuck after a session."""

    evse_number: int
    connector_number: int = 1


@dataclass(frozen=True, slots=True)
class SetChargingLimit:
    """Limit the charging of a running transaction (it replaces the previous limit)."""

    evse_number: int
    transaction_id: str
    limit: ChargingLimit


@dataclass(frozen=True, slots=True)
class ClearChargingLimit:
    """Remove the limit ``SetChargingLimit`` set on a transaction."""

    evse_number: int
    transaction_id: str


@dataclass(frozen=True, slots=True)
class GetSchedule:
    """Ask which limits apply on an EVSE for the next ``duration`` seconds."""

    evse_number: int
    duration: int
    rate_unit: Literal["W", "A"] | None = None


StationAction = (
    StartCharging
    | StopCharging
    | Reserve
    | CancelReservation
    | Unlock
    | SetChargingLimit
    | ClearChargingLimit
    | GetSchedule
)
"""Everything the core may ask a station to do through ``StationPort.act``."""


class ActionStatus(enum.StrEnum):
    """How a station took an action: OCPI's CommandResultType, plus ``UNKNOWN``."""

    ACCEPTED = "ACCEPTED"
    CANCELED_RESERVATION = "CANCELED_RESERVATION"
    EVSE_OCCUPIED = "EVSE_OCCUPIED"
    EVSE_INOPERATIVE = "EVSE_INOPERATIVE"
    FAILED = "FAILED"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    REJECTED = "REJECTED"
    TIMEOUT = "TIMEOUT"
    UNKNOWN_RESERVATION = "UNKNOWN_RESERVATION"
    UNKNOWN = "UNKNOWN"
    """Nothing matched the request (no charging limit to clear): OCPI's profile result."""


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What became of an action the station was asked to do."""

    status: ActionStatus
    answer: dict[str, Any] | None = None
    """The station's answer as it sent it (None without one)."""
    message: str = ""
    """Why, in words, when the status alone does not say it."""
    schedule: ChargingLimit | None = None
    """For ``GetSchedule``: the limits that apply, from ``schedule.start`` on."""

    @property
    def accepted(self) -> bool:
        """Whether the station did (or will do) what it was asked."""
        return self.status is ActionStatus.ACCEPTED


class StationPort(Protocol):
    """Implemented by the gateway; see the module docstring."""

    def actions(self, station_id: str) -> frozenset[type[StationAction]]:
        """The action types the station can be asked for (empty when not connected here)."""
        ...

    async def act(
        self,
        station_id: str,
        action: StationAction,
        *,
        timeout: float,  # noqa: ASYNC109 - an action without a deadline blocks the station
    ) -> ActionOutcome:
        """Ask the station to act; its answer (or TIMEOUT after ``timeout`` s) as an outcome."""
        ...

    def commands(self, station_id: str) -> Sequence[str]:
        """The command names the station's protocol version knows (empty when offline)."""
        ...

    async def send(
        self,
        station_id: str,
        command: str,
        arguments: Mapping[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 - a command without a deadline blocks the station
    ) -> CommandResult:
        """Send a command and return the station's answer within ``timeout`` seconds."""
        ...
