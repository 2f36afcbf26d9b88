"""OCPI 2.2.1 commands module, RECEIVER interface: ``POST /2.2.1/commands/{command}``.

An eMSP asks us to START_SESSION, STOP_SESSION, RESERVE_NOW, CANCEL_RESERVATION or
UNLOCK_CONNECTOR. We answer at once with a CommandResponse (``cpms.remote_control`` decides:
ACCEPTED, REJECTED, NOT_SUPPORTED, UNKNOWN_SESSION; an unknown location is OCPI status 2003
with REJECTED), and when accepted the station is asked in a background task whose result is
queued as a CommandResult for the request's ``response_url`` (CHECKLIST 7).

The body is checked here: a missing or malformed field is OCPI 2001 and changes nothing;
fields we do not know are ignored (CHECKLIST 1.12). Background tasks are kept in a set on
the application, so they are not garbage collected, and cancelled on cleanup; a command
whose task was cancelled stays PENDING until ``expire_commands`` answers it TIMEOUT.
Helpers the chargingprofiles module shares live here too (``remote_control``,
``run_in_background``, the field readers, the ``PACER`` of its TOO_OFTEN rule).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from cpms.authorization import Operator
from cpms.documents.datetimes import parse_datetime
from cpms.errors import DocumentError
from cpms.remote_control import (
    CancelReservationRequest,
    RemoteControl,
    RemoteRequest,
    Reply,
    RequestPacer,
    ReserveNowRequest,
    StartSessionRequest,
    StopSessionRequest,
    UnlockConnectorRequest,
)
from ocpi_api.auth import CALLER
from ocpi_api.context import CONTEXT
from ocpi_api.envelope import OcpiStatus, ocpi_response
from ocpi_api.transport import OcpiError, add_route, read_json

__all__ = [
    "BACKGROUND",
    "ENDPOINTS",
    "PACER",
    "add_routes",
    "ci_string",
    "display",
    "install_background",
    "remote_control",
    "response_url",
    "run_in_background",
]

log = logging.getLogger("ocpi_api.commands")

#: (module identifier, our interface role, path under /ocpi/2.2.1) this module serves.
ENDPOINTS: list[tuple[str, str, str]] = [("commands", "RECEIVER", "commands")]

BACKGROUND = web.AppKey("remote_control_tasks", set[asyncio.Task[Any]])
"""Station calls of accepted commands still running; cancelled on cleanup."""
PACER = web.AppKey("charging_profile_pacer", RequestPacer)
"""When each (partner, session) last had a charging-profile request served (TOO_OFTEN):
this node's memory, kept across requests by the application (``chargingprofiles``)."""

_TOKEN_TYPES = ("AD_HOC_USER", "APP_USER", "OTHER", "RFID")


# Reading fields (OCPI 2001 on anything wrong)


def _invalid(path: str, problem: str) -> OcpiError:
    return OcpiError(OcpiStatus.INVALID_PARAMETERS, f"{path}: {problem}")


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(path, "expected a JSON object")
    return value


def ci_string(
    body: Mapping[str, Any], name: str, max_length: int, *, required: bool = True, path: str = ""
) -> str | None:
    """Return ``body[name]`` as an OCPI CiString(max_length) (None when optional and absent)."""
    where = f"{path}.{name}" if path else name
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(where, "is required")
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(where, f"expected a non-empty string, got {value!r}")
    if len(value) > max_length:
        raise _invalid(where, f"at most {max_length} characters, got {len(value)}")
    if not all(" " <= c <= "~" for c in value):
        raise _invalid(where, "printable ASCII characters only")
    return value


def _required(body: Mapping[str, Any], name: str, max_length: int, path: str = "") -> str:
    value = ci_string(body, name, max_length, path=path)
    assert value is not None
    return value


def response_url(value: Any, name: str = "response_url") -> str:
    """Return a ``response_url``: an http(s) URL of at most 255 characters."""
    if not isinstance(value, str) or not value:
        raise _invalid(name, "is required: the URL we POST the result to")
    if len(value) > 255 or not value.startswith(("http://", "https://")):
        raise _invalid(name, f"expected an http(s) URL of at most 255 characters, got {value!r}")
    return value


def _date_time(body: Mapping[str, Any], name: str) -> datetime:
    if body.get(name) is None:
        raise _invalid(name, "is required")
    try:
        return parse_datetime(body[name], name)
    except DocumentError as error:
        raise _invalid(error.path, error.problem) from None


