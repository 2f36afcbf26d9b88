"""The gateway's side of the core's ``StationPort``: commands and actions become OCPP CALLs.

``send`` takes an OCPP command by name (the operator's way); ``act`` takes one of the core's
typed ``StationAction``s and maps it, through the ``ActionMapping`` of the station's OCPP
version (``ACTION_MAPPINGS``), to a command, then maps the station's answer to an
``ActionOutcome`` in OCPI's result vocabulary. Both OCPP versions are mapped here, 1.6 by
``V16Actions`` and 2.0.1 by ``V201Actions``; they share how an answer becomes an outcome
(``_AnswerMapping``) and differ in messages, identifiers and status tables.

Before anything is sent: the station must be connected here, the command must be one the
central system may send in the station's OCPP version, its arguments must fit the schema,
and the station's boot must allow it (FIELD-NOTES 4): nothing before an accepted boot,
except while Pending what OCPP permits (1.6: anything but RemoteStart/StopTransaction;
2.0.1: anything but RequestStart/StopTransaction). The station's answer is checked against
the response schema; problems are reported with the answer, not instead of it, since the
station has acted either way.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    "V201Actions",
    "profile_id_of",
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
    # By functional block of OCPP 2.0.1 Part 2 (the letter is the block's).
    OcppVersion.V201: (
        # A Security
        "CertificateSigned",
        # B Provisioning
        "GetBaseReport", "GetReport", "GetVariables", "Reset", "SetNetworkProfile",
        "SetVariables",
        # C Authorization
        "ClearCache",
        # D Local Authorization List Management
        "GetLocalListVersion", "SendLocalList",
        # E Transactions
        "GetTransactionStatus",
        # F Remote Control
        "RequestStartTransaction", "RequestStopTransaction", "TriggerMessage", "UnlockConnector",
        # G Availability
        "ChangeAvailability",
        # H Reservation
        "CancelReservation", "ReserveNow",
        # I Tariff and Cost
        "CostUpdated",
        # K Smart Charging
        "ClearChargingProfile", "GetChargingProfiles", "GetCompositeSchedule",
        "SetChargingProfile",
        # L Firmware Management
        "PublishFirmware", "UnpublishFirmware", "UpdateFirmware",
        # M ISO 15118 Certificate Management
        "DeleteCertificate", "GetInstalledCertificateIds", "InstallCertificate",
        # N Diagnostics
        "ClearVariableMonitoring", "CustomerInformation", "GetLog", "GetMonitoringReport",
        "SetMonitoringBase", "SetMonitoringLevel", "SetVariableMonitoring",
        # O Display Message
        "ClearDisplayMessage", "GetDisplayMessages", "SetDisplayMessage",
        # P Data Transfer
        "DataTransfer",
    ),
}  # fmt: skip
"""What the central system may send, per version (the rest are the station's to send)."""

_NOT_WHILE_PENDING: Mapping[OcppVersion, frozenset[str]] = {
    # OCPP 1.6 section 4.2.1: while Pending, no remote start or stop.
    OcppVersion.V16: frozenset({"RemoteStartTransaction", "RemoteStopTransaction"}),
    # OCPP 2.0.1 Part 2 B02.FR.05: a Pending station answers RequestStartTransaction and
    # RequestStopTransaction Rejected, so we do not ask. B02.FR.01 names what Pending is for
    # (GetVariables, GetBaseReport, GetReport, SetVariables); like the 1.6 rule, we refuse only
    # what the specification refuses, so an operator may still reset or update a station.
    OcppVersion.V201: frozenset({"RequestStartTransaction", "RequestStopTransaction"}),
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


# CALLERROR codes that say "this station cannot do that at all" (the same in both versions).
_NOT_SUPPORTED_ERRORS = frozenset({"NotImplemented", "NotSupported"})
# Our TxProfiles stack above a station's own (level 0) and replace each other by id.
_TX_STACK_LEVEL = 1
# A TxProfile sent with a remote start has no transaction yet; its id is fixed per EVSE,
# so a later remote start replaces it (both versions: the same profile id replaces).
_REMOTE_START_PROFILE_ID_BASE = 2_000_000_000


class _AnswerMapping:
    """How a station's answer becomes an ``ActionOutcome``: what both OCPP versions share.

    A subclass names its status table (command -> answer status -> ``ActionStatus``) and how
    its GetCompositeSchedule answer reads as a ``ChargingLimit``; the rest is the same: a
    CALLERROR is NOT_SUPPORTED (NotImplemented, NotSupported) or FAILED, a status outside
    the table is FAILED, schema problems of the answer go into the message.
    """

    statuses: ClassVar[Mapping[str, Mapping[str, ActionStatus]]]

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
        status = self.statuses[result.command].get(str(answer.get("status")))
        if status is None:
            return ActionOutcome(
                ActionStatus.FAILED,
                answer,
                message=f"station answered {result.command} with status {answer.get('status')!r}",
            )
        message = "; ".join([*self._reasons(answer), *result.problems])
        if isinstance(action, GetSchedule) and status is ActionStatus.ACCEPTED:
            return ActionOutcome(status, answer, message, schedule=self._schedule_of(answer))
        return ActionOutcome(status, answer, message)

    def _reasons(self, answer: Mapping[str, Any]) -> list[str]:
        """Why the station answered as it did, in its own words (1.6 answers give none)."""
        return []

    def _schedule_of(self, answer: Mapping[str, Any]) -> ChargingLimit | None:
        """Return the limits of an accepted GetCompositeSchedule answer (None: it sent none)."""
        raise NotImplementedError


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
_ONE_DECIMAL = Decimal("0.1")  # 1.6 limits and minChargingRate are multiples of 0.1


class V16Actions(_AnswerMapping):
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
    statuses: ClassVar[Mapping[str, Mapping[str, ActionStatus]]] = _V16_STATUSES

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

    def _schedule_of(self, answer: Mapping[str, Any]) -> ChargingLimit | None:
        """Return a 1.6 GetCompositeSchedule answer's schedule, or None when it sent none."""
        schedule = answer.get("chargingSchedule")
        if not isinstance(schedule, Mapping):
            return None
        minimum = schedule.get("minChargingRate")
        return _charging_limit(
            schedule,
            start_text=answer.get("scheduleStart") or schedule.get("startSchedule"),
            min_rate=Decimal(str(minimum)) if minimum is not None else None,
        )


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
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": _TX_STACK_LEVEL,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": _profile_kind(limit),
        "chargingSchedule": _schedule_body(limit, _tenths),
    }
    if transaction_id is not None:
        profile["transactionId"] = _integer(transaction_id)
    return profile


def _profile_kind(limit: ChargingLimit) -> str:
    # Absolute needs a start; without one the periods count from the transaction's start.
    return "Absolute" if limit.start is not None else "Relative"


def _schedule_body(limit: ChargingLimit, number: Callable[[Decimal], float]) -> dict[str, Any]:
    """Return ``limit`` as a chargingSchedule (the fields 1.6 and 2.0.1 share).

    ``number`` writes a limit or rate as the version wants it (1.6: tenths).
    """
    periods = []
    for period in limit.periods:
        item: dict[str, Any] = {"startPeriod": period.start_period, "limit": number(period.limit)}
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
        schedule["minChargingRate"] = number(limit.min_rate)
    return schedule


def _charging_limit(
    schedule: Mapping[str, Any], *, start_text: object, min_rate: Decimal | None
) -> ChargingLimit:
    """Return a station's schedule (1.6 chargingSchedule, 2.0.1 CompositeScheduleType)."""
    start = (
        parse_timestamp(start_text, path="scheduleStart", lenient=True)
        if isinstance(start_text, str)
        else None
    )
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
        min_rate=min_rate,
    )


