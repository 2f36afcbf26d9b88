"""Remote control by partners: OCPI commands and charging-profile requests, to stations and back.

An eMSP asks us to start or stop a session, reserve, cancel a reservation, unlock a
connector, or set, clear or read a session's charging limit. ``RemoteControl.accept``
decides at once whether we can forward the request (OCPI wants the answer before the
station is asked): it resolves the OCPI target (location, EVSE, connector, session,
reservation) to a station and its OCPP numbers, checks that the caller may ask and that the
station is connected, and writes an ``OcpiCommand`` row before anything reaches the station.
``RemoteControl.carry_out`` then asks the station through the ``StationPort`` and
``finish_command`` queues the result for the partner's ``response_url`` (the pusher delivers
it). A restart or a lost task leaves the row PENDING; ``expire_commands`` answers it TIMEOUT
once its deadline passed.

The rules (CHECKLIST 7 and 8):

- A partner commands only with its own tokens and only its own sessions; a session of
  another partner is REJECTED, an unknown one UNKNOWN_SESSION; an unknown location, EVSE or
  connector is REJECTED with ``unknown_location`` (OCPI status 2003).
- Tokens are not validated: the eMSP already authorized them. The station gets the token's
  uid as its idTag, or, when the uid does not fit OCPP 1.6's 20 characters, a stable alias
  (``id_tag_for``); the idTag is kept on the command so the station's start can be tied to it.
- A partner's reservation id is never sent to a station: it maps to our integer
  ``Reservation.id``. The same id at the same location from the same partner replaces the
  reservation (the station gets the same integer id again; the row changes only once the
  station accepts, and the RESERVATION session keeps what it opened with). An accepted
  reservation opens a RESERVATION session; an accepted cancellation ends it
  (``cpms.reservations``); cancelling a reservation the partner has not got is answered
  UNKNOWN_RESERVATION at once. A location-wide request goes to the location's one station
  (which picks the EVSE), or with several stations to the first AVAILABLE EVSE.
- A charging limit applies to the session's transaction and replaces the previous one;
  reading the limits answers with the schedule the station reports (or, when it reports
  none, the EVSE's full power) as an OCPI ActiveChargingProfile.
- Charging-profile requests are paced per partner and session (TOO_OFTEN): one that would
  reach the station sooner than ``PROFILE_REQUEST_INTERVAL`` seconds after the previous
  one of the same partner for the same session is answered TOO_OFTEN, its ``timeout`` the
  whole seconds still to wait, and nothing is sent or stored. Refused and unknown-session
  requests do not count (they cost the station nothing). The memory is a ``RequestPacer``
  the HTTP application holds: in memory, per node (a partner whose requests are spread
  over several nodes may be served once per node per interval), each entry forgotten once
  its interval has passed, so it holds at most the requests of the last interval.
- When the active limit of a session changes because a set or a clear was accepted, the
  new ActiveChargingProfile is PUT to ``{chargingprofiles SENDER}/{session_id}`` of every
  partner that has set a limit on the session successfully at least once (an accepted
  SET_CHARGING_PROFILE ``OcpiCommand``; never to anyone else, CHECKLIST 8.2): the limit set,
  counted from now, or after a clear the EVSE's full power for ``ACTIVE_PROFILE_HORIZON``
  seconds (when its connectors give no power, a profile without periods: no limit known,
  rather than ``max_power_w``'s 1 MW plausibility ceiling; so too for a GET answered with
  the EVSE's capacity). It goes through the push queue (``queue_callback``), so it is
  retried while the partner is down; a session that ends needs no push.
- A reservation ended on the CPO side (the operator cancelled it, the station removed it)
  is told to the eMSP as CANCELED_RESERVATION on the ReserveNow's ``response_url``
  (``cpms.reservations``); its own CANCEL_RESERVATION and an expiry are not.

Knows no HTTP and no OCPP: requests come in as the dataclasses below, station actions go
out as ``cpms.station_port`` actions.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from cpms.authorization import Operator
from cpms.charging import max_power_w
from cpms.documents.datetimes import format_datetime
from cpms.errors import CpmsError
from cpms.model import (
    Connector,
    Evse,
    Location,
    OcpiCommand,
    OcpiPartner,
    Reservation,
    Session,
    utcnow,
)
from cpms.partners import Caller
from cpms.push_queue import queue_callback
from cpms.reservations import end_reservation, live_reservation, open_reservation_session
from cpms.station_lifecycle import log_station_event
from cpms.station_port import (
    ActionOutcome,
    ActionStatus,
    CancelReservation,
    ChargingLimit,
    ClearChargingLimit,
    GetSchedule,
    InvalidCommand,
    LimitPeriod,
    Reserve,
    SetChargingLimit,
    StartCharging,
    StationAction,
    StationNotReady,
    StationOffline,
    StationPort,
    StopCharging,
    Unlock,
    UnsupportedAction,
)
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

__all__ = [
    "ActiveProfileRequest",
    "CancelReservationRequest",
    "ClearProfileRequest",
    "RemoteControl",
    "RemoteRequest",
    "Reply",
    "RequestPacer",
    "ReserveNowRequest",
    "SetProfileRequest",
    "StartSessionRequest",
    "StopSessionRequest",
    "UnlockConnectorRequest",
    "Work",
    "active_profile",
    "expire_commands",
    "finish_command",
    "id_tag_for",
    "profile_to_ocpi",
]

# Response vocabularies (OCPI CommandResponseType and ChargingProfileResponseType).
ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"
NOT_SUPPORTED = "NOT_SUPPORTED"
UNKNOWN_SESSION = "UNKNOWN_SESSION"
TOO_OFTEN = "TOO_OFTEN"

PROFILE_REQUEST_INTERVAL = 5.0
"""Seconds between two charging-profile requests of one partner for one session (TOO_OFTEN).

