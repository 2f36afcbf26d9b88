"""The gateway's side of the core's ``StationPort``: commands and actions become OCPP CALLs.

``send`` takes an OCPP command by name (the operator's way); ``act`` takes one of the core's
typed ``StationAction``s and maps it, through the ``ActionMapping`` of the station's OCPP
version (``ACTION_MAPPINGS``), to a command, then maps the station's answer to an
``ActionOutcome`` in OCPI's result vocabulary. OCPP 1.6 is mapped here (``V16Actions``);
2.0.1 gets its own mapping beside it, and ``act`` needs no change.

Before anything is sent: the station must be connected here, the command must be one the
central system may send in the station's OCPP version, its arguments must fit the schema,
and the station's boot must allow it (FIELD-NOTES 4): nothing before an accepted boot,
except while Pending what OCPP permits (1.6: anything but remote start and stop). The
station's answer is checked against the response schema; problems are reported with the
answer, not instead of it, since the station has acted either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, ClassVar, Protocol

from cpms.station_port import (
    ActionOutcome,
    ActionStatus,
    CancelReservation,
    ChargingLimit,
    ClearChargingLimit,
    CommandResult,
    CommandTimedOut,
    GetSchedule,
    InvalidCommand,
    LimitPeriod,
    Reserve,
    SetChargingLimit,
    StartCharging,
    StationAction,
    StationNotReady,
    StationOffline,
    StopCharging,
    UnknownCommand,
    Unlock,
    UnsupportedAction,
)
from ocpp_gateway import validation
from ocpp_gateway.rpc import CallError, OcppVersion
from ocpp_gateway.server import OcppServer, StationNotConnected
from ocpp_gateway.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "ACTION_MAPPINGS",
    "ALLOWED_WHILE_PENDING",
    "CSMS_COMMANDS",
    "ActionMapping",
    "GatewayStationPort",
    "V16Actions",
]

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


class ActionMapping(Protocol):
    """How one OCPP version does the core's typed actions."""

    actions: frozenset[type[StationAction]]
    """The action types this version can do."""

    def request(self, action: StationAction) -> tuple[str, dict[str, Any]]:
        """Return the command and arguments that ask the station for ``action``."""
        ...

    def outcome(self, action: StationAction, result: CommandResult) -> ActionOutcome:
        """Return what the station's answer to ``request(action)`` means."""
        ...


# OCPP 1.6 answers by command, in OCPI's CommandResultType vocabulary (OCPP 1.6 section 7).
_V16_STATUSES: Mapping[str, Mapping[str, ActionStatus]] = {
    "RemoteStartTransaction": {
        "Accepted": ActionStatus.ACCEPTED,
        "Rejected": ActionStatus.REJECTED,
    },
    "RemoteStopTransaction": {"Accepted": ActionStatus.ACCEPTED, "Rejected": ActionStatus.REJECTED},
    "ReserveNow": {
        "Accepted": ActionStatus.ACCEPTED,
        "Faulted": ActionStatus.EVSE_INOPERATIVE,
        "Occupied": ActionStatus.EVSE_OCCUPIED,
        "Rejected": ActionStatus.REJECTED,
        "Unavailable": ActionStatus.EVSE_INOPERATIVE,
    },
    # 1.6: Rejected means "no reservation with this id".
    "CancelReservation": {
        "Accepted": ActionStatus.ACCEPTED,
        "Rejected": ActionStatus.UNKNOWN_RESERVATION,
    },
    "UnlockConnector": {
        "Unlocked": ActionStatus.ACCEPTED,
        "UnlockFailed": ActionStatus.FAILED,
        "NotSupported": ActionStatus.NOT_SUPPORTED,
    },
    "SetChargingProfile": {
        "Accepted": ActionStatus.ACCEPTED,
        "Rejected": ActionStatus.REJECTED,
        "NotSupported": ActionStatus.NOT_SUPPORTED,
    },
    "ClearChargingProfile": {"Accepted": ActionStatus.ACCEPTED, "Unknown": ActionStatus.UNKNOWN},
    "GetCompositeSchedule": {"Accepted": ActionStatus.ACCEPTED, "Rejected": ActionStatus.REJECTED},
}
# CALLERROR codes that say "this station cannot do that at all".
_NOT_SUPPORTED_ERRORS = frozenset({"NotImplemented", "NotSupported"})
# A TxProfile sent with a remote start has no transaction yet; its id is fixed per
# connector, so a later remote start replaces it (1.6: same chargingProfileId replaces).
_REMOTE_START_PROFILE_ID_BASE = 2_000_000_000
# Our TxProfiles stack above a station's own (level 0) and replace each other by id.
_TX_STACK_LEVEL = 1
_ONE_DECIMAL = Decimal("0.1")  # 1.6 limits and minChargingRate are multiples of 0.1