# OCPP 2.0.1 answers by command (Part 2, the messages' status enumerations).
_V201_STATUSES: Mapping[str, Mapping[str, ActionStatus]] = {
    "RequestStartTransaction": {
        "Accepted": ActionStatus.ACCEPTED,
        "Rejected": ActionStatus.REJECTED,
    },
    "RequestStopTransaction": {
        "Accepted": ActionStatus.ACCEPTED,
        "Rejected": ActionStatus.REJECTED,
    },
    "ReserveNow": {
        "Accepted": ActionStatus.ACCEPTED,
        "Faulted": ActionStatus.EVSE_INOPERATIVE,
        "Occupied": ActionStatus.EVSE_OCCUPIED,
        "Rejected": ActionStatus.REJECTED,
        "Unavailable": ActionStatus.EVSE_INOPERATIVE,
    },
    # H02: Rejected means "no reservation with this id", as in 1.6.
    "CancelReservation": {
        "Accepted": ActionStatus.ACCEPTED,
        "Rejected": ActionStatus.UNKNOWN_RESERVATION,
    },
    # F05: the station refuses to unlock under a running authorized transaction, or a
    # connector it does not know; both are refusals, not failures of an attempt.
    "UnlockConnector": {
        "Unlocked": ActionStatus.ACCEPTED,
        "UnlockFailed": ActionStatus.FAILED,
        "OngoingAuthorizedTransaction": ActionStatus.REJECTED,
        "UnknownConnector": ActionStatus.REJECTED,
    },
    "SetChargingProfile": {"Accepted": ActionStatus.ACCEPTED, "Rejected": ActionStatus.REJECTED},
    "ClearChargingProfile": {"Accepted": ActionStatus.ACCEPTED, "Unknown": ActionStatus.UNKNOWN},
    "GetCompositeSchedule": {"Accepted": ActionStatus.ACCEPTED, "Rejected": ActionStatus.REJECTED},
}
# Tokens the core hands a station come from the CSMS (an eMSP's command, an operator), not
# from a reader at the station: IdTokenEnumType "Central", "a centrally, in the CSMS (or
# other server) generated id". The actions carry no token type to choose another.
_CENTRAL_ID_TOKEN_TYPE = "Central"
# OCPP integers: stations commonly hold them as signed 32-bit values.
_INT31 = 2**31 - 1