Why 5 s: each request is an OCPP call the station must answer before the next call on its
connection (OCPP-J allows one at a time), typically within a second or two, and a smart
charging partner re-plans a session every minute or on events, not several times a
second. Five seconds lets a partner set a limit and read back what applies a moment later,
while a runaway loop cannot keep the station's one call slot (and the operator's commands
behind it) busy with charging profiles.
"""
ACTIVE_PROFILE_HORIZON = 3600
"""Seconds the EVSE's full power is announced for after a limit is cleared (CHECKLIST 8.2
asks for a useful horizon of 5 to 60 minutes; nothing ends then, so the longest)."""

#: OCPI CommandResultType: what a command's result may say.
COMMAND_RESULTS = frozenset(
    {
        "ACCEPTED",
        "CANCELED_RESERVATION",
        "EVSE_OCCUPIED",
        "EVSE_INOPERATIVE",
        "FAILED",
        "NOT_SUPPORTED",
        "REJECTED",
        "TIMEOUT",
        "UNKNOWN_RESERVATION",
    }
)
#: The charging-profile requests among the ``OcpiCommand.command`` values.
PROFILE_COMMANDS = frozenset(
    {"SET_CHARGING_PROFILE", "CLEAR_CHARGING_PROFILE", "GET_ACTIVE_CHARGING_PROFILE"}
)

_ID_TAG_LENGTH = 20  # OCPP 1.6 IdToken is CiString20Type
_ID_TAG = re.compile(r"[\x21-\x7e]{1,20}")  # printable ASCII, no spaces: what readers send
_ALIAS_PREFIX = "OCPI"


# Requests, as the HTTP adapter parsed them


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSessionRequest:
    """OCPI StartSession."""

    command: ClassVar[str] = "START_SESSION"
    response_url: str
    token: Mapping[str, Any]
    """The OCPI Token, as the eMSP sent it."""
    location_id: str
    evse_uid: str | None = None
    connector_id: str | None = None
    authorization_reference: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StopSessionRequest:
    """OCPI StopSession."""

    command: ClassVar[str] = "STOP_SESSION"
    response_url: str
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveNowRequest:
    """OCPI ReserveNow."""

    command: ClassVar[str] = "RESERVE_NOW"
    response_url: str
    token: Mapping[str, Any]
    expiry_date: datetime
    reservation_id: str
    location_id: str
    evse_uid: str | None = None
    authorization_reference: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReservationRequest:
    """OCPI CancelReservation."""

    command: ClassVar[str] = "CANCEL_RESERVATION"
    response_url: str
    reservation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UnlockConnectorRequest:
    """OCPI UnlockConnector."""

    command: ClassVar[str] = "UNLOCK_CONNECTOR"
    response_url: str
    location_id: str
    evse_uid: str
    connector_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetProfileRequest:
    """OCPI SetChargingProfile for a session (PUT chargingprofiles/{session_id})."""

    command: ClassVar[str] = "SET_CHARGING_PROFILE"
    response_url: str
    session_id: str
    limit: ChargingLimit


@dataclass(frozen=True, slots=True, kw_only=True)
class ClearProfileRequest:
    """OCPI clear of a session's charging profile (DELETE chargingprofiles/{session_id})."""

    command: ClassVar[str] = "CLEAR_CHARGING_PROFILE"
    response_url: str
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveProfileRequest:
    """OCPI request of a session's ActiveChargingProfile (GET chargingprofiles/{session_id})."""

    command: ClassVar[str] = "GET_ACTIVE_CHARGING_PROFILE"
    response_url: str
    session_id: str
    duration: int


RemoteRequest = (
    StartSessionRequest
    | StopSessionRequest
    | ReserveNowRequest
    | CancelReservationRequest
    | UnlockConnectorRequest
    | SetProfileRequest
    | ClearProfileRequest
    | ActiveProfileRequest
)


# What accept decides


@dataclass(frozen=True, slots=True)
class Work:
    """A station action an accepted request is waiting for."""

    command_id: str
    command: str
    partner_id: int
    station_id: str
    action: StationAction
    reservation_changes: dict[str, Any] = field(default_factory=dict)
    """For a ReserveNow replacing a reservation: what changes once the station accepts."""
    session_id: str | None = None
    """For a charging-profile request: the session (ours, as stored) it is about."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What we answer at once: OCPI CommandResponse or ChargingProfileResponse."""

    result: str
    """ACCEPTED, REJECTED, NOT_SUPPORTED, UNKNOWN_SESSION, or TOO_OFTEN (profiles only)."""
    timeout: int
    """Seconds the partner should wait for the result; with TOO_OFTEN, before asking again."""
    message: str | None = None
    unknown_location: bool = False
    """The location, EVSE or connector named is not ours (OCPI status 2003)."""
    command_id: str | None = None
    """The stored command, when accepted."""
    work: Work | None = None
    """The station action to carry out, when one is needed (``carry_out``)."""