class V16Actions:
    """The core's actions in OCPP 1.6: Core, Reservation and Smart Charging messages.

    Charging limits become TxProfiles whose ``chargingProfileId`` is the transaction id (our
    transaction ids are integers unique across the system), so setting a limit again
    replaces it and clearing it clears exactly that profile.
    """

    actions: frozenset[type[StationAction]] = frozenset(
        {
            StartCharging,
            StopCharging,
            Reserve,
            CancelReservation,
            Unlock,
            SetChargingLimit,
            ClearChargingLimit,
            GetSchedule,
        }
    )
    version: ClassVar[OcppVersion] = OcppVersion.V16

    def request(self, action: StationAction) -> tuple[str, dict[str, Any]]:
        """Return the OCPP 1.6 command and arguments for ``action``."""
        match action:
            case StartCharging(evse_number=evse, id_tag=id_tag, charging_profile=limit):
                arguments: dict[str, Any] = {"idTag": id_tag}
                if evse is not None:
                    arguments["connectorId"] = evse
                if limit is not None:
                    profile_id = _REMOTE_START_PROFILE_ID_BASE + (evse or 0)
                    arguments["chargingProfile"] = _tx_profile(profile_id, None, limit)
                return "RemoteStartTransaction", arguments
            case StopCharging(transaction_id=transaction_id):
                return "RemoteStopTransaction", {"transactionId": _integer(transaction_id)}
            case Reserve():
                arguments = {
                    "connectorId": action.evse_number,
                    "expiryDate": format_timestamp(action.expiry),
                    "idTag": action.id_tag,
                    "reservationId": action.reservation_id,
                }
                if action.parent_id_tag is not None:
                    arguments["parentIdTag"] = action.parent_id_tag
                return "ReserveNow", arguments
            case CancelReservation(reservation_id=reservation_id):
                return "CancelReservation", {"reservationId": reservation_id}
            case Unlock(evse_number=evse):
                # 1.6: a connector is an EVSE; there is no connector within it to name.
                return "UnlockConnector", {"connectorId": evse}
            case SetChargingLimit(evse_number=evse, transaction_id=transaction_id, limit=limit):
                profile = _tx_profile(_integer(transaction_id), transaction_id, limit)
                return "SetChargingProfile", {"connectorId": evse, "csChargingProfiles": profile}
            case ClearChargingLimit(transaction_id=transaction_id):
                # The id alone: 1.6 stations differ on how they combine id with the criteria.
                return "ClearChargingProfile", {"id": _integer(transaction_id)}
            case GetSchedule(evse_number=evse, duration=duration, rate_unit=unit):
                arguments = {"connectorId": evse, "duration": duration}
                if unit is not None:
                    arguments["chargingRateUnit"] = unit
                return "GetCompositeSchedule", arguments
        raise TypeError(f"not a station action: {action!r}")

    def outcome(self, action: StationAction, result: CommandResult) -> ActionOutcome:
        """Return what the station's answer means, in OCPI's result vocabulary."""
        if not result.answered or result.response is None:
            status = (
                ActionStatus.NOT_SUPPORTED
                if result.error_code in _NOT_SUPPORTED_ERRORS
                else ActionStatus.FAILED
            )
            return ActionOutcome(
                status,
                message=f"station answered {result.error_code}: {result.error_description}".strip(),
            )
        answer = result.response
        statuses = _V16_STATUSES[result.command]
        status = statuses.get(str(answer.get("status")))
        if status is None:
            return ActionOutcome(
                ActionStatus.FAILED,
                answer,
                message=f"station answered {result.command} with status {answer.get('status')!r}",
            )
        message = "; ".join(result.problems)
        if isinstance(action, GetSchedule) and status is ActionStatus.ACCEPTED:
            return ActionOutcome(status, answer, message, schedule=_schedule_of(answer))
        return ActionOutcome(status, answer, message)


def _integer(transaction_id: str) -> int:
    try:
        return int(transaction_id)
    except ValueError:
        raise InvalidCommand(
            f"transaction id {transaction_id!r} is not an OCPP 1.6 integer",
            [f"transactionId: {transaction_id!r}"],
        ) from None


