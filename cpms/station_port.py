"""The station port: how the core asks a station to act, whatever protocol it speaks.

The core (and the operator API through it) names a command and its arguments; the gateway
implements ``StationPort`` and speaks the station's OCPP version. Command names and argument
shapes are OCPP's own (``Reset`` with ``{"type": "Soft"}``): an operator reading the OCPP
specification knows them, and the gateway checks arguments against the message schemas
before anything reaches the station.

Outcomes are values (``CommandResult``: the station's answer or its CALLERROR) or one of the
errors below, which adapters map to their status codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cpms.errors import Conflict, CpmsError, InvalidRequest, NotFound

__all__ = [
    "CommandResult",
    "CommandTimedOut",
    "InvalidCommand",
    "StationNotReady",
    "StationOffline",
    "StationPort",
    "UnknownCommand",
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


class StationPort(Protocol):
    """Implemented by the gateway; see the module docstring."""

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
