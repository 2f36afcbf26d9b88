"""OCPI 2.2.1 chargingprofiles module, RECEIVER interface: a session's charging limits.

- ``GET /2.2.1/chargingprofiles/{session_id}?duration=&response_url=``: the limits that apply
  for ``duration`` seconds, POSTed later as ActiveChargingProfileResult;
- ``PUT /2.2.1/chargingprofiles/{session_id}`` with SetChargingProfile: set a limit, its
  ChargingProfileResult POSTed later;
- ``DELETE /2.2.1/chargingprofiles/{session_id}?response_url=``: clear it, ClearProfileResult
  POSTed later.

Each answers at once with a ChargingProfileResponse (ACCEPTED, REJECTED, UNKNOWN_SESSION,
NOT_SUPPORTED, TOO_OFTEN) decided by ``cpms.remote_control``; the station (a TxProfile on
the session's transaction, ClearChargingProfile, GetCompositeSchedule in OCPP 1.6) is asked
in the background, exactly as for commands (CHECKLIST 8).

TOO_OFTEN: a partner's requests for one session reach the station at most once every
``cpms.remote_control.PROFILE_REQUEST_INTERVAL`` seconds; one sooner is answered TOO_OFTEN
(OCPI status 1000, ``timeout`` the seconds still to wait) and nothing is sent. The memory
is the application's ``RequestPacer`` (``commands.PACER``): in memory, per node, entries
forgotten after the interval. When a set or a clear is accepted, the session's new
ActiveChargingProfile is PUT to the SENDER interface of the partners that have set a limit
on it (``cpms.remote_control``). Not done: a change the operator makes to a station's
limits outside OCPI is not pushed (we learn of none).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from cpms.documents.datetimes import parse_datetime
from cpms.errors import DocumentError
from cpms.remote_control import (
    ActiveProfileRequest,
    ClearProfileRequest,
    RemoteRequest,
    Reply,
    RequestPacer,
    SetProfileRequest,
)
from cpms.station_port import ChargingLimit, LimitPeriod
from ocpi_api.auth import CALLER
from ocpi_api.envelope import OcpiStatus, ocpi_response
from ocpi_api.modules.commands import (
    PACER,
    ci_string,
    install_background,
    remote_control,
    response_url,
    run_in_background,
)
from ocpi_api.transport import OcpiError, add_route, read_json

__all__ = ["ENDPOINTS", "add_routes", "charging_limit"]

#: (module identifier, our interface role, path under /ocpi/2.2.1) this module serves.
ENDPOINTS: list[tuple[str, str, str]] = [("chargingprofiles", "RECEIVER", "chargingprofiles")]

_MAX_DURATION = 7 * 24 * 3600  # a week ahead is more than any station plans


def _invalid(path: str, problem: str) -> OcpiError:
    return OcpiError(OcpiStatus.INVALID_PARAMETERS, f"{path}: {problem}")


def _whole(value: Any, path: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, str):  # query parameters arrive as text
        try:
            value = int(value.strip())
        except ValueError:
            raise _invalid(path, f"expected a whole number, got {value!r}") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(path, f"expected a whole number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum}" + (f" to {maximum}" if maximum is not None else " up")
        raise _invalid(path, f"expected a whole number {bounds}, got {value}")
    return value


def _rate(value: Any, path: str) -> Decimal:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _invalid(path, f"expected a number, got {value!r}")
    try:
        rate = Decimal(str(value))
    except InvalidOperation:
        raise _invalid(path, f"expected a number, got {value!r}") from None
    if not rate.is_finite() or rate < 0:
        raise _invalid(path, f"expected a number of at least 0, got {value!r}")
    return rate


def charging_limit(value: Any, path: str = "charging_profile") -> ChargingLimit:
    """Read an OCPI ChargingProfile; raise ``OcpiError`` (2001) naming what is wrong."""
    if not isinstance(value, dict):
        raise _invalid(path, "expected a ChargingProfile object")
    unit = value.get("charging_rate_unit")
    if unit not in ("W", "A"):
        raise _invalid(f"{path}.charging_rate_unit", f"expected W or A, got {unit!r}")
    periods_in = value.get("charging_profile_period")
    if not isinstance(periods_in, list) or not periods_in:
        raise _invalid(f"{path}.charging_profile_period", "expected at least one period")
    periods: list[LimitPeriod] = []
    for index, period in enumerate(periods_in):
        where = f"{path}.charging_profile_period[{index}]"
        if not isinstance(period, dict):
            raise _invalid(where, "expected a ChargingProfilePeriod object")
        start = _whole(period.get("start_period"), f"{where}.start_period")
        if periods and start <= periods[-1].start_period:
            raise _invalid(f"{where}.start_period", "periods must start in increasing order")
        if not periods and start != 0:
            raise _invalid(f"{where}.start_period", "the first period must start at 0")
        periods.append(LimitPeriod(start, _rate(period.get("limit"), f"{where}.limit")))
    start_text = value.get("start_date_time")
    try:
        start = parse_datetime(start_text, f"{path}.start_date_time") if start_text else None
    except DocumentError as error:
        raise _invalid(error.path, error.problem) from None
    duration = value.get("duration")
    minimum = value.get("min_charging_rate")
    return ChargingLimit(
        rate_unit=unit,
        periods=tuple(periods),
        start=start,
        duration=_whole(duration, f"{path}.duration") if duration is not None else None,
        min_rate=_rate(minimum, f"{path}.min_charging_rate") if minimum is not None else None,
    )


async def _handle(request: web.Request, parsed: RemoteRequest, body: Any) -> web.Response:
    control = remote_control(request)
    reply: Reply = await control.accept(request[CALLER], parsed, body=body)
    if reply.work is not None:
        run_in_background(
            request,
            control.carry_out(reply.work),
            name=f"{parsed.command} {reply.work.command_id}",
        )
    # ChargingProfileResponse has no message field: the reason goes in status_message.
    return ocpi_response(
        request, {"result": reply.result, "timeout": reply.timeout}, message=reply.message
    )


def _session_id(request: web.Request) -> str:
    value = ci_string(dict(request.match_info), "session_id", 36)
    assert value is not None
    return value


async def get_active_profile(request: web.Request) -> web.Response:
    """Ask the station which limits apply; the ActiveChargingProfileResult follows."""
    session_id = _session_id(request)
    query: Mapping[str, str] = request.query
    if "duration" not in query:
        raise _invalid("duration", "is required (seconds)")
    duration = _whole(query["duration"], "duration", minimum=1, maximum=_MAX_DURATION)
    url = response_url(query.get("response_url"))
    parsed = ActiveProfileRequest(response_url=url, session_id=session_id, duration=duration)
    stored = {"session_id": session_id, "duration": duration, "response_url": url}
    return await _handle(request, parsed, stored)


async def put_profile(request: web.Request) -> web.Response:
    """Set a session's charging limit; the ChargingProfileResult follows."""
    session_id = _session_id(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise _invalid("(body)", "expected a SetChargingProfile object")
    parsed = SetProfileRequest(
        response_url=response_url(body.get("response_url")),
        session_id=session_id,
        limit=charging_limit(body.get("charging_profile")),
    )
    # The session of the URL wins over any "session_id" in the body: the push of active
    # profiles trusts the stored one (cpms.remote_control).
    return await _handle(request, parsed, {**body, "session_id": session_id})


async def delete_profile(request: web.Request) -> web.Response:
    """Clear a session's charging limit; the ClearProfileResult follows."""
    session_id = _session_id(request)
    url = response_url(request.query.get("response_url"))
    parsed = ClearProfileRequest(response_url=url, session_id=session_id)
    return await _handle(request, parsed, {"session_id": session_id, "response_url": url})


def add_routes(app: web.Application) -> None:
    """Add this module's routes to the /ocpi/2.2.1 application."""
    install_background(app)
    if PACER not in app:
        app[PACER] = RequestPacer()
    path = "/2.2.1/chargingprofiles/{session_id}"
    add_route(app, "GET", path, get_active_profile)
    add_route(app, "PUT", path, put_profile)
    add_route(app, "DELETE", path, delete_profile)