def _tenths(value: Decimal) -> float:
    return float(value.quantize(_ONE_DECIMAL, rounding=ROUND_HALF_EVEN))


def _tx_profile(
    profile_id: int, transaction_id: str | None, limit: ChargingLimit
) -> dict[str, Any]:
    """Return ``limit`` as an OCPP 1.6 TxProfile."""
    periods = []
    for period in limit.periods:
        item: dict[str, Any] = {"startPeriod": period.start_period, "limit": _tenths(period.limit)}
        if period.number_phases is not None:
            item["numberPhases"] = period.number_phases
        periods.append(item)
    schedule: dict[str, Any] = {
        "chargingRateUnit": limit.rate_unit,
        "chargingSchedulePeriod": periods,
    }
    if limit.duration is not None:
        schedule["duration"] = limit.duration
    if limit.start is not None:
        schedule["startSchedule"] = format_timestamp(limit.start)
    if limit.min_rate is not None:
        schedule["minChargingRate"] = _tenths(limit.min_rate)
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": _TX_STACK_LEVEL,
        "chargingProfilePurpose": "TxProfile",
        # Absolute needs a start; without one the periods count from the transaction's start.
        "chargingProfileKind": "Absolute" if limit.start is not None else "Relative",
        "chargingSchedule": schedule,
    }
    if transaction_id is not None:
        profile["transactionId"] = _integer(transaction_id)
    return profile


def _schedule_of(answer: Mapping[str, Any]) -> ChargingLimit | None:
    """Return a 1.6 GetCompositeSchedule answer's schedule, or None when it sent none."""
    schedule = answer.get("chargingSchedule")
    if not isinstance(schedule, Mapping):
        return None
    start_text = answer.get("scheduleStart") or schedule.get("startSchedule")
    start = (
        parse_timestamp(start_text, path="scheduleStart", lenient=True)
        if isinstance(start_text, str)
        else None
    )
    minimum = schedule.get("minChargingRate")
    return ChargingLimit(
        rate_unit="A" if schedule.get("chargingRateUnit") == "A" else "W",
        periods=tuple(
            LimitPeriod(
                start_period=int(period["startPeriod"]),
                limit=Decimal(str(period["limit"])),
                number_phases=period.get("numberPhases"),
            )
            for period in schedule.get("chargingSchedulePeriod", ())
        ),
        start=start,
        duration=schedule.get("duration"),
        min_rate=Decimal(str(minimum)) if minimum is not None else None,
    )


ACTION_MAPPINGS: Mapping[OcppVersion, ActionMapping] = {OcppVersion.V16: V16Actions()}
"""How each OCPP version does the core's actions (2.0.1: issue 7)."""


class GatewayStationPort:
    """Sends commands and actions to stations connected to one ``OcppServer``."""

    def __init__(self, server: OcppServer) -> None:
        self._server = server

    def commands(self, station_id: str) -> Sequence[str]:
        """The commands the central system may send to this station's OCPP version."""
        version = self._server.version_of(station_id)
        return CSMS_COMMANDS.get(version, ()) if version is not None else ()

    def actions(self, station_id: str) -> frozenset[type[StationAction]]:
        """The action types this station's OCPP version can do (empty when not connected)."""
        version = self._server.version_of(station_id)
        mapping = ACTION_MAPPINGS.get(version) if version is not None else None
        return mapping.actions if mapping is not None else frozenset()

    async def act(
        self,
        station_id: str,
        action: StationAction,
        *,
        timeout: float,  # noqa: ASYNC109 - the port owns the deadline, see StationPort
    ) -> ActionOutcome:
        """Map ``action`` to the station's OCPP version, send it, map the answer back.

        Raises what ``send`` raises when nothing could be sent, and ``UnsupportedAction``
        for an action the version cannot do; a station that does not answer in time is a
        ``TIMEOUT`` outcome.
        """
        version = self._server.version_of(station_id)
        if version is None:
            raise StationOffline(station_id)
        mapping = ACTION_MAPPINGS.get(version)
        if mapping is None or type(action) not in mapping.actions:
            raise UnsupportedAction(station_id, action)
        command, arguments = mapping.request(action)
        try:
            result = await self.send(station_id, command, arguments, timeout=timeout)
        except CommandTimedOut as timed_out:
            return ActionOutcome(ActionStatus.TIMEOUT, message=str(timed_out))
        return mapping.outcome(action, result)

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