class _Refused(Exception):
    """A request we refuse at once; becomes the ``Reply``."""

    def __init__(
        self,
        result: str,
        message: str,
        *,
        unknown_location: bool = False,
        timeout: int | None = None,
    ) -> None:
        super().__init__(message)
        self.result = result
        self.message = message
        self.unknown_location = unknown_location
        self.timeout = timeout
        """The ``timeout`` to answer instead of the result timeout (TOO_OFTEN)."""


class RequestPacer:
    """When each key (partner, session) last had a request served: the TOO_OFTEN memory.

    In memory, per node; see the module docstring. ``admit`` is a check and a record in
    one step with no ``await`` between, so two requests arriving together on one node
    cannot both pass. Entries are forgotten once their interval has passed (the oldest
    are first in the dict, as each admitted key moves to its end); ``max_entries`` is a
    last bound should a flood come faster than the interval forgets.
    """

    def __init__(
        self,
        interval: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._max_entries = max_entries
        self._served: OrderedDict[Hashable, float] = OrderedDict()

    @property
    def interval(self) -> float:
        """Seconds between two requests of one key (``PROFILE_REQUEST_INTERVAL`` unless set)."""
        return PROFILE_REQUEST_INTERVAL if self._interval is None else self._interval

    def __len__(self) -> int:
        return len(self._served)

    def admit(self, key: Hashable) -> float:
        """Record a request of ``key`` and return 0.0, or return the seconds still to wait.

        A request that must wait is not recorded: asking too often does not push the next
        allowed moment further away.
        """
        now = self._clock()
        interval = self.interval
        self._forget(now, interval)
        served = self._served.get(key)
        if served is not None and now - served < interval:
            return interval - (now - served)
        self._served[key] = now
        self._served.move_to_end(key)
        while len(self._served) > self._max_entries:
            self._served.popitem(last=False)
        return 0.0

    def _forget(self, now: float, interval: float) -> None:
        while self._served:
            oldest, served = next(iter(self._served.items()))
            if now - served < interval:
                return
            del self._served[oldest]


def _unknown(message: str) -> _Refused:
    return _Refused(REJECTED, message, unknown_location=True)


def id_tag_for(token: Mapping[str, Any]) -> str:
    """Return the idTag a station gets for an OCPI token: its uid, or a stable alias.

    OCPP 1.6 idTags are at most 20 printable characters; OCPI uids may have 36. A uid that
    does not fit becomes ``OCPI`` and 16 hex digits of a hash of the token's identity, the
    same every time for the same token.
    """
    uid = str(token.get("uid", ""))
    if _ID_TAG.fullmatch(uid):
        return uid
    identity = f"{token.get('country_code', '')}*{token.get('party_id', '')}*{uid}".upper()
    digest = hashlib.sha256(identity.encode()).hexdigest().upper()
    return (_ALIAS_PREFIX + digest)[:_ID_TAG_LENGTH]


def _parent_id_tag(token: Mapping[str, Any]) -> str | None:
    group = token.get("group_id")
    if not isinstance(group, str) or not group:
        return None
    return id_tag_for({**token, "uid": group})


def _cdr_token(token: Mapping[str, Any]) -> dict[str, Any]:
    return {key: token[key] for key in ("country_code", "party_id", "uid", "type", "contract_id")}


def profile_to_ocpi(limit: ChargingLimit) -> dict[str, Any]:
    """Return a charging limit as an OCPI ChargingProfile."""
    profile: dict[str, Any] = {
        "charging_rate_unit": limit.rate_unit,
        "charging_profile_period": [
            {"start_period": period.start_period, "limit": float(period.limit)}
            for period in limit.periods
        ],
    }
    if limit.start is not None:
        profile["start_date_time"] = format_datetime(limit.start)
    if limit.duration is not None:
        profile["duration"] = limit.duration
    if limit.min_rate is not None:
        profile["min_charging_rate"] = float(limit.min_rate)
    return profile


def active_profile(
    limit: ChargingLimit, *, anchor: datetime, now: datetime
) -> dict[str, Any] | None:
    """Return ``limit`` as the OCPI ActiveChargingProfile in force at ``now``.

    ``anchor`` is the moment the limit's periods count from (its ``start``, or the start of
    charging). The profile is calculated at ``now`` and its periods count from then: the
    period in force now starts at 0, the ones already over are left out, the duration is
    what remains. A limit that starts later keeps its own start. None when the limit is
    over (its duration has passed): no limit applies any more.
    """
    elapsed = math.floor((now - anchor).total_seconds())
    if elapsed <= 0:  # not begun yet: its offsets count from its own start
        calculated, shifted = anchor, replace(limit, start=None)
    elif limit.duration is not None and limit.duration <= elapsed:
        return None
    else:
        current = [p for p in limit.periods if p.start_period <= elapsed][-1:]
        later = [p for p in limit.periods if p.start_period > elapsed]
        periods = [replace(p, start_period=0) for p in current] + [
            replace(p, start_period=p.start_period - elapsed) for p in later
        ]
        remaining = None if limit.duration is None else limit.duration - elapsed
        calculated = now
        shifted = replace(limit, periods=tuple(periods), start=None, duration=remaining)
    return {
        "start_date_time": format_datetime(calculated),
        "charging_profile": profile_to_ocpi(shifted),
    }


def _power_known(evse: Evse) -> bool:
    """Whether ``max_power_w`` reads ``evse``'s power from its connector, not its fallback."""
    if not evse.connectors:
        return False
    connector = evse.connectors[0]  # the one max_power_w reads
    return bool(connector.max_electric_power or (connector.max_voltage and connector.max_amperage))


async def _profile_setters(uow: UnitOfWork, session: Session) -> list[OcpiPartner]:
    """The registered partners that have set a limit on ``session`` successfully.

    Read from the accepted SET_CHARGING_PROFILE commands of the session's station (the
    session id is in the stored request, as the partner spelt it: compared ignoring case).
    """
    setters = (
        select(OcpiCommand.partner_id)
        .where(
            OcpiCommand.station_id == session.station_id,
            OcpiCommand.command == SetProfileRequest.command,
            OcpiCommand.state == "DONE",
            OcpiCommand.result == ActionStatus.ACCEPTED.value,
            func.lower(OcpiCommand.request["session_id"].as_string()) == session.id.lower(),
        )
        .distinct()
    )
    return list(
        await uow.session.scalars(
            select(OcpiPartner)
            .where(OcpiPartner.id.in_(setters), OcpiPartner.state == "REGISTERED")
            .order_by(OcpiPartner.id)
        )
    )


# Finishing a command: its result queued for the partner


def _display(message: str | None) -> list[dict[str, str]]:
    return [{"language": "en", "text": message[:512]}] if message else []


def _result_body(
    command: str, result: str, message: str | None, profile: dict[str, Any] | None
) -> dict[str, Any]:
    if command in PROFILE_COMMANDS:
        # ChargingProfileResultType has no TIMEOUT or FAILED: what was not done is REJECTED.
        status = result if result in ("ACCEPTED", "UNKNOWN") else "REJECTED"
        body: dict[str, Any] = {"result": status}
        if command == "GET_ACTIVE_CHARGING_PROFILE" and profile is not None and status == ACCEPTED:
            body["profile"] = profile
        return body
    body = {"result": result if result in COMMAND_RESULTS else "FAILED"}
    if message:
        body["message"] = _display(message)
    return body


async def finish_command(
    uow: UnitOfWork,
    command_id: str,
    result: str,
    message: str | None = None,
    *,
    profile: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Settle a PENDING command and queue its result for the partner (``uow`` entered).

    ``result`` is in OCPI's CommandResultType vocabulary (``ActionStatus``); for charging
    profile requests it becomes a ChargingProfileResultType, and ``profile`` (an OCPI
    ActiveChargingProfile) goes with an accepted GET. Returns False, changing nothing, when
    the command was already settled (a late answer after its TIMEOUT). Commit after.
    """
    now = now or utcnow()
    result = str(result)  # an ActionStatus is stored and sent as its plain value
    command = await uow.session.get(OcpiCommand, command_id)
    if command is None or command.state != "PENDING":
        return False
    # Compare-and-set: of a late answer and the deadline sweep, exactly one settles it.
    settled = await uow.session.execute(
        update(OcpiCommand)
        .where(OcpiCommand.id == command_id, OcpiCommand.state == "PENDING")
        .values(
            state="TIMEOUT" if result == ActionStatus.TIMEOUT else "DONE",
            result=result,
            finished_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(settled, "rowcount", 0) != 1:
        return False
    queue_callback(
        uow,
        partner_id=command.partner_id,
        url=command.response_url,
        body=_result_body(command.command, result, message, profile),
        object_key=f"command:{command.id}",
    )
    return True


async def expire_commands(uow: UnitOfWork, now: datetime) -> int:
    """Answer TIMEOUT for every PENDING command past its deadline; returns how many.

    ``uow`` entered; commit after (and wake the pusher). Run periodically: it answers the
    commands a restart or a lost task left without a result.
    """
    overdue = list(
        await uow.session.scalars(
            select(OcpiCommand.id).where(OcpiCommand.state == "PENDING", OcpiCommand.deadline < now)
        )
    )
    finished = 0
    for command_id in overdue:
        if await finish_command(
            uow, command_id, ActionStatus.TIMEOUT, "no answer from the station in time", now=now
        ):
            finished += 1
    return finished


# The service


@dataclass(frozen=True, slots=True)
class _Target:
    station_id: str
    evse: Evse | None
    evse_number: int | None


class RemoteControl:
    """Accepts partners' remote requests and carries them out; see the module docstring."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        port: StationPort | None,
        *,
        operator: Operator,
        result_timeout: float,
        station_timeout: float,
        queued: Callable[[], None] = lambda: None,
        pacer: RequestPacer | None = None,
    ) -> None:
        self.uow = uow
        self.port = port
        self.operator = operator
        self.result_timeout = result_timeout
        """Seconds the partner is told to wait for a result (the command's deadline)."""
        self.station_timeout = min(station_timeout, result_timeout)
        """Seconds the station gets to answer: never longer than the partner waits."""
        self.queued = queued
        """Called after a commit that queued a result (wakes the pusher)."""
        self.pacer = pacer
        """Charging-profile requests served per (partner, session), kept by the caller
        across requests (TOO_OFTEN); None: no pacing."""

    @property
    def timeout(self) -> int:
        """The ``timeout`` of our responses: whole seconds, at least one."""
        return max(1, math.ceil(self.result_timeout))

    # Accepting

    async def accept(self, caller: Caller, request: RemoteRequest, *, body: Any) -> Reply:
        """Decide about ``request`` at once; when accepted, store it as an ``OcpiCommand``.

        ``body`` is the request as the partner sent it (kept on the command). The returned
        ``Reply.work`` is the station action still to do: hand it to ``carry_out``.
        """
        now = utcnow()
        async with self.uow() as uow:
            try:
                reply = await self._decide(uow, caller, request, body, now)
            except _Refused as refused:
                return Reply(
                    refused.result,
                    self.timeout if refused.timeout is None else refused.timeout,
                    refused.message,
                    unknown_location=refused.unknown_location,
                )
            await uow.commit()
        if reply.work is None:
            self.queued()  # settled at once: its result is already queued
        return reply

    async def _decide(
        self, uow: UnitOfWork, caller: Caller, request: RemoteRequest, body: Any, now: datetime
    ) -> Reply:
        match request:
            case StartSessionRequest():
                return await self._start(uow, caller, request, body, now)
            case StopSessionRequest():
                return await self._stop(uow, caller, request, body, now)
            case ReserveNowRequest():
                return await self._reserve(uow, caller, request, body, now)
            case CancelReservationRequest():
                return await self._cancel(uow, caller, request, body, now)
            case UnlockConnectorRequest():
                return await self._unlock(uow, caller, request, body, now)
            case SetProfileRequest() | ClearProfileRequest() | ActiveProfileRequest():
                return await self._profile(uow, caller, request, body, now)
        raise TypeError(f"not a remote request: {request!r}")

    def _record(
        self,
        uow: UnitOfWork,
        caller: Caller,
        request: RemoteRequest,
        body: Any,
        now: datetime,
        *,
        station_id: str | None,
        id_tag: str | None = None,
    ) -> OcpiCommand:
        command = OcpiCommand(
            id=str(uuid.uuid4()),
            partner_id=caller.partner_id,
            command=request.command,
            response_url=request.response_url,
            request=body if isinstance(body, dict) else {"query": body},
            station_id=station_id,
            id_tag=id_tag,
            state="PENDING",
            deadline=now + timedelta(seconds=self.result_timeout),
            created_at=now,
        )
        uow.session.add(command)
        return command

    def _accepted(
        self,
        uow: UnitOfWork,
        caller: Caller,
        request: RemoteRequest,
        body: Any,
        now: datetime,
        *,
        station_id: str,
        action: StationAction,
        id_tag: str | None = None,
        reservation_changes: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Reply:
        command = self._record(
            uow, caller, request, body, now, station_id=station_id, id_tag=id_tag
        )
        work = Work(
            command.id,
            request.command,
            caller.partner_id,
            station_id,
            action,
            reservation_changes or {},
            session_id,
        )
        return Reply(ACCEPTED, self.timeout, command_id=command.id, work=work)

    def _check_station(self, station_id: str, action: type[StationAction]) -> None:
        if self.port is None:
            raise _Refused(REJECTED, "no station gateway runs here; stations cannot be reached")
        actions = self.port.actions(station_id)
        if not actions:
            raise _Refused(REJECTED, f"station {station_id} is offline")
        if action not in actions:
            raise _Refused(NOT_SUPPORTED, f"station {station_id} cannot do this")

    @staticmethod
    def _check_token(caller: Caller, token: Mapping[str, Any]) -> None:
        if not caller.owns(str(token["country_code"]), str(token["party_id"])):
            raise _Refused(
                REJECTED,
                f"token {token['country_code']}/{token['party_id']} is not one of yours:"
                " commands may use only the caller's own tokens",
            )

    # Targets

    @staticmethod
    async def _location(uow: UnitOfWork, location_id: str) -> Location:
        evses = selectinload(Location.evses).selectinload(Evse.connectors)
        location = await uow.session.get(Location, location_id, options=[evses])
        if location is None:  # OCPI ids are CiStrings
            location = await uow.session.scalar(
                select(Location)
                .where(func.lower(Location.id) == location_id.lower())
                .options(evses)
            )
        if location is None or location.retired_at is not None:
            raise _unknown(f"unknown location {location_id!r}")
        return location

    @staticmethod
    def _evse(location: Location, evse_uid: str) -> Evse:
        evse = next(
            (e for e in location.evses if e.uid.lower() == evse_uid.lower()),
            None,
        )
        if evse is None or evse.status == "REMOVED":
            raise _unknown(f"unknown EVSE {evse_uid!r} at location {location.id!r}")
        return evse

    @staticmethod
    def _connector(evse: Evse, connector_id: str) -> Connector:
        connector = next(
            (c for c in evse.connectors if c.id.lower() == connector_id.lower()),
            None,
        )
        if connector is None:
            raise _unknown(f"unknown connector {connector_id!r} of EVSE {evse.uid!r}")
        return connector

    @staticmethod
    def _wired(evse: Evse) -> tuple[str, int]:
        if evse.station_id is None or evse.ocpp_evse_id is None:
            raise _Refused(NOT_SUPPORTED, f"EVSE {evse.uid} is not connected to a station")
        return evse.station_id, evse.ocpp_evse_id

    @staticmethod
    def _any_evse(location: Location) -> tuple[str, Evse | None]:
        """The station of a location-wide request, and the EVSE to name (None: any)."""
        wired = [
            e
            for e in location.evses
            if e.station_id is not None and e.ocpp_evse_id is not None and e.status != "REMOVED"
        ]
        if not wired:
            raise _Refused(NOT_SUPPORTED, f"location {location.id} has no EVSE on a station")
        stations = {e.station_id for e in wired}
        if len(stations) == 1:  # one station chooses among its own EVSEs
            return wired[0].station_id or "", None
        free = next((e for e in wired if e.status == "AVAILABLE"), None)
        if free is None:
            raise _Refused(REJECTED, f"no EVSE of location {location.id} is available")
        return free.station_id or "", free

    async def _session(self, uow: UnitOfWork, caller: Caller, session_id: str) -> Session:
        session = await uow.session.get(Session, session_id)
        if session is None:
            session = await uow.session.scalar(
                select(Session).where(func.lower(Session.id) == session_id.lower())
            )
        if session is None:
            raise _Refused(UNKNOWN_SESSION, f"unknown session {session_id!r}")
        token = session.cdr_token or {}
        mine = session.partner_id == caller.partner_id or caller.owns(
            str(token.get("country_code", "")), str(token.get("party_id", ""))
        )
        if not mine:
            raise _Refused(REJECTED, f"session {session_id!r} is not one of yours")
        return session

    @staticmethod
    async def _charging(uow: UnitOfWork, session: Session) -> tuple[str, int, str]:
        """The station, EVSE number and transaction id of a session that is charging."""
        if session.status != "ACTIVE" or session.transaction_id is None:
            raise _Refused(REJECTED, f"session {session.id} is {session.status}, not charging")
        evse = await uow.session.get(Evse, session.evse_uid) if session.evse_uid else None
        if evse is None or evse.ocpp_evse_id is None:
            raise _Refused(NOT_SUPPORTED, f"session {session.id} is on no known EVSE")
        return session.station_id, evse.ocpp_evse_id, session.transaction_id

    # The requests

    async def _start(
        self,
        uow: UnitOfWork,
        caller: Caller,
        request: StartSessionRequest,
        body: Any,
        now: datetime,
    ) -> Reply:
        self._check_token(caller, request.token)
        location = await self._location(uow, request.location_id)
        evse_number: int | None
        if request.evse_uid is not None:
            evse = self._evse(location, request.evse_uid)
            if request.connector_id is not None:
                self._connector(evse, request.connector_id)
            elif "START_SESSION_CONNECTOR_REQUIRED" in (evse.capabilities or ()):
                raise _Refused(REJECTED, f"EVSE {evse.uid} needs a connector_id to start")
            station_id, evse_number = self._wired(evse)
        else:
            station_id, chosen = self._any_evse(location)
            evse_number = chosen.ocpp_evse_id if chosen is not None else None
        self._check_station(station_id, StartCharging)
        id_tag = id_tag_for(request.token)
        return self._accepted(
            uow,
            caller,
            request,
            body,
            now,
            station_id=station_id,
            action=StartCharging(evse_number, id_tag),
            id_tag=id_tag,
        )

    async def _stop(
        self, uow: UnitOfWork, caller: Caller, request: StopSessionRequest, body: Any, now: datetime
    ) -> Reply:
        session = await self._session(uow, caller, request.session_id)
        if session.status == "RESERVATION":
            raise _Refused(REJECTED, "a reservation is ended with CANCEL_RESERVATION")
        station_id, _, transaction_id = await self._charging(uow, session)
        self._check_station(station_id, StopCharging)
        return self._accepted(
            uow,
            caller,
            request,
            body,
            now,
            station_id=station_id,
            action=StopCharging(transaction_id),
        )

    async def _reserve(
        self, uow: UnitOfWork, caller: Caller, request: ReserveNowRequest, body: Any, now: datetime
    ) -> Reply:
        self._check_token(caller, request.token)
        if request.expiry_date <= now:
            raise _Refused(REJECTED, "expiry_date has passed")
        location = await self._location(uow, request.location_id)
        evse: Evse | None = None
        if request.evse_uid is not None:
            evse = self._evse(location, request.evse_uid)
            station_id, evse_number = self._wired(evse)
        else:
            # 1.6 connectorId 0: the station keeps any one of its EVSEs free.
            station_id, _ = self._any_evse(location)
            evse_number = 0
        self._check_station(station_id, Reserve)
        fields: dict[str, Any] = {
            "evse_uid": evse.uid if evse is not None else None,
            "station_id": station_id,
            "connector_id": evse.connectors[0].id if evse is not None and evse.connectors else None,
            "token": _cdr_token(request.token),
            "authorization_reference": request.authorization_reference,
            "expiry_date": request.expiry_date,
            "response_url": request.response_url,
        }
        existing = await live_reservation(
            uow, caller.partner_id, request.reservation_id, location_id=location.id
        )
        if existing is not None:
            reservation, changes = existing, fields  # replaced once the station accepts
        else:
            reservation = Reservation(
                partner_id=caller.partner_id,
                external_id=request.reservation_id,
                location_id=location.id,
                status="REQUESTED",
                created_at=now,
                updated_at=now,
                **fields,
            )
            uow.session.add(reservation)
            await uow.session.flush()  # its id is what the station gets
            changes = {}
        id_tag = id_tag_for(request.token)
        action = Reserve(
            reservation.id,
            evse_number,
            id_tag,
            request.expiry_date,
            parent_id_tag=_parent_id_tag(request.token),
        )
        return self._accepted(
            uow,
            caller,
            request,
            body,
            now,
            station_id=station_id,
            action=action,
            id_tag=id_tag,
            reservation_changes=changes,
        )

    async def _cancel(
        self,
        uow: UnitOfWork,
        caller: Caller,
        request: CancelReservationRequest,
        body: Any,
        now: datetime,
    ) -> Reply:
        reservation = await live_reservation(uow, caller.partner_id, request.reservation_id)
        if reservation is None or reservation.station_id is None:
            # Accepted, and answered at once: CommandResultType has the word for it.
            command = self._record(uow, caller, request, body, now, station_id=None)
            await uow.session.flush()
            await finish_command(
                uow,
                command.id,
                ActionStatus.UNKNOWN_RESERVATION,
                f"no reservation {request.reservation_id!r} of yours is live",
                now=now,
            )
            return Reply(ACCEPTED, self.timeout, command_id=command.id)
        self._check_station(reservation.station_id, CancelReservation)
        return self._accepted(
            uow,
            caller,
            request,
            body,
            now,
            station_id=reservation.station_id,
            action=CancelReservation(reservation.id),
        )

    async def _unlock(
        self,
        uow: UnitOfWork,
        caller: Caller,
        request: UnlockConnectorRequest,
        body: Any,
        now: datetime,
    ) -> Reply:
        location = await self._location(uow, request.location_id)
        evse = self._evse(location, request.evse_uid)
        connector = self._connector(evse, request.connector_id)
        station_id, evse_number = self._wired(evse)
        self._check_station(station_id, Unlock)
        return self._accepted(
            uow,
            caller,
            request,
            body,
            now,
            station_id=station_id,
            action=Unlock(evse_number, connector.ocpp_connector_id or 1),
        )

    async def _profile(
        self,
        uow: UnitOfWork,
        caller: Caller,
        request: SetProfileRequest | ClearProfileRequest | ActiveProfileRequest,
        body: Any,
        now: datetime,
    ) -> Reply:
        session = await self._session(uow, caller, request.session_id)
        station_id, evse_number, transaction_id = await self._charging(uow, session)
        action: StationAction
        match request:
            case SetProfileRequest(limit=limit):
                action = SetChargingLimit(evse_number, transaction_id, limit)
            case ClearProfileRequest():
                action = ClearChargingLimit(evse_number, transaction_id)
            case ActiveProfileRequest(duration=duration):
                action = GetSchedule(evse_number, duration)
        self._check_station(station_id, type(action))
        self._pace(caller, session)
        return self._accepted(
            uow, caller, request, body, now, station_id=station_id, action=action,
            session_id=session.id,
        )  # fmt: skip

    def _pace(self, caller: Caller, session: Session) -> None:
        """Refuse TOO_OFTEN a profile request sooner than the pacer allows (the last check)."""
        if self.pacer is None:
            return
        wait = self.pacer.admit((caller.partner_id, session.id))
        if wait > 0:
            raise _Refused(
                TOO_OFTEN,
                f"one charging-profile request per session every {self.pacer.interval:g} s;"
                f" ask again in {math.ceil(wait)} s",
                timeout=max(1, math.ceil(wait)),
            )

    # Carrying out

    async def carry_out(self, work: Work) -> ActionOutcome:
        """Ask the station for ``work``'s action, then settle its command with the answer."""
        asked_at = utcnow()
        outcome = await self._ask(work)
        async with self.uow() as uow:
            now = utcnow()
            profile = None
            if outcome.accepted:
                profile = await self._apply(uow, work, outcome, now)
            elif isinstance(work.action, Reserve) and not work.reservation_changes:
                reservation = await uow.session.get(Reservation, work.action.reservation_id)
                if reservation is not None and reservation.status == "REQUESTED":
                    reservation.status = "REJECTED"
            settled = await finish_command(
                uow, work.command_id, outcome.status, outcome.message or None, profile=profile
            )
            if settled and outcome.accepted:
                await self._active_profile_changed(uow, work, now)
            log_station_event(
                uow,
                work.station_id,
                "command",
                f"{work.command} by OCPI partner {work.partner_id}: {outcome.status}"
                + (f" ({outcome.message})" if outcome.message else "")
                + ("" if settled else "; too late, the partner was answered TIMEOUT"),
                received_at=asked_at,
                details={
                    "ocpi_command": work.command,
                    "command_id": work.command_id,
                    "status": str(outcome.status),
                    "answer": outcome.answer,
                },
            )
            await uow.commit()
        if settled:
            self.queued()
        return outcome

    async def _ask(self, work: Work) -> ActionOutcome:
        if self.port is None:
            return ActionOutcome(ActionStatus.FAILED, message="no station gateway runs here")
        try:
            return await self.port.act(work.station_id, work.action, timeout=self.station_timeout)
        except StationOffline:
            return ActionOutcome(ActionStatus.FAILED, message="the station went offline")
        except StationNotReady as error:
            return ActionOutcome(ActionStatus.REJECTED, message=str(error))
        except UnsupportedAction as error:
            return ActionOutcome(ActionStatus.NOT_SUPPORTED, message=str(error))
        except InvalidCommand as error:
            return ActionOutcome(
                ActionStatus.FAILED, message=f"{error}: {'; '.join(error.problems)}"
            )
        except CpmsError as error:
            return ActionOutcome(ActionStatus.FAILED, message=str(error))

    async def _apply(
        self, uow: UnitOfWork, work: Work, outcome: ActionOutcome, now: datetime
    ) -> dict[str, Any] | None:
        """Do what an accepted action changes here; return an ActiveChargingProfile to send."""
        match work.action:
            case Reserve(reservation_id=reservation_id):
                reservation = await uow.session.get(Reservation, reservation_id)
                if reservation is None:
                    return None
                for name, value in work.reservation_changes.items():
                    setattr(reservation, name, value)
                await open_reservation_session(
                    uow,
                    reservation_id,
                    now=now,
                    country_code=self.operator.country_code,
                    party_id=self.operator.party_id,
                )
            case CancelReservation(reservation_id=reservation_id):
                await end_reservation(uow, reservation_id, now=now, expired=False)
            case GetSchedule(evse_number=evse_number, duration=duration):
                schedule = outcome.schedule or await self._capacity(
                    uow, work.station_id, evse_number, duration
                )
                if schedule is None:
                    return None
                return {
                    "start_date_time": format_datetime(schedule.start or now),
                    "charging_profile": profile_to_ocpi(schedule),
                }
        return None

    @staticmethod
    async def _capacity(
        uow: UnitOfWork, station_id: str, evse_number: int, duration: int
    ) -> ChargingLimit | None:
        """The EVSE's full power as a schedule: what applies when no limit does (OCPI 8)."""
        evse = await uow.session.scalar(
            select(Evse)
            .where(Evse.station_id == station_id, Evse.ocpp_evse_id == evse_number)
            .options(selectinload(Evse.connectors))
        )
        if evse is None:
            return None
        if not _power_known(evse):
            # ``max_power_w`` falls back to a 1 MW plausibility ceiling here: no capacity to
            # tell anyone. A profile without periods says "no limit we know of", so the
            # partner still learns its limit is gone, and nobody is promised 1 MW.
            return ChargingLimit("W", (), duration=duration)
        return ChargingLimit("W", (LimitPeriod(0, max_power_w(evse)),), duration=duration)

    # Telling the partners who set limits (CHECKLIST 8.2)

    async def _active_profile_changed(self, uow: UnitOfWork, work: Work, now: datetime) -> int:
        """Queue the session's new ActiveChargingProfile for the partners who set limits.

        Called once a set or a clear was accepted and its result queued; returns how many
        pushes were queued (none for other actions, and none when no partner has set a
        limit on the session successfully).
        """
        action = work.action
        limit: ChargingLimit | None
        if isinstance(action, SetChargingLimit):
            limit = action.limit
        elif isinstance(action, ClearChargingLimit):
            limit = None
        else:
            return 0
        if work.session_id is None:
            return 0
        session = await uow.session.get(Session, work.session_id)
        if session is None:
            return 0
        partners = await _profile_setters(uow, session)
        if not partners:
            return 0
        active = None
        if limit is not None:
            active = active_profile(limit, anchor=limit.start or session.start_date_time, now=now)
        if active is None:  # cleared (or the limit set is over): the EVSE's full power
            capacity = await self._capacity(
                uow, work.station_id, action.evse_number, ACTIVE_PROFILE_HORIZON
            )
            if capacity is None:
                return 0
            active = {
                "start_date_time": format_datetime(now),
                "charging_profile": profile_to_ocpi(capacity),
            }
        queued = 0
        for partner in partners:
            sender = ((partner.endpoints or {}).get("chargingprofiles") or {}).get("SENDER")
            if not sender:
                continue  # it cannot hear of it: nothing to queue
            queue_callback(
                uow,
                partner_id=partner.id,
                url=f"{sender.rstrip('/')}/{quote(session.id, safe='')}",
                body=active,
                object_key=f"active_profile:{session.id}",
                method="PUT",
            )
            queued += 1
        return queued