def _remote_start_ids() -> Iterator[int]:
    """Count remoteStartIds up from the clock's seconds, within 1 .. 2**31 - 1.

    A station echoes the remoteStartId in the TransactionEvent of the transaction it
    started, so it must not repeat within one station's recent requests. Counting makes
    each id of a process new; starting from the clock makes a restarted node continue above
    its predecessor's ids, as long as that node averaged under one remote start per second.
    The clock is read at the first id, not when the mapping is made (at import).
    """
    for value in itertools.count(int(time.time())):
        yield value % _INT31 + 1


def profile_id_of(transaction_id: str) -> int:
    """Return the 2.0.1 chargingProfileId of our TxProfile for ``transaction_id``.

    2.0.1 transaction ids are the station's strings (often UUIDs), profile ids are integers:
    the id is a hash of the transaction id into 1 .. ``_REMOTE_START_PROFILE_ID_BASE`` - 1,
    the same on every node and after restarts, so setting a limit again replaces the
    profile and clearing clears exactly it, and it never meets a remote start's profile
    id. A TxProfile lives only as long as its transaction, so two ids collide only
    between transactions running at the same time on the same station: with n of them,
    odds of about n**2 / 4e9, negligible for the EVSEs of one station.
    """
    digest = hashlib.sha256(transaction_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % (_REMOTE_START_PROFILE_ID_BASE - 1) + 1


class V201Actions(_AnswerMapping):
    """The core's actions in OCPP 2.0.1: Remote Control, Reservation and Smart Charging.

    Tokens go out as IdTokens of type "Central". Charging limits become TxProfiles whose id
    is ``profile_id_of`` the transaction id; each holds one chargingSchedule with the same
    id. ``remote_start_ids`` gives each RequestStartTransaction its remoteStartId (default:
    ``_remote_start_ids``; a test passes its own).
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
    version: ClassVar[OcppVersion] = OcppVersion.V201
    statuses: ClassVar[Mapping[str, Mapping[str, ActionStatus]]] = _V201_STATUSES

    def __init__(self, remote_start_ids: Iterator[int] | None = None) -> None:
        self._remote_start_ids = (
            remote_start_ids if remote_start_ids is not None else _remote_start_ids()
        )

    def request(self, action: StationAction) -> tuple[str, dict[str, Any]]:
        """Return the OCPP 2.0.1 command and arguments for ``action``."""
        match action:
            case StartCharging(evse_number=evse, id_tag=id_tag, charging_profile=limit):
                arguments: dict[str, Any] = {
                    "idToken": _id_token(id_tag),
                    "remoteStartId": next(self._remote_start_ids),
                }
                if evse is not None:
                    arguments["evseId"] = evse
                if limit is not None:
                    profile_id = _REMOTE_START_PROFILE_ID_BASE + (evse or 0)
                    # F01: a remote start's profile is a TxProfile without a transactionId yet.
                    arguments["chargingProfile"] = _v201_tx_profile(profile_id, None, limit)
                return "RequestStartTransaction", arguments
            case StopCharging(transaction_id=transaction_id):
                return "RequestStopTransaction", {"transactionId": transaction_id}
            case Reserve():
                arguments = {
                    "id": action.reservation_id,
                    "expiryDateTime": format_timestamp(action.expiry),
                    "idToken": _id_token(action.id_tag),
                }
                # Our EVSE 0 is "any EVSE": 2.0.1 says so by leaving evseId out (H01).
                if action.evse_number != 0:
                    arguments["evseId"] = action.evse_number
                if action.parent_id_tag is not None:
                    arguments["groupIdToken"] = _id_token(action.parent_id_tag)
                return "ReserveNow", arguments
            case CancelReservation(reservation_id=reservation_id):
                return "CancelReservation", {"reservationId": reservation_id}
            case Unlock(evse_number=evse, connector_number=connector):
                return "UnlockConnector", {"evseId": evse, "connectorId": connector}
            case SetChargingLimit(evse_number=evse, transaction_id=transaction_id, limit=limit):
                profile = _v201_tx_profile(profile_id_of(transaction_id), transaction_id, limit)
                return "SetChargingProfile", {"evseId": evse, "chargingProfile": profile}
            case ClearChargingLimit(transaction_id=transaction_id):
                return "ClearChargingProfile", {"chargingProfileId": profile_id_of(transaction_id)}
            case GetSchedule(evse_number=evse, duration=duration, rate_unit=unit):
                arguments = {"duration": duration, "evseId": evse}
                if unit is not None:
                    arguments["chargingRateUnit"] = unit
                return "GetCompositeSchedule", arguments
        raise TypeError(f"not a station action: {action!r}")

    def _reasons(self, answer: Mapping[str, Any]) -> list[str]:
        """The answer's statusInfo (reasonCode, additionalInfo), when the station gave one."""
        info = answer.get("statusInfo")
        if not isinstance(info, Mapping) or not info.get("reasonCode"):
            return []
        extra = info.get("additionalInfo")
        return [f"station says {info['reasonCode']}" + (f": {extra}" if extra else "")]

    def _schedule_of(self, answer: Mapping[str, Any]) -> ChargingLimit | None:
        """Return a 2.0.1 answer's CompositeScheduleType, or None when it sent none."""
        schedule = answer.get("schedule")
        if not isinstance(schedule, Mapping):
            return None
        # A composite schedule has no minChargingRate in 2.0.1.
        return _charging_limit(schedule, start_text=schedule.get("scheduleStart"), min_rate=None)


def _id_token(value: str) -> dict[str, Any]:
    return {"idToken": value, "type": _CENTRAL_ID_TOKEN_TYPE}


def _v201_tx_profile(
    profile_id: int, transaction_id: str | None, limit: ChargingLimit
) -> dict[str, Any]:
    """Return ``limit`` as an OCPP 2.0.1 TxProfile with one schedule (limits as given)."""
    profile: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": _TX_STACK_LEVEL,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": _profile_kind(limit),
        "chargingSchedule": [{"id": profile_id, **_schedule_body(limit, float)}],
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return profile


ACTION_MAPPINGS: Mapping[OcppVersion, ActionMapping] = {
    OcppVersion.V16: V16Actions(),
    OcppVersion.V201: V201Actions(),
}
"""How each OCPP version does the core's actions."""


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