def _token(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The command's Token: only what a session needs is checked (CHECKLIST 7.4)."""
    token = _object(body.get("token"), "token")
    _required(token, "country_code", 2, "token")
    _required(token, "party_id", 3, "token")
    _required(token, "uid", 36, "token")
    _required(token, "contract_id", 36, "token")
    ci_string(token, "group_id", 36, required=False, path="token")
    if token.get("type") not in _TOKEN_TYPES:
        raise _invalid("token.type", f"expected one of {', '.join(_TOKEN_TYPES)}")
    return token


def _start_session(body: Mapping[str, Any]) -> StartSessionRequest:
    evse_uid = ci_string(body, "evse_uid", 36, required=False)
    connector_id = ci_string(body, "connector_id", 36, required=False)
    if connector_id is not None and evse_uid is None:
        raise _invalid("evse_uid", "is required when connector_id is given")
    return StartSessionRequest(
        response_url=response_url(body.get("response_url")),
        token=_token(body),
        location_id=_required(body, "location_id", 36),
        evse_uid=evse_uid,
        connector_id=connector_id,
        authorization_reference=ci_string(body, "authorization_reference", 36, required=False),
    )


def _stop_session(body: Mapping[str, Any]) -> StopSessionRequest:
    return StopSessionRequest(
        response_url=response_url(body.get("response_url")),
        session_id=_required(body, "session_id", 36),
    )


def _reserve_now(body: Mapping[str, Any]) -> ReserveNowRequest:
    return ReserveNowRequest(
        response_url=response_url(body.get("response_url")),
        token=_token(body),
        expiry_date=_date_time(body, "expiry_date"),
        reservation_id=_required(body, "reservation_id", 36),
        location_id=_required(body, "location_id", 36),
        evse_uid=ci_string(body, "evse_uid", 36, required=False),
        authorization_reference=ci_string(body, "authorization_reference", 36, required=False),
    )


def _cancel_reservation(body: Mapping[str, Any]) -> CancelReservationRequest:
    return CancelReservationRequest(
        response_url=response_url(body.get("response_url")),
        reservation_id=_required(body, "reservation_id", 36),
    )


def _unlock_connector(body: Mapping[str, Any]) -> UnlockConnectorRequest:
    return UnlockConnectorRequest(
        response_url=response_url(body.get("response_url")),
        location_id=_required(body, "location_id", 36),
        evse_uid=_required(body, "evse_uid", 36),
        connector_id=_required(body, "connector_id", 36),
    )


#: OCPI CommandType -> the reader of its request body.
COMMANDS: Mapping[str, Callable[[Mapping[str, Any]], RemoteRequest]] = {
    "START_SESSION": _start_session,
    "STOP_SESSION": _stop_session,
    "RESERVE_NOW": _reserve_now,
    "CANCEL_RESERVATION": _cancel_reservation,
    "UNLOCK_CONNECTOR": _unlock_connector,
}


# The service and its background work


def remote_control(request: web.Request) -> RemoteControl:
    """The core's remote-control service, set up from the running process."""
    context = request.config_dict[CONTEXT]
    settings = context.settings
    return RemoteControl(
        context.uow,
        context.station_port,
        operator=Operator(settings.country_code, settings.party_id),
        result_timeout=settings.ocpi_command_timeout,
        station_timeout=settings.command_timeout,
        queued=context.wake_pusher,
        pacer=request.config_dict.get(PACER),
    )


def install_background(app: web.Application) -> None:
    """Give ``app`` its set of background tasks, cancelled when it is cleaned up (once)."""
    if BACKGROUND in app:
        return
    app[BACKGROUND] = set()

    async def cancel_tasks(app: web.Application) -> None:
        tasks = list(app[BACKGROUND])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.on_cleanup.append(cancel_tasks)


def run_in_background(request: web.Request, work: Coroutine[Any, Any, Any], name: str) -> None:
    """Run ``work`` after the answer is sent; failures are logged, never lost silently."""

    async def guarded() -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            # The command stays PENDING; expire_commands answers TIMEOUT at its deadline.
            log.exception("%s failed; its result will be TIMEOUT", name)

    tasks = request.config_dict[BACKGROUND]
    task = asyncio.create_task(guarded(), name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def display(message: str | None) -> list[dict[str, str]]:
    """Return ``message`` as an OCPI DisplayText list (empty without one)."""
    return [{"language": "en", "text": message[:512]}] if message else []


def _answer(request: web.Request, reply: Reply) -> web.Response:
    data: dict[str, Any] = {"result": reply.result, "timeout": reply.timeout}
    if reply.message:
        data["message"] = display(reply.message)
    if reply.unknown_location:
        return ocpi_response(
            request, data, status_code=OcpiStatus.UNKNOWN_LOCATION, message=reply.message
        )
    return ocpi_response(request, data, message=reply.message)


# The endpoint


async def post_command(request: web.Request) -> web.Response:
    """Accept or refuse a command at once; carry it out in the background."""
    name = request.match_info["command"]
    reader = COMMANDS.get(name)
    if reader is None:
        raise OcpiError(
            OcpiStatus.CLIENT_ERROR,
            f"unknown command {name!r}; one of {', '.join(COMMANDS)}",
            http_status=404,
        )
    body = _object(await read_json(request), "(body)")
    parsed = reader(body)
    control = remote_control(request)
    reply = await control.accept(request[CALLER], parsed, body=dict(body))
    if reply.work is not None:
        run_in_background(
            request, control.carry_out(reply.work), name=f"{name} {reply.work.command_id}"
        )
    return _answer(request, reply)


def add_routes(app: web.Application) -> None:
    """Add this module's routes to the /ocpi/2.2.1 application."""
    install_background(app)
    add_route(app, "POST", "/2.2.1/commands/{command}", post_command)
