"""Operator API handlers: each reads the request, calls one core service, renders the result."""

from __future__ import annotations

import json
import math
from datetime import datetime
from importlib import resources
from typing import Any

from aiohttp import web

from cpms import locations, push_queue, stations, tariffs, tokens
from cpms.cdrs import CdrFilter, credit_cdr, get_cdr, list_cdrs
from cpms.commands import send_command
from cpms.device_model import list_monitors, list_variables, monitor_view, variable_view
from cpms.documents import format_datetime, parse_datetime
from cpms.errors import DocumentError, InvalidRequest, NotFound
from cpms.hub_clients import hub_client_view, list_client_infos
from cpms.locations import EvseWiring
from cpms.model import OcpiPush, utcnow
from cpms.partners import partner_summary
from cpms.reservations import list_reservations, reservation_view
from cpms.secrets import TokenVault
from cpms.sessions import (
    SessionFilter,
    close_by_operator,
    get_session,
    list_sessions,
    lost_race_is_conflict,
)
from cpms.station_lifecycle import approve_station, list_station_events
from cpms.station_port import StationPort
from cpms.stations import StationChanges
from cpms.views import (
    cdr_view,
    connector_view,
    evse_view,
    location_view,
    page_view,
    session_view,
    station_event_view,
    station_view,
    tariff_view,
    token_view,
)
from ocpi_api.client import OcpiClient
from ocpi_api.context import CONTEXT, HttpContext
from ocpi_api.hub_client_pull import pull_hub_clients
from ocpi_api.operator.middleware import error_json, errors_middleware, operator_auth_middleware
from ocpi_api.pull import PullFailed
from ocpi_api.token_pull import pull_tokens

__all__ = ["MAX_COMMAND_TIMEOUT", "create_operator_app", "routes"]

MAX_COMMAND_TIMEOUT = 300.0
"""Seconds: the longest a command request may wait for the station's answer."""

routes = web.RouteTableDef()


def _context(request: web.Request) -> HttpContext:
    return request.config_dict[CONTEXT]


def _paging(request: web.Request) -> tuple[int, int | None]:
    try:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query["limit"]) if "limit" in request.query else None
    except ValueError:
        raise InvalidRequest("offset and limit must be whole numbers") from None
    return offset, limit


async def _body(request: web.Request) -> Any:
    return json.loads(await request.text() or "null")


async def _object(request: web.Request) -> dict[str, Any]:
    body = await _body(request)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _documents(body: Any) -> list[dict[str, Any]]:
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(item, dict) for item in items):
        raise InvalidRequest("the body must be a JSON object or a non-empty list of objects")
    return items


def _split_wiring(body: dict[str, Any]) -> tuple[dict[str, Any], EvseWiring | None]:
    document = dict(body)
    if "station_id" not in document and "ocpp_evse_id" not in document:
        return document, None
    station_id, evse_id = document.pop("station_id", None), document.pop("ocpp_evse_id", None)
    if station_id is not None and not isinstance(station_id, str):
        raise InvalidRequest("station_id must be a string or null")
    if evse_id is not None and (not isinstance(evse_id, int) or isinstance(evse_id, bool)):
        raise InvalidRequest("ocpp_evse_id must be an integer or null")
    unwire = "station_id" in body and station_id is None
    return document, EvseWiring(station_id=station_id, ocpp_evse_id=evse_id, unwire=unwire)


