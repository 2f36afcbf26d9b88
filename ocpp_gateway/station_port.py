"""The gateway's side of the core's ``StationPort``: commands become OCPP CALLs.

Before anything is sent: the station must be connected here, the command must be one the
central system may send in the station's OCPP version, its arguments must fit the schema,
and the station's boot must allow it (FIELD-NOTES 4): nothing before an accepted boot,
except while Pending what OCPP permits (1.6: anything but remote start and stop). The
station's answer is checked against the response schema; problems are reported with the
answer, not instead of it, since the station has acted either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cpms.station_port import (
    CommandResult,
    CommandTimedOut,
    InvalidCommand,
    StationNotReady,
    StationOffline,
    UnknownCommand,
)
from ocpp_gateway import validation
from ocpp_gateway.rpc import CallError, OcppVersion
from ocpp_gateway.server import OcppServer, StationNotConnected

__all__ = ["ALLOWED_WHILE_PENDING", "CSMS_COMMANDS", "GatewayStationPort"]

CSMS_COMMANDS: Mapping[OcppVersion, tuple[str, ...]] = {
    OcppVersion.V16: (
        # Core
        "ChangeAvailability", "ChangeConfiguration", "ClearCache", "DataTransfer",
        "GetConfiguration", "RemoteStartTransaction", "RemoteStopTransaction", "Reset",
        "UnlockConnector",
        # Firmware Management
        "GetDiagnostics", "UpdateFirmware",
        # Local Auth List Management
        "GetLocalListVersion", "SendLocalList",
        # Reservation
        "CancelReservation", "ReserveNow",
        # Smart Charging
        "ClearChargingProfile", "GetCompositeSchedule", "SetChargingProfile",
        # Remote Trigger
        "TriggerMessage",
        # Security extension
        "CertificateSigned", "DeleteCertificate", "ExtendedTriggerMessage",
        "GetInstalledCertificateIds", "GetLog", "InstallCertificate", "SignedUpdateFirmware",
    ),
}  # fmt: skip
"""What the central system may send, per version (the rest are the station's to send)."""

_NOT_WHILE_PENDING: Mapping[OcppVersion, frozenset[str]] = {
    # OCPP 1.6 section 4.2.1: while Pending, no remote start or stop.
    OcppVersion.V16: frozenset({"RemoteStartTransaction", "RemoteStopTransaction"}),
}
ALLOWED_WHILE_PENDING = {
    version: frozenset(commands) - _NOT_WHILE_PENDING.get(version, frozenset())
    for version, commands in CSMS_COMMANDS.items()
}


class GatewayStationPort:
    """Sends commands to stations connected to one ``OcppServer``."""

    def __init__(self, server: OcppServer) -> None:
        self._server = server

    def commands(self, station_id: str) -> Sequence[str]:
        """The commands the central system may send to this station's OCPP version."""
        version = self._server.version_of(station_id)
        return CSMS_COMMANDS.get(version, ()) if version is not None else ()

    async def send(
        self,
        station_id: str,
        command: str,
        arguments: Mapping[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 - the port owns the deadline, see StationPort
    ) -> CommandResult:
        """Check, send and return the station's answer; see the module docstring."""
        version = self._server.version_of(station_id)
        state = self._server.connection_state(station_id)
        if version is None or state is None:
            raise StationOffline(station_id)
        available = CSMS_COMMANDS.get(version, ())
        if command not in available:
            raise UnknownCommand(command, available)
        try:
            validation.check_outgoing(version, command, dict(arguments))
        except validation.InvalidPayload as invalid:
            problems = [f"{v.path or '(payload)'}: {v.message}" for v in invalid.violations]
            raise InvalidCommand(
                f"{command} arguments do not fit OCPP {version.value.removeprefix('ocpp')}",
                problems,
            ) from None
        self._check_boot(station_id, version, state.boot_status, command)
        try:
            response = await self._server.call(station_id, command, arguments, timeout=timeout)
        except StationNotConnected:
            raise StationOffline(station_id) from None
        except TimeoutError:
            raise CommandTimedOut(
                f"station {station_id!r} did not answer {command} within {timeout:g} s"
            ) from None
        if isinstance(response, CallError):
            return CommandResult(
                command,
                error_code=response.error_code,
                error_description=response.error_description,
                error_details=response.error_details,
            )
        problems = validation.check_response(version, command, response.payload, lenient=False)
        return CommandResult(
            command,
            response=response.payload,
            problems=tuple(f"{v.path or '(payload)'}: {v.message}" for v in problems),
        )

    @staticmethod
    def _check_boot(
        station_id: str, version: OcppVersion, boot_status: str | None, command: str
    ) -> None:
        if boot_status == "Accepted":
            return
        if boot_status == "Pending" and command in ALLOWED_WHILE_PENDING.get(version, ()):
            return
        if boot_status is None:
            why = "has not booted yet (no accepted BootNotification)"
        else:
            why = f"boot status is {boot_status}"
        raise StationNotReady(f"station {station_id!r} {why}: {command} may not be sent now")