# Health and description ------------------------------------------------------------------


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Report database and listener state; 503 when something is down."""
    report = await _context(request).health()
    return web.json_response(report, status=200 if report["status"] == "ok" else 503)


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """Serve the OpenAPI description of this API."""
    text = resources.files("ocpi_api.operator").joinpath("openapi.json").read_text("utf-8")
    return web.Response(text=text, content_type="application/json")


# Locations, EVSEs, connectors ------------------------------------------------------------


@routes.get("/locations")
async def list_locations(request: web.Request) -> web.Response:
    offset, limit = _paging(request)
    page = await locations.list_locations(_context(request).uow(), offset=offset, limit=limit)
    return web.json_response(page_view(page, [location_view(x) for x in page.items]))


@routes.post("/locations")
async def import_locations(request: web.Request) -> web.Response:
    documents = _documents(await _body(request))
    result = await locations.import_locations(_context(request).uow(), documents)
    status = 201 if result.created and not result.updated else 200
    return web.json_response({"created": result.created, "updated": result.updated}, status=status)


@routes.get("/locations/{location_id}")
async def get_location(request: web.Request) -> web.Response:
    location = await locations.get_location(
        _context(request).uow(), request.match_info["location_id"]
    )
    return web.json_response(location_view(location))


@routes.put("/locations/{location_id}")
@routes.patch("/locations/{location_id}")
async def change_location(request: web.Request) -> web.Response:
    location = await locations.change_location(
        _context(request).uow(),
        request.match_info["location_id"],
        await _object(request),
        replace=request.method == "PUT",
    )
    return web.json_response(location_view(location))


@routes.delete("/locations/{location_id}")
async def retire_location(request: web.Request) -> web.Response:
    location = await locations.retire_location(
        _context(request).uow(), request.match_info["location_id"]
    )
    return web.json_response(location_view(location))


@routes.post("/locations/{location_id}/evses")
async def add_evse(request: web.Request) -> web.Response:
    document, wiring = _split_wiring(await _object(request))
    evse = await locations.add_evse(
        _context(request).uow(), request.match_info["location_id"], document, wiring
    )
    return web.json_response(evse_view(evse), status=201)


@routes.get("/locations/{location_id}/evses/{evse_uid}")
async def get_evse(request: web.Request) -> web.Response:
    info = request.match_info
    evse = await locations.get_evse(_context(request).uow(), info["location_id"], info["evse_uid"])
    return web.json_response(evse_view(evse))


@routes.put("/locations/{location_id}/evses/{evse_uid}")
@routes.patch("/locations/{location_id}/evses/{evse_uid}")
async def change_evse(request: web.Request) -> web.Response:
    info = request.match_info
    document, wiring = _split_wiring(await _object(request))
    evse = await locations.change_evse(
        _context(request).uow(),
        info["location_id"],
        info["evse_uid"],
        document,
        wiring,
        replace=request.method == "PUT",
    )
    return web.json_response(evse_view(evse))


@routes.delete("/locations/{location_id}/evses/{evse_uid}")
async def retire_evse(request: web.Request) -> web.Response:
    info = request.match_info
    evse = await locations.retire_evse(
        _context(request).uow(), info["location_id"], info["evse_uid"]
    )
    return web.json_response(evse_view(evse))


@routes.post("/locations/{location_id}/evses/{evse_uid}/connectors")
async def add_connector(request: web.Request) -> web.Response:
    info = request.match_info
    connector = await locations.add_connector(
        _context(request).uow(), info["location_id"], info["evse_uid"], await _object(request)
    )
    return web.json_response(connector_view(connector), status=201)


@routes.get("/locations/{location_id}/evses/{evse_uid}/connectors/{connector_id}")
async def get_connector(request: web.Request) -> web.Response:
    info = request.match_info
    evse = await locations.get_evse(_context(request).uow(), info["location_id"], info["evse_uid"])
    for connector in evse.connectors:
        if connector.id == info["connector_id"]:
            return web.json_response(connector_view(connector))
    raise NotFound("connector", f"{info['evse_uid']}/{info['connector_id']}")


@routes.put("/locations/{location_id}/evses/{evse_uid}/connectors/{connector_id}")
@routes.patch("/locations/{location_id}/evses/{evse_uid}/connectors/{connector_id}")
async def change_connector(request: web.Request) -> web.Response:
    info = request.match_info
    connector = await locations.change_connector(
        _context(request).uow(),
        info["location_id"],
        info["evse_uid"],
        info["connector_id"],
        await _object(request),
        replace=request.method == "PUT",
    )
    return web.json_response(connector_view(connector))


@routes.delete("/locations/{location_id}/evses/{evse_uid}/connectors/{connector_id}")
async def remove_connector(request: web.Request) -> web.Response:
    info = request.match_info
    await locations.remove_connector(
        _context(request).uow(), info["location_id"], info["evse_uid"], info["connector_id"]
    )
    return web.Response(status=204)


@routes.put("/locations/{location_id}/evses/{evse_uid}/connectors/{connector_id}/tariffs")
async def assign_tariffs(request: web.Request) -> web.Response:
    info = request.match_info
    body = await _object(request)
    tariff_ids = body.get("tariff_ids")
    if not isinstance(tariff_ids, list) or not all(isinstance(t, str) for t in tariff_ids):
        raise InvalidRequest('send {"tariff_ids": ["TARIFF_ID", ...]} (an empty list clears)')
    connector = await locations.assign_tariffs(
        _context(request).uow(), info["location_id"], info["evse_uid"], info["connector_id"],
        tariff_ids,
    )  # fmt: skip
    return web.json_response(connector_view(connector))


# Stations -----------------------------------------------------------------------------------


def _station_changes(body: dict[str, Any]) -> StationChanges:
    allowed = {"location_id", "password", "lenient"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown station field {unknown[0]!r} (allowed: {sorted(allowed)})")
    password = body.get("password")
    if "password" in body and password is not None and not isinstance(password, str):
        raise InvalidRequest("password must be a string, or null to remove it")
    lenient = body.get("lenient")
    if lenient is not None and not isinstance(lenient, bool):
        raise InvalidRequest("lenient must be true or false")
    location_id = body.get("location_id")
    if location_id is not None and not isinstance(location_id, str):
        raise InvalidRequest("location_id must be a string")
    return StationChanges(
        location_id=location_id,
        password=password,
        clear_password="password" in body and password is None,
        lenient=lenient,
    )


@routes.get("/stations")
async def list_stations(request: web.Request) -> web.Response:
    offset, limit = _paging(request)
    page = await stations.list_stations(
        _context(request).uow(),
        offset=offset,
        limit=limit,
        location_id=request.query.get("location_id"),
    )
    return web.json_response(page_view(page, [station_view(s) for s in page.items]))


@routes.post("/stations")
async def create_station(request: web.Request) -> web.Response:
    body = await _object(request)
    station_id = body.pop("id", None)
    if not isinstance(station_id, str):
        raise InvalidRequest('"id" (the station identity in /ocpp/{id}) is required')
    changes = _station_changes(body)
    if changes.location_id is None:
        raise InvalidRequest('"location_id" is required')
    station = await stations.create_station(
        _context(request).uow(),
        station_id,
        location_id=changes.location_id,
        password=changes.password,
        lenient=bool(changes.lenient),
    )
    return web.json_response(station_view(station), status=201)


@routes.get("/stations/{station_id}")
async def get_station(request: web.Request) -> web.Response:
    station = await stations.get_station(_context(request).uow(), request.match_info["station_id"])
    return web.json_response(station_view(station))


@routes.patch("/stations/{station_id}")
async def update_station(request: web.Request) -> web.Response:
    station = await stations.update_station(
        _context(request).uow(),
        request.match_info["station_id"],
        _station_changes(await _object(request)),
    )
    return web.json_response(station_view(station))


@routes.delete("/stations/{station_id}")
async def retire_station(request: web.Request) -> web.Response:
    station = await stations.retire_station(
        _context(request).uow(), request.match_info["station_id"]
    )
    return web.json_response(station_view(station))


@routes.post("/stations/{station_id}/approve")
async def approve_pending_station(request: web.Request) -> web.Response:
    """Let a Pending station be Accepted at its next boot."""
    station = await approve_station(_context(request).uow(), request.match_info["station_id"])
    return web.json_response(station_view(station))


@routes.get("/stations/{station_id}/events")
async def list_events(request: web.Request) -> web.Response:
    offset, limit = _paging(request)
    page = await list_station_events(
        _context(request).uow(),
        request.match_info["station_id"],
        kind=request.query.get("kind") or None,
        offset=offset,
        limit=limit,
    )
    return web.json_response(page_view(page, [station_event_view(e) for e in page.items]))


@routes.get("/stations/{station_id}/device-model")
async def list_device_model(request: web.Request) -> web.Response:
    """A 2.0.1 station's device model as it last reported it: one reported attribute per item."""
    offset, limit = _paging(request)
    async with _context(request).uow() as uow:
        page = await list_variables(
            uow,
            request.match_info["station_id"],
            component=request.query.get("component") or None,
            variable=request.query.get("variable") or None,
            offset=offset,
            limit=limit,
        )
        items = [variable_view(v) for v in page.items]
    return web.json_response(page_view(page, items))


@routes.get("/stations/{station_id}/monitors")
async def list_device_monitors(request: web.Request) -> web.Response:
    """The monitors a 2.0.1 station last reported, by monitor id."""
    offset, limit = _paging(request)
    async with _context(request).uow() as uow:
        page = await list_monitors(
            uow,
            request.match_info["station_id"],
            component=request.query.get("component") or None,
            variable=request.query.get("variable") or None,
            offset=offset,
            limit=limit,
        )
        items = [monitor_view(m) for m in page.items]
    return web.json_response(page_view(page, items))


# Station commands ---------------------------------------------------------------------------


def _station_port(request: web.Request) -> StationPort:
    port = _context(request).station_port
    if port is None:
        raise web.HTTPServiceUnavailable(
            text=json.dumps(
                {"error": {"code": "unavailable", "message": "no OCPP gateway runs here"}}
            ),
            content_type="application/json",
        )
    return port


def _command_timeout(request: web.Request) -> float:
    raw = request.query.get("timeout")
    if raw is None:
        return _context(request).settings.command_timeout
    try:
        timeout = float(raw)
    except ValueError:
        timeout = math.nan
    if not 0 < timeout <= MAX_COMMAND_TIMEOUT:  # also refuses nan
        raise InvalidRequest(
            f"timeout must be a number of seconds above 0 and at most {MAX_COMMAND_TIMEOUT:g}"
        )
    return timeout


async def _arguments(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    if not text.strip():
        return {}
    body = json.loads(text)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object: the command's OCPP payload")
    return body


@routes.get("/stations/{station_id}/commands")
async def list_commands(request: web.Request) -> web.Response:
    """The commands this server can send to the station now (none while it is offline)."""
    station_id = request.match_info["station_id"]
    port = _station_port(request)
    await stations.get_station(_context(request).uow(), station_id)
    available = list(port.commands(station_id))
    return web.json_response(
        {"station_id": station_id, "connected": bool(available), "commands": available}
    )


@routes.post("/stations/{station_id}/commands/{command}")
async def send_station_command(request: web.Request) -> web.Response:
    """Send an OCPP command and answer what the station said (502 when it said CALLERROR)."""
    info = request.match_info
    port = _station_port(request)
    timeout = _command_timeout(request)
    arguments = await _arguments(request)
    result = await send_command(
        _context(request).uow, port, info["station_id"], info["command"], arguments,
        timeout=timeout,
    )  # fmt: skip
    if result.answered:
        answer = {
            "command": result.command,
            "status": "answered",
            "response": result.response,
            "problems": list(result.problems),
        }
        return web.json_response(answer)
    error = {
        "code": result.error_code,
        "description": result.error_description,
        "details": result.error_details,
    }
    return web.json_response(
        {"command": result.command, "status": "error", "error": error}, status=502
    )


# Tariffs ------------------------------------------------------------------------------------


# Reservations --------------------------------------------------------------------------------


@routes.get("/reservations")
async def list_station_reservations(request: web.Request) -> web.Response:
    """Reservations oldest first, narrowed by station or to those still holding an EVSE."""
    offset, limit = _paging(request)
    now = utcnow()
    async with _context(request).uow() as uow:
        page = await list_reservations(
            uow,
            station_id=request.query.get("station_id"),
            active=_bool_query(request, "active"),
            now=now,
            offset=offset,
            limit=limit,
        )
    return web.json_response(page_view(page, [reservation_view(r, now) for r in page.items]))


@routes.get("/tariffs")
async def list_tariffs(request: web.Request) -> web.Response:
    offset, limit = _paging(request)
    page = await tariffs.list_tariffs(
        _context(request).uow(),
        offset=offset,
        limit=limit,
        include_retired=request.query.get("include_retired") == "true",
    )
    return web.json_response(page_view(page, [tariff_view(t) for t in page.items]))


@routes.post("/tariffs")
async def import_tariffs(request: web.Request) -> web.Response:
    result = await tariffs.import_tariffs(_context(request).uow(), _documents(await _body(request)))
    status = 201 if result.created and not result.updated else 200
    return web.json_response({"created": result.created, "updated": result.updated}, status=status)


@routes.get("/tariffs/{tariff_id}")
async def get_tariff(request: web.Request) -> web.Response:
    tariff = await tariffs.get_tariff(_context(request).uow(), request.match_info["tariff_id"])
    return web.json_response(tariff_view(tariff))


@routes.put("/tariffs/{tariff_id}")
async def replace_tariff(request: web.Request) -> web.Response:
    tariff = await tariffs.replace_tariff(
        _context(request).uow(), request.match_info["tariff_id"], await _object(request)
    )
    return web.json_response(tariff_view(tariff))


@routes.delete("/tariffs/{tariff_id}")
async def retire_tariff(request: web.Request) -> web.Response:
    tariff = await tariffs.retire_tariff(_context(request).uow(), request.match_info["tariff_id"])
    return web.json_response(tariff_view(tariff))


# Local tokens -------------------------------------------------------------------------------


def _our_party(request: web.Request) -> dict[str, str]:
    settings = _context(request).settings
    return {"country_code": settings.country_code, "party_id": settings.party_id}


@routes.get("/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    offset, limit = _paging(request)
    page = await tokens.list_tokens(
        _context(request).uow(), offset=offset, limit=limit, source=request.query.get("source")
    )
    return web.json_response(page_view(page, [token_view(t) for t in page.items]))


@routes.post("/tokens")
async def create_token(request: web.Request) -> web.Response:
    token = await tokens.create_token(
        _context(request).uow(), await _object(request), **_our_party(request)
    )
    return web.json_response(token_view(token), status=201)


@routes.get("/tokens/{uid}")
async def get_token(request: web.Request) -> web.Response:
    token = await tokens.get_token(
        _context(request).uow(),
        request.match_info["uid"],
        type_=request.query.get("type", "RFID"),
        **_our_party(request),
    )
    return web.json_response(token_view(token))


@routes.patch("/tokens/{uid}")
async def update_token(request: web.Request) -> web.Response:
    token = await tokens.update_token(
        _context(request).uow(),
        request.match_info["uid"],
        await _object(request),
        type_=request.query.get("type", "RFID"),
        **_our_party(request),
    )
    return web.json_response(token_view(token))


@routes.delete("/tokens/{uid}")
async def retire_token(request: web.Request) -> web.Response:
    token = await tokens.retire_token(
        _context(request).uow(),
        request.match_info["uid"],
        type_=request.query.get("type", "RFID"),
        **_our_party(request),
    )
    return web.json_response(token_view(token))


# Sessions and CDRs ---------------------------------------------------------------------------


def _date_query(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return parse_datetime(raw, name)
    except DocumentError as error:
        raise InvalidRequest(f"query parameter {error}") from None


def _bool_query(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise InvalidRequest(f"query parameter {name} must be true or false, not {raw!r}")
    return raw == "true"


async def _optional_object(request: web.Request) -> dict[str, Any]:
    """The JSON object sent, ``{}`` for an empty body."""
    text = await request.text()
    if not text.strip():
        return {}
    body = json.loads(text)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r} (allowed: {sorted(allowed)})")


@routes.get("/sessions")
async def list_charging_sessions(request: web.Request) -> web.Response:
    """Sessions oldest first, narrowed by status, station, location, update time or flag."""
    offset, limit = _paging(request)
    where = SessionFilter(
        status=request.query.get("status"),
        station_id=request.query.get("station_id"),
        location_id=request.query.get("location_id"),
        date_from=_date_query(request, "date_from"),
        date_to=_date_query(request, "date_to"),
        flag=request.query.get("flag"),
    )
    async with _context(request).uow() as uow:
        page = await list_sessions(uow, where, offset=offset, limit=limit)
        items = [session_view(s, s.charging_periods) for s in page.items]
    return web.json_response(page_view(page, items))


@routes.get("/sessions/{session_id}")
async def get_charging_session(request: web.Request) -> web.Response:
    async with _context(request).uow() as uow:
        session = await get_session(uow, request.match_info["session_id"])
        return web.json_response(session_view(session, session.charging_periods))


@routes.post("/sessions/{session_id}/close")
async def close_charging_session(request: web.Request) -> web.Response:
    """Close a session no station will stop, at its last trusted reading; issue its CDR."""
    body = await _optional_object(request)
    _only(body, {"note"})
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise InvalidRequest("note must be a string")
    session_id = request.match_info["session_id"]
    async with (
        _context(request).uow() as uow,
        lost_race_is_conflict(f"session {session_id} was closed meanwhile"),
    ):
        session = await close_by_operator(uow, session_id, now=utcnow(), note=note)
        view = session_view(session, session.charging_periods)
        await uow.commit()
    return web.json_response(view)


@routes.get("/cdrs")
async def list_charge_detail_records(request: web.Request) -> web.Response:
    """CDRs oldest first, narrowed by session, issue time or credit."""
    offset, limit = _paging(request)
    where = CdrFilter(
        session_id=request.query.get("session_id"),
        date_from=_date_query(request, "date_from"),
        date_to=_date_query(request, "date_to"),
        credit=_bool_query(request, "credit"),
    )
    async with _context(request).uow() as uow:
        page = await list_cdrs(uow, where, offset=offset, limit=limit)
    return web.json_response(page_view(page, [cdr_view(c, explain=False) for c in page.items]))


@routes.get("/cdrs/{cdr_id}")
async def get_charge_detail_record(request: web.Request) -> web.Response:
    async with _context(request).uow() as uow:
        cdr = await get_cdr(uow, request.match_info["cdr_id"])
    return web.json_response(cdr_view(cdr, explain=True))


@routes.post("/cdrs/{cdr_id}/credit")
async def credit_charge_detail_record(request: web.Request) -> web.Response:
    """Credit a CDR; with ``reissue``, price its session again and issue a new CDR."""
    body = await _object(request)
    _only(body, {"reason", "reissue"})
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest('"reason" is required: say why (it becomes the credit\'s remark)')
    reissue = body.get("reissue", False)
    if not isinstance(reissue, bool):
        raise InvalidRequest("reissue must be true or false")
    cdr_id = request.match_info["cdr_id"]
    async with (
        _context(request).uow() as uow,
        lost_race_is_conflict(f"CDR {cdr_id} was credited meanwhile"),
    ):
        credit, replacement = await credit_cdr(
            uow, cdr_id, reason=reason, now=utcnow(), reissue=reissue
        )
        await uow.commit()
    answer = {
        "credit": cdr_view(credit, explain=True),
        "replacement": cdr_view(replacement, explain=True) if replacement is not None else None,
    }
    return web.json_response(answer, status=201)


# OCPI partners and what they still have to receive ------------------------------------------


def _partner_id(request: web.Request) -> int:
    raw = request.match_info["partner_id"]
    if not raw.isdigit():
        raise NotFound("partner", raw)
    return int(raw)


def _backlog_view(entry: push_queue.PartnerBacklog, now: datetime) -> dict[str, Any]:
    oldest = entry.oldest_pending
    return partner_summary(entry.partner) | {
        "backlog": {
            "pending": entry.pending,
            "failed": entry.failed,
            "oldest_pending_at": format_datetime(oldest) if oldest else None,
            "oldest_pending_age": (
                round(max(0.0, (now - oldest).total_seconds()), 3) if oldest else None
            ),
            "last_error": entry.last_error,
        }
    }


def _push_view(push: OcpiPush) -> dict[str, Any]:
    state = "pending" if push.done_at is None else (push.outcome or "").lower()
    return {
        "id": push.id,
        "object_key": push.object_key,
        "kind": push.kind,
        "state": state,
        "payload": push.payload,
        "created_at": format_datetime(push.created_at),
        "available_at": format_datetime(push.available_at),
        "attempts": push.attempts,
        "last_error": push.last_error,
        "done_at": format_datetime(push.done_at) if push.done_at else None,
        "response": push.response,
    }


@routes.get("/ocpi/partners")
async def list_ocpi_partners(request: web.Request) -> web.Response:
    """OCPI partners with the backlog of pushes each still has to receive."""
    offset, limit = _paging(request)
    page = await push_queue.backlog(_context(request).uow(), offset=offset, limit=limit)
    now = utcnow()
    return web.json_response(page_view(page, [_backlog_view(e, now) for e in page.items]))


@routes.get("/ocpi/partners/{partner_id}/pushes")
async def list_ocpi_pushes(request: web.Request) -> web.Response:
    """A partner's pushes: pending ones oldest first, the others newest first."""
    offset, limit = _paging(request)
    page = await push_queue.list_pushes(
        _context(request).uow(),
        _partner_id(request),
        state=request.query.get("state"),
        offset=offset,
        limit=limit,
    )
    return web.json_response(page_view(page, [_push_view(p) for p in page.items]))


@routes.post("/ocpi/partners/{partner_id}/pushes/retry")
async def retry_ocpi_pushes(request: web.Request) -> web.Response:
    """Make a partner's refused and waiting pushes due now."""
    context = _context(request)
    count = await push_queue.make_available(
        context.uow(), _partner_id(request), now=utcnow(), reopen_failed=True
    )
    context.wake_pusher()
    return web.json_response({"retried": count})


# Pulling partners' lists, and what hubs said of their clients ------------------------------


def _pull_tools(request: web.Request) -> tuple[TokenVault, OcpiClient]:
    context = _context(request)
    if context.vault is None or context.ocpi_client is None:
        raise web.HTTPServiceUnavailable(
            text=json.dumps(
                {"error": {"code": "unavailable", "message": "no OCPI client runs here"}}
            ),
            content_type="application/json",
        )
    return context.vault, context.ocpi_client


async def _pull(request: web.Request, pull: Any) -> web.Response:
    """Run ``pull`` (tokens or hub clients) for the partner of the URL; answer its report."""
    body = await _optional_object(request)
    _only(body, {"since"})
    since = body.get("since")
    if since is not None:
        try:
            since = parse_datetime(since, "since")
        except DocumentError as error:
            raise InvalidRequest(str(error)) from None
    vault, client = _pull_tools(request)
    try:
        report = await pull(_context(request).uow, vault, client, _partner_id(request), since=since)
    except PullFailed as error:
        return error_json(502, "pull_failed", str(error))
    return web.json_response(report.view())


@routes.post("/ocpi/partners/{partner_id}/pull-tokens")
async def pull_ocpi_tokens(request: web.Request) -> web.Response:
    """Pull an eMSP's token list, every page, and store each token as a pushed one."""
    return await _pull(request, pull_tokens)


@routes.post("/ocpi/partners/{partner_id}/pull-clients")
async def pull_ocpi_hub_clients(request: web.Request) -> web.Response:
    """Pull a hub's ClientInfo list, every page, and store each as the hub's PUT would."""
    return await _pull(request, pull_hub_clients)


@routes.get("/ocpi/hub-clients")
async def list_ocpi_hub_clients(request: web.Request) -> web.Response:
    """What hubs said of their clients: role and connection status per hub and party."""
    offset, limit = _paging(request)
    page, names = await list_client_infos(_context(request).uow(), offset=offset, limit=limit)
    items = [hub_client_view(client, names.get(client.partner_id)) for client in page.items]
    return web.json_response(page_view(page, items))


def create_operator_app() -> web.Application:
    """Build the ``/api`` sub-application."""
    app = web.Application(middlewares=[errors_middleware, operator_auth_middleware])
    app.add_routes(routes)
    return app
