"""The ``cpms`` command: run the server, and manage what it serves.

``cpms serve`` runs a node (see ``cpms.runtime``). The management verbs (``locations``,
``evses``, ``connectors``, ``stations``, ``tariffs``, ``tokens``, ``sessions``,
``reservations``, ``cdrs``, ``db``) work directly on the database named by
``--database-url`` / ``CPMS_DATABASE_URL`` through the same core services as the operator
API, so they work before the first start, while a server runs, and against the shared
PostgreSQL of several nodes. Changes reach running servers through the database.

The one exception is ``cpms stations command``: a station's websocket lives in the running
server, so that verb asks the server, over its operator API (``POST
/api/stations/{id}/commands/{name}``), with the operator token.

``cpms ocpi`` manages OCPI partners. ``invite``, ``partners`` work on the database; ``register``,
``update``, ``unregister``, ``pull-tokens`` and ``pull-clients`` also talk to the partner from
this process (through ``cpms.runtime``, which composes the core with the OCPI client, and the
key file that seals partners' tokens), while the partner calls back the running server.

Exit codes: 0 done, 1 the operation was refused (not found, conflict, invalid document; for a
command also: the station is offline, not booted, answered an error or did not answer in
time), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cpms import event_loop, locations, stations, tariffs, tokens
from cpms.cdrs import CdrFilter, credit_cdr, get_cdr, list_cdrs
from cpms.config import OPTIONS, Settings, load_settings
from cpms.database import create_engine, current_revision, head_revision, prepare_schema
from cpms.demo import DEMO_SETTINGS
from cpms.device_model import address_of, list_variables, variable_view
from cpms.documents import load_documents, parse_datetime
from cpms.errors import ConfigError, CpmsError, DocumentError, SchemaOutOfDate
from cpms.locations import EvseWiring
from cpms.model import Cdr, OcpiPartner, utcnow
from cpms.partners import invite_partner, list_partners, partner_summary
from cpms.pricing.money import minor_unit
from cpms.reservations import list_reservations, reservation_view
from cpms.secrets import TokenVault
from cpms.sessions import (
    SESSION_STATUSES,
    SessionFilter,
    close_by_operator,
    get_session,
    list_sessions,
    lost_race_is_conflict,
)
from cpms.station_lifecycle import approve_station, list_station_events
from cpms.stations import StationChanges
from cpms.unit_of_work import UnitOfWorkFactory
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

__all__ = ["build_parser", "main"]

Action = Callable[[argparse.Namespace, UnitOfWorkFactory, Settings], Awaitable[Any]]
RemoteAction = Callable[[argparse.Namespace, Settings], Awaitable[Any]]

MAX_COMMAND_TIMEOUT = 300.0
"""Seconds: the longest the operator API lets a command wait for the station."""
HTTP_MARGIN = 10.0
"""Seconds the server may take beyond a command's own deadline to answer the CLI."""


class UsageError(Exception):
    """The command line cannot be acted on (exit 2)."""


class Report(str):
    """Text laid out for a person: printed as it is (a verb returns one only without --json)."""


# Reading input -------------------------------------------------------------------------------


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CpmsError(f"cannot read {path}: {error.strerror}") from None


def _document(path: str) -> dict[str, Any]:
    documents = load_documents(_read(path))
    if len(documents) != 1:
        raise CpmsError(f"{path} holds {len(documents)} objects; one is expected here")
    return documents[0]


def _assignments(pairs: Sequence[str] | None) -> dict[str, Any]:
    """Parse ``--set key=value`` pairs; a value that is JSON is taken as JSON."""
    changes: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CpmsError(f"--set {pair!r}: write KEY=VALUE")
        try:
            changes[key] = json.loads(raw)
        except json.JSONDecodeError:
            changes[key] = raw
    return changes


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = _document(args.file) if getattr(args, "file", None) else {}
    changes.update(_assignments(getattr(args, "set", None)))
    return changes


def _wiring(args: argparse.Namespace) -> EvseWiring | None:
    if args.station is None and args.ocpp_evse_id is None:
        return None
    return EvseWiring(station_id=args.station, ocpp_evse_id=args.ocpp_evse_id)


def _our_party(settings: Settings) -> dict[str, str]:
    return {"country_code": settings.country_code, "party_id": settings.party_id}


# Actions -------------------------------------------------------------------------------------


async def _locations_import(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    result = await locations.import_locations(uow(), load_documents(_read(a.file)))
    return {"created": result.created, "updated": result.updated}


async def _locations_list(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    page = await locations.list_locations(uow(), offset=a.offset, limit=a.limit)
    return page_view(page, [location_view(x) for x in page.items])


async def _locations_show(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return location_view(await locations.get_location(uow(), a.location_id))


async def _locations_update(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    location = await locations.change_location(uow(), a.location_id, _changes(a), replace=a.replace)
    return location_view(location)


async def _locations_retire(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return location_view(await locations.retire_location(uow(), a.location_id))


async def _evses_add(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    evse = await locations.add_evse(uow(), a.location_id, _document(a.file), _wiring(a))
    return evse_view(evse)


async def _evses_show(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return evse_view(await locations.get_evse(uow(), a.location_id, a.evse_uid))


async def _evses_update(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    evse = await locations.change_evse(
        uow(), a.location_id, a.evse_uid, _changes(a), _wiring(a), replace=a.replace
    )
    return evse_view(evse)


async def _evses_retire(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return evse_view(await locations.retire_evse(uow(), a.location_id, a.evse_uid))


async def _connectors_add(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    connector = await locations.add_connector(uow(), a.location_id, a.evse_uid, _document(a.file))
    return connector_view(connector)


async def _connectors_show(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    evse = await locations.get_evse(uow(), a.location_id, a.evse_uid)
    for connector in evse.connectors:
        if connector.id == a.connector_id:
            return connector_view(connector)
    raise CpmsError(f"connector {a.connector_id!r} not found on EVSE {a.evse_uid!r}")


async def _connectors_update(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    connector = await locations.change_connector(
        uow(), a.location_id, a.evse_uid, a.connector_id, _changes(a), replace=a.replace
    )
    return connector_view(connector)


async def _connectors_remove(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    await locations.remove_connector(uow(), a.location_id, a.evse_uid, a.connector_id)
    return {"removed": f"{a.location_id}/{a.evse_uid}/{a.connector_id}"}


async def _connectors_tariffs(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    connector = await locations.assign_tariffs(
        uow(), a.location_id, a.evse_uid, a.connector_id, a.tariff_ids
    )
    return connector_view(connector)


async def _stations_create(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    station = await stations.create_station(
        uow(), a.station_id, location_id=a.location, password=_password(a), lenient=a.lenient
    )
    return station_view(station)


def _password(a: argparse.Namespace) -> str | None:
    if getattr(a, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    return a.password


async def _stations_list(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    page = await stations.list_stations(
        uow(), offset=a.offset, limit=a.limit, location_id=a.location
    )
    return page_view(page, [station_view(x) for x in page.items])


async def _stations_show(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return station_view(await stations.get_station(uow(), a.station_id))


async def _stations_update(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    changes = StationChanges(
        location_id=a.location,
        password=_password(a),
        clear_password=a.no_password,
        lenient=a.lenient,
    )
    return station_view(await stations.update_station(uow(), a.station_id, changes))


async def _stations_retire(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return station_view(await stations.retire_station(uow(), a.station_id))


async def _stations_approve(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return station_view(await approve_station(uow(), a.station_id))


async def _stations_events(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    page = await list_station_events(
        uow(), a.station_id, kind=a.kind, offset=a.offset, limit=a.limit
    )
    return page_view(page, [station_event_view(x) for x in page.items])


async def _stations_device_model(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    async with uow() as unit:
        page = await list_variables(
            unit, a.station_id, component=a.component, variable=a.variable,
            offset=a.offset, limit=a.limit,
        )  # fmt: skip
    if a.json:
        return page_view(page, [variable_view(x) for x in page.items])
    lines = []
    for row in page.items:
        unit_text = f" {row.unit}" if row.unit and row.value is not None else ""
        value = "-" if row.value is None else row.value + unit_text
        lines.append(f"{address_of(row).label}\t{row.attribute_type}\t{value}\t{row.mutability}")
    lines.append(f"({len(page.items)} of {page.total}, from offset {page.offset})")
    return Report("\n".join(lines))


def _command_arguments(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    if text == "-":
        text = sys.stdin.read()
    try:
        arguments = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as error:
        raise UsageError(f"the command's arguments are not valid JSON: {error}") from None
    if not isinstance(arguments, dict):
        raise UsageError(
            'the command\'s arguments must be a JSON object, e.g. \'{"type": "Soft"}\''
        )
    return arguments


def _api_base(a: argparse.Namespace, s: Settings) -> str:
    base = (a.url or s.base_url()).rstrip("/")
    return base.removesuffix("/api")


async def _stations_command(a: argparse.Namespace, s: Settings) -> Any:
    """Ask the running server to send a command; return its answer document."""
    import aiohttp  # only this verb speaks HTTP

    token = a.token or s.admin_token
    if not token:
        raise UsageError(
            "no operator token: pass --token TOKEN or set CPMS_ADMIN_TOKEN "
            "(the token `cpms serve` printed on its first start)"
        )
    arguments = _command_arguments(a.arguments)
    timeout = a.timeout if a.timeout is not None else s.command_timeout
    base = _api_base(a, s)
    url = f"{base}/api/stations/{quote(a.station_id, safe='')}/commands/{quote(a.name, safe='')}"
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout + HTTP_MARGIN)
            ) as session,
            session.post(
                url,
                params={"timeout": f"{timeout:g}"},
                json=arguments,
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            status = response.status
            text = await response.text()
    except aiohttp.ClientConnectorError as error:
        raise CpmsError(
            f"cannot reach the server at {base} ({error.os_error.strerror or error}); "
            "is `cpms serve` running? Name it with --url or CPMS_PUBLIC_URL"
        ) from None
    except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
        raise CpmsError(
            f"the server at {base} did not answer within {timeout + HTTP_MARGIN:g} s"
        ) from None
    except aiohttp.ClientError as error:
        raise CpmsError(f"the request to {base} failed: {error}") from None
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        raise CpmsError(f"{url} answered {status} without JSON: {text[:200]!r}") from None
    return _command_outcome(a, status, answer)


def _command_outcome(a: argparse.Namespace, status: int, answer: Any) -> Any:
    """Return a station's answer, or raise the refusal the API answered instead."""
    if status == 200:
        for problem in answer.get("problems", []):
            print(f"cpms: warning: the answer breaks the OCPP schema: {problem}", file=sys.stderr)
        return answer if a.json else answer["response"]
    if status == 502:
        error = answer["error"]
        details = f" {json.dumps(error['details'])}" if error.get("details") else ""
        if a.json:
            print(json.dumps(answer, ensure_ascii=False))
        raise CpmsError(
            f"station {a.station_id} answered {a.name} with {error['code']}: "
            f"{error['description'] or '(no description)'}{details}"
        )
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        raise CpmsError(f"the server answered {status}: {answer}")
    message = str(error.get("message"))
    if error.get("problems"):
        message += ": " + "; ".join(error["problems"])
    if status == 401:
        raise UsageError(f"{message} (pass --token TOKEN or set CPMS_ADMIN_TOKEN)")
    raise CpmsError(message)


async def _tariffs_import(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    result = await tariffs.import_tariffs(uow(), load_documents(_read(a.file)))
    return {"created": result.created, "updated": result.updated}


async def _tariffs_list(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    page = await tariffs.list_tariffs(uow(), offset=a.offset, limit=a.limit, include_retired=a.all)
    return page_view(page, [tariff_view(x) for x in page.items])


async def _tariffs_show(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return tariff_view(await tariffs.get_tariff(uow(), a.tariff_id))


async def _tariffs_replace(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return tariff_view(await tariffs.replace_tariff(uow(), a.tariff_id, _document(a.file)))


async def _tariffs_retire(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return tariff_view(await tariffs.retire_tariff(uow(), a.tariff_id))


_TOKEN_FLAGS = ("contract_id", "issuer", "whitelist", "group_id", "visual_number", "language")


async def _tokens_create(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    fields: dict[str, Any] = {"uid": a.uid, "type": a.type}
    fields |= {name: getattr(a, name) for name in _TOKEN_FLAGS if getattr(a, name) is not None}
    return token_view(await tokens.create_token(uow(), fields, **_our_party(s)))


async def _tokens_list(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    page = await tokens.list_tokens(uow(), offset=a.offset, limit=a.limit)
    return page_view(page, [token_view(x) for x in page.items])


async def _tokens_show(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return token_view(await tokens.get_token(uow(), a.uid, type_=a.type, **_our_party(s)))


async def _tokens_update(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    fields = _assignments(a.set)
    fields |= {name: getattr(a, name) for name in _TOKEN_FLAGS if getattr(a, name) is not None}
    token = await tokens.update_token(uow(), a.uid, fields, type_=a.type, **_our_party(s))
    return token_view(token)


async def _tokens_retire(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return token_view(await tokens.retire_token(uow(), a.uid, type_=a.type, **_our_party(s)))


async def _sessions_list(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    where = SessionFilter(
        status=a.status, station_id=a.station, location_id=a.location, flag=a.flag
    )
    async with uow() as unit:
        page = await list_sessions(unit, where, offset=a.offset, limit=a.limit)
        return page_view(page, [session_view(x, x.charging_periods) for x in page.items])


async def _sessions_show(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    async with uow() as unit:
        session = await get_session(unit, a.session_id)
        return session_view(session, session.charging_periods)


async def _sessions_close(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    async with (
        uow() as unit,
        lost_race_is_conflict(f"session {a.session_id} was closed meanwhile"),
    ):
        session = await close_by_operator(unit, a.session_id, now=utcnow(), note=a.note)
        view = session_view(session, session.charging_periods)
        await unit.commit()
    return view


async def _reservations_list(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    now = utcnow()
    async with uow() as unit:
        page = await list_reservations(
            unit, station_id=a.station, active=a.active, now=now, offset=a.offset, limit=a.limit
        )
    return page_view(page, [reservation_view(x, now) for x in page.items])


async def _cdrs_list(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    async with uow() as unit:
        page = await list_cdrs(
            unit, CdrFilter(session_id=a.session), offset=a.offset, limit=a.limit
        )
    return page_view(page, [cdr_view(x, explain=False) for x in page.items])


async def _cdrs_show(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    async with uow() as unit:
        cdr = await get_cdr(unit, a.cdr_id)
    return cdr_view(cdr, explain=True) if a.json else _cdr_report(cdr)


async def _cdrs_credit(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    async with uow() as unit, lost_race_is_conflict(f"CDR {a.cdr_id} was credited meanwhile"):
        credit, replacement = await credit_cdr(
            unit, a.cdr_id, reason=a.reason, now=utcnow(), reissue=a.reissue
        )
        await unit.commit()
    return {
        "credit": cdr_view(credit, explain=True),
        "replacement": cdr_view(replacement, explain=True) if replacement is not None else None,
    }


_COST_LINES = (
    ("fixed", "total_fixed_cost"),
    ("energy", "total_energy_cost"),
    ("time", "total_time_cost"),
    ("parking", "total_parking_cost"),
    ("reservation", "total_reservation_cost"),
)


def _money(price: dict[str, Any], currency: str) -> str:
    places = minor_unit(currency)
    excl, incl = price.get("excl_vat"), price.get("incl_vat")
    shown = f"{excl:.{places}f} excl. VAT"
    if incl is not None:
        shown += f", {incl:.{places}f} incl. VAT"
    return f"{shown} {currency}"


def _cdr_report(cdr: Cdr) -> Report:
    """The CDR's header, then its explanation line by line."""
    doc = cdr.document
    currency = doc["currency"]
    token = doc["cdr_token"]
    place = doc["cdr_location"]
    title = f"CDR {doc['id']}"
    if doc.get("credit"):
        title += f" (credit of CDR {doc.get('credit_reference_id')})"
    lines = [
        title,
        f"  session   {doc.get('session_id', '-')}",
        f"  period    {doc['start_date_time']} to {doc['end_date_time']}",
        f"  token     {token['uid']} ({token['type']}, contract {token['contract_id']})",
        f"  location  {place['id']} {place.get('name') or ''}".rstrip()
        + f", EVSE {place['evse_uid']} ({place['evse_id']}) connector {place['connector_id']}",
        f"  energy    {doc['total_energy']:g} kWh in {doc['total_time']:g} h"
        + (f" ({doc['total_parking_time']:g} h parking)" if "total_parking_time" in doc else ""),
        f"  total     {_money(doc['total_cost'], currency)}",
    ]
    lines += [
        f"    {label:<11} {_money(doc[field], currency)}"
        for label, field in _COST_LINES
        if field in doc
    ]
    if doc.get("remark"):
        lines.append(f"  remark    {doc['remark']}")
    lines.append("explanation:")
    lines += [f"  {line}" for line in cdr.explanation or ()] or ["  (none)"]
    return Report("\n".join(lines))


async def _db_status(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return {"revision": await current_revision(uow.engine), "head": head_revision()}


async def _db_upgrade(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return await _db_status(a, uow, s)


# OCPI partners -------------------------------------------------------------------------------


def _vault(s: Settings) -> TokenVault:
    path = Path(s.secret_key_file)
    created = not path.exists()
    vault = TokenVault.from_file(path)
    if created:
        print(
            f"cpms: warning: created the key file {path}; `cpms serve` must use the same file "
            "(CPMS_SECRET_KEY_FILE) to call the partner",
            file=sys.stderr,
        )
    return vault


async def _partner_shown(uow: UnitOfWorkFactory, partner_id: int) -> dict[str, Any]:
    async with uow() as unit:
        return partner_summary(await unit.get(OcpiPartner, partner_id, kind="partner"))


async def _ocpi_invite(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    partner_id, token = await invite_partner(uow(), a.name or "")
    from cpms.runtime import our_versions_url  # like `serve`: loaded only when needed

    url = our_versions_url(s)
    if a.json:
        return {"versions_url": url, "token": token}
    return Report(
        f"Invited partner {partner_id}. Give the partner both, over a secure channel:\n"
        f"  versions URL  {url}\n"
        f"  token A       {token}\n"
        "Token A is shown only now and registers once: the partner POSTs its credentials\n"
        "with it to our credentials endpoint while `cpms serve` runs."
    )


def _token_a(a: argparse.Namespace) -> str:
    token = sys.stdin.readline().strip() if a.token == "-" else a.token
    if not token:
        raise UsageError("--token: the partner's token A is empty")
    return str(token)


async def _ocpi_register(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    from cpms.runtime import register_partner

    token_a = _token_a(a)
    partner_id = await register_partner(
        s, uow, _vault(s), name=a.name or "", versions_url=a.versions_url, token_a=token_a
    )
    return await _partner_shown(uow, partner_id)


async def _ocpi_update(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    from cpms.runtime import update_partner

    await update_partner(s, uow, _vault(s), a.partner_id)
    return await _partner_shown(uow, a.partner_id)


async def _ocpi_unregister(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    from cpms.runtime import unregister_partner

    problem = await unregister_partner(s, uow, _vault(s), a.partner_id)
    if problem:
        print(
            f"cpms: warning: partner {a.partner_id} did not confirm ({problem}); "
            "it is unregistered here all the same: its token no longer works",
            file=sys.stderr,
        )
    return await _partner_shown(uow, a.partner_id)


async def _ocpi_partners(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    shown = [partner_summary(partner) for partner in await list_partners(uow())]
    if a.json:
        return shown
    lines = [
        "\t".join(
            (
                str(item["id"]),
                item["name"] or "-",
                item["state"],
                item["version"] or "-",
                ",".join(f"{r['role']} {r['country_code']}*{r['party_id']}" for r in item["roles"])
                or "-",
                ",".join(item["modules"]) or "-",
            )
        )
        for item in shown
    ]
    return Report("\n".join(lines) if lines else "(no partners: `cpms ocpi invite` makes one)")


def _since(text: str) -> datetime:
    """An OCPI DateTime of the command line (UTC, e.g. 2024-01-01T00:00:00Z)."""
    try:
        return parse_datetime(text, "--since")
    except DocumentError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _pull_progress(what: str) -> Callable[[Any, Any, Any], None]:
    """Print a line per page pulled, and one per object rejected with its reason (stderr)."""

    def shown(page: Any, report: Any, rejected: Any) -> None:
        total = f" of {report.total}" if report.total is not None else ""
        print(
            f"page {page.number}: {len(page.items)} {what}; so far {report.received}{total} "
            f"received, {report.stored} stored, {report.skipped} skipped, "
            f"{report.rejected} rejected",
            file=sys.stderr,
            flush=True,
        )
        for rejection in rejected:
            print(
                f"  rejected {rejection.key} (page {rejection.page}, item {rejection.index}): "
                f"{rejection.reason}",
                file=sys.stderr,
                flush=True,
            )

    return shown


async def _ocpi_pull(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings, what: str) -> Any:
    from cpms.runtime import pull_partner_list

    report = await pull_partner_list(
        s, uow, _vault(s), a.partner_id, what=what, since=a.since, on_page=_pull_progress(what)
    )
    if a.json:
        return report.view()
    return Report(f"Pulled the {what} of partner {a.partner_id}: {report.summary()}")


async def _ocpi_pull_tokens(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return await _ocpi_pull(a, uow, s, "tokens")


async def _ocpi_pull_clients(a: argparse.Namespace, uow: UnitOfWorkFactory, s: Settings) -> Any:
    return await _ocpi_pull(a, uow, s, "clients")


# The parser ----------------------------------------------------------------------------------


def _add_settings_flags(parser: argparse.ArgumentParser, names: Sequence[str] | None) -> None:
    groups: dict[str, Any] = {}
    for option in OPTIONS:
        if names is not None and option.name not in names:
            continue
        group = groups.get(option.group)
        if group is None:
            group = groups[option.group] = parser.add_argument_group(f"{option.group} settings")
        default = option.default.value if hasattr(option.default, "value") else option.default
        group.add_argument(
            option.flag,
            dest=option.name,
            metavar=option.name.split("_")[-1].upper(),
            help=f"{option.help} [{option.env}; default: {default}]",
        )


def _sub(
    parent: Any, name: str, action: Action, help_text: str, *, settings: bool = True
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(action=action)
    if settings:
        _add_settings_flags(parser, ("config", "database_url", "country_code", "party_id"))
        parser.add_argument("--json", action="store_true", help="print JSON only")
    return parser


def _paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offset", type=int, default=0, help="skip this many (default 0)")
    parser.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")


def _editing(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--file", help=f"OCPI {what} document (JSON file, - for stdin)")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="change one field (JSON value)"
    )
    parser.add_argument(
        "--replace", action="store_true", help="--file is the whole new document (PUT)"
    )


def _timeout_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= MAX_COMMAND_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds above 0 and at most {MAX_COMMAND_TIMEOUT:g}"
        )
    return seconds


_COMMAND_HELP = """\
Send an OCPP command to a connected station and print its answer as JSON.

A station's connection lives in the running server (`cpms serve`), so this verb
asks the server over its operator API (POST /api/stations/ID/commands/NAME)
with the operator token. Command names and arguments are OCPP's own, for the
station's version (1.6: Reset, RemoteStartTransaction, ChangeConfiguration,
TriggerMessage, ...); the server checks the arguments against the OCPP schema
before sending, and writes every command and its outcome to the station's log
(`cpms stations events ID`).
"""

_COMMAND_EPILOG = """\
examples:
  cpms stations command CP1 Reset '{"type": "Soft"}'
  cpms stations command CP1 GetConfiguration --timeout 60
  echo '{"connectorId": 1, "idTag": "ABC123"}' \\
    | cpms stations command CP1 RemoteStartTransaction -

exit codes:
  0  the station answered (its CALLRESULT payload is printed)
  1  refused: unknown station or command, arguments that do not fit the schema,
     station offline or not booted, an OCPP error answer (CALLERROR), no answer
     in time, server not reachable
  2  usage: no operator token or a wrong one, arguments that are not a JSON object
"""


def _command_parser(parent: Any) -> None:
    p: argparse.ArgumentParser = parent.add_parser(
        "command",
        help="send an OCPP command to a connected station, through the running server",
        description=_COMMAND_HELP,
        epilog=_COMMAND_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Not a database action: ``main`` runs ``remote`` without opening the database.
    p.set_defaults(action=None, remote=_stations_command)
    p.add_argument("station_id", help="the station's id, as in /ocpp/{id}")
    p.add_argument("name", help="the OCPP action, e.g. Reset")
    p.add_argument(
        "arguments",
        nargs="?",
        metavar="JSON",
        help='the OCPP payload as a JSON object, e.g. \'{"type": "Soft"}\' '
        "(default {}; - reads it from stdin)",
    )
    p.add_argument(
        "--timeout",
        type=_timeout_seconds,
        metavar="S",
        help="seconds the station has to answer, at most 300 [CPMS_COMMAND_TIMEOUT; default: 30.0]",
    )
    p.add_argument(
        "--url",
        help="the server's HTTP base URL [default: from CPMS_PUBLIC_URL, or CPMS_HTTP_HOST and "
        "CPMS_HTTP_PORT: http://127.0.0.1:8080]",
    )
    p.add_argument(
        "--token",
        help="the operator API token [CPMS_ADMIN_TOKEN; the server prints one on first start]",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the server's whole answer (command, status, response, problems) on one line",
    )
    _add_settings_flags(p, ("config",))


_OCPI_HELP = """\
OCPI 2.2.1 partners (eMSPs, hubs): registration in both directions.

A partner registers with us: `cpms ocpi invite` prints our versions URL and a
token A; the partner, given both over a secure channel, POSTs its credentials
to the running server (`cpms serve`) and receives the token it calls us with.

We register with a partner: `cpms ocpi register` with the versions URL and the
token A the partner gave us. The partner reads our versions URL during that
handshake, so `cpms serve` must be running and reachable at CPMS_PUBLIC_URL.

Tokens are never printed after the fact: ours are stored hashed, the partner's
encrypted with the key in CPMS_SECRET_KEY_FILE (the same file `cpms serve` uses).

A registered partner's lists can be pulled page by page: `cpms ocpi pull-tokens ID`
(an eMSP's tokens, stored as if pushed) and `cpms ocpi pull-clients ID` (a hub's
ClientInfo list); --since pulls only what changed since a time.
"""

_OCPI_SETTINGS = ("http_host", "http_port", "public_url", "secret_key_file")
"""Settings the OCPI verbs need beyond the database: our public URL, the token key file."""


def _ocpi_parser(commands: Any) -> None:
    ocpi = commands.add_parser(
        "ocpi",
        help="OCPI partners: invite, register, update, unregister, list, pull their lists",
        description=_OCPI_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).add_subparsers(dest="verb", metavar="VERB", required=True)
    p = _sub(
        ocpi,
        "invite",
        _ocpi_invite,
        "invite a partner: print our versions URL and a single-use token A to give it; "
        "--json prints {versions_url, token}",
    )
    p.add_argument("--name", help="the partner's name (default: its business name, once known)")
    _add_settings_flags(p, _OCPI_SETTINGS)
    p = _sub(
        ocpi,
        "register",
        _ocpi_register,
        "register with a partner that gave us its versions URL and a token A (we POST our "
        "credentials; `cpms serve` must run: the partner reads our versions meanwhile)",
    )
    p.add_argument("--versions-url", required=True, help="the partner's OCPI versions URL")
    p.add_argument(
        "--token", required=True, help="the token A the partner gave us (- reads it from stdin)"
    )
    p.add_argument("--name", help="the partner's name (default: its business name)")
    _add_settings_flags(p, _OCPI_SETTINGS)
    p = _sub(
        ocpi,
        "update",
        _ocpi_update,
        "update our registration with a partner (PUT): read its versions again and rotate "
        "the tokens of both sides",
    )
    p.add_argument("partner_id", type=int)
    _add_settings_flags(p, _OCPI_SETTINGS)
    p = _sub(
        ocpi,
        "unregister",
        _ocpi_unregister,
        "unregister a partner (DELETE at the partner, if registered): its token stops "
        "working here at once; an invitation is withdrawn",
    )
    p.add_argument("partner_id", type=int)
    _add_settings_flags(p, _OCPI_SETTINGS)
    _sub(
        ocpi,
        "partners",
        _ocpi_partners,
        "list partners: id, name, state, version, roles, modules (never a token)",
    )
    pulls = (
        (
            "pull-tokens",
            _ocpi_pull_tokens,
            "pull an eMSP's token list (GET its tokens SENDER endpoint, every page) and store "
            "each token as a pushed one; tokens of parties not the partner's are skipped",
        ),
        (
            "pull-clients",
            _ocpi_pull_clients,
            "pull a hub's ClientInfo list (GET its hubclientinfo SENDER endpoint, every page) "
            "and store each, as the hub's PUT would",
        ),
    )
    for name, action, help_text in pulls:
        p = _sub(ocpi, name, action, help_text + "; progress per page on stderr")
        p.add_argument("partner_id", type=int)
        p.add_argument(
            "--since",
            type=_since,
            metavar="DATETIME",
            help="only what changed since then (date_from, e.g. 2024-01-01T00:00:00Z); "
            "default: the whole list",
        )
        _add_settings_flags(p, _OCPI_SETTINGS)


def _spoken(ocpp: str) -> str:
    """The OCPP version choice in words: ``mix`` is both versions."""
    return "OCPP 1.6 and 2.0.1" if ocpp == "mix" else f"OCPP {ocpp}"


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return count


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return seconds


def _seconds_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        pair = (_seconds(low), _seconds(high or low))
    except argparse.ArgumentTypeError:
        pair = (0.0, 0.0)
    if not 0 < pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"{text!r} is not SECONDS or MIN-MAX with MIN <= MAX")
    return pair


_DEMO_HELP = """\
Run `cpms serve` with a fleet of simulated stations charging at a demo site, and print
where to look. Before the stations connect, the demo site is prepared if it is missing
(kept as it is otherwise, so a second start on the same database adds nothing twice):
tariffs DEMO-AC and DEMO-DC, the published location DEMO, stations DEMO-00001... with
their EVSEs and connectors, and the RFID cards DEMO0001..DEMO0005 the drivers present.
An eMSP is invited (a new single-use token A at every start). Drivers arrive within
seconds; a progress line follows every 30 s. Ctrl+C: the stations end their
transactions (so their CDRs are issued), then the server stops; Ctrl+C twice: at once.

Demo defaults (your flags, variables and config file win): station_admission open,
accept_unknown_tokens true, so `cpms simulate` stations may join in.
"""


def _demo_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the server with simulated stations charging at a demo site",
        description=_DEMO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(action=None)
    fleet = demo.add_argument_group("demo fleet")
    fleet.add_argument(
        "--stations",
        type=_count,
        default=6,
        metavar="N",
        help="number of simulated stations (default: 6)",
    )
    fleet.add_argument(
        "--ocpp",
        choices=("1.6", "2.0.1", "mix"),
        default="mix",
        help="their OCPP version; mix: every other one (default: mix)",
    )
    fleet.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="K",
        help="seed of every random choice: the same seed, the same drivers (default: 1)",
    )
    fleet.add_argument(
        "--arrival-gap",
        type=_seconds,
        default=45.0,
        metavar="S",
        help="mean seconds between drivers at an EVSE (default: 45)",
    )
    fleet.add_argument(
        "--charge-time",
        type=_seconds_range,
        default=(60.0, 180.0),
        metavar="MIN-MAX",
        help="seconds a driver charges (default: 60-180)",
    )
    fleet.add_argument(
        "--meter-interval",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="seconds between meter values of a charging station (default: 10)",
    )
    fleet.add_argument(
        "--progress-every",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="seconds between progress lines (default: 30)",
    )
    _add_settings_flags(demo, None)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``cpms`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="cpms",
        description="Charge point management system: OCPP 1.6J/2.0.1 stations in, "
        "OCPI 2.2.1 out. Run `cpms serve` to start; `cpms COMMAND --help` for details.",
        epilog="Settings (flags of `cpms serve`, or environment variables, or keys of a TOML "
        "file named by --config / CPMS_CONFIG): "
        + ", ".join(option.env for option in OPTIONS)
        + ". Exit codes: 0 done, 1 refused (not found, conflict, invalid), 2 usage/config.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('cpms')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the OCPP and HTTP servers",
        description="Run the OCPP websocket server and the HTTP server (OCPI and operator API) "
        "in one process. Each setting can be given as a flag, a CPMS_* environment variable or "
        "a key in the --config TOML file (flags win, then variables, then the file).",
    )
    serve.set_defaults(action=None)
    _add_settings_flags(serve, None)
    _demo_parser(commands)
    # Only listed here: main() hands `cpms simulate ...` to the simulator before parsing, so
    # `cpms simulate --help` is the simulator's own.
    simulate = commands.add_parser(
        "simulate",
        help="run a fleet of simulated OCPP stations against a CSMS (cpms simulate --help)",
        add_help=False,
    )
    simulate.add_argument("arguments", nargs=argparse.REMAINDER)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    _sub(db, "status", _db_status, "show the schema revision and the one the code needs")
    _sub(db, "upgrade", _db_upgrade, "create or upgrade the schema, then show its revision")

    locs = commands.add_parser("locations", help="locations (OCPI documents)").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    p = _sub(locs, "import", _locations_import, "create or replace locations from OCPI JSON")
    p.add_argument("file", help="JSON file with one Location or a list (- for stdin)")
    _paging(_sub(locs, "list", _locations_list, "list locations"))
    _sub(locs, "show", _locations_show, "show one location").add_argument("location_id")
    p = _sub(locs, "update", _locations_update, "change fields of a location, or replace it")
    p.add_argument("location_id")
    _editing(p, "Location")
    p = _sub(locs, "retire", _locations_retire, "retire a location (its EVSEs become REMOVED)")
    p.add_argument("location_id")

    evses = commands.add_parser("evses", help="EVSEs of a location").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    for verb, action, text in (
        ("add", _evses_add, "add an EVSE (OCPI EVSE document) to a location"),
        ("show", _evses_show, "show one EVSE"),
        ("update", _evses_update, "change fields of an EVSE, or wire it to a station"),
        ("retire", _evses_retire, "remove an EVSE (status REMOVED; its uid is never reused)"),
    ):
        p = _sub(evses, verb, action, text)
        p.add_argument("location_id")
        if verb == "add":
            p.add_argument("file", help="JSON file with one EVSE (- for stdin)")
        else:
            p.add_argument("evse_uid")
        if verb in ("add", "update"):
            p.add_argument("--station", help="id of the station that serves this EVSE")
            p.add_argument(
                "--ocpp-evse-id", type=int, help="its number on the station (1.6 connectorId)"
            )
        if verb == "update":
            _editing(p, "EVSE")

    conns = commands.add_parser("connectors", help="connectors of an EVSE").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    for verb, action, text in (
        ("add", _connectors_add, "add a connector (OCPI Connector document) to an EVSE"),
        ("show", _connectors_show, "show one connector"),
        ("update", _connectors_update, "change fields of a connector, or replace it"),
        ("remove", _connectors_remove, "remove a connector (an EVSE keeps at least one)"),
        ("tariffs", _connectors_tariffs, "set the tariffs of a connector (none: clear)"),
    ):
        p = _sub(conns, verb, action, text)
        p.add_argument("location_id")
        p.add_argument("evse_uid")
        if verb == "add":
            p.add_argument("file", help="JSON file with one Connector (- for stdin)")
            continue
        p.add_argument("connector_id")
        if verb == "update":
            _editing(p, "Connector")
        if verb == "tariffs":
            p.add_argument("tariff_ids", nargs="*", metavar="TARIFF_ID")

    sts = commands.add_parser("stations", help="charging stations").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    p = _sub(sts, "create", _stations_create, "create a station (its OCPP identity)")
    p.add_argument("station_id")
    p.add_argument("--location", required=True, help="id of its location")
    p.add_argument("--password", help="Security Profile 1 password (stored hashed)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--lenient", action="store_true", help="tolerate schema violations")
    p = _sub(sts, "list", _stations_list, "list stations")
    p.add_argument("--location", help="only stations of this location")
    _paging(p)
    _sub(sts, "show", _stations_show, "show one station").add_argument("station_id")
    p = _sub(sts, "update", _stations_update, "change a station's location, password or leniency")
    p.add_argument("station_id")
    p.add_argument("--location", help="move it to this location")
    p.add_argument("--password", help="set a new password")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--no-password", action="store_true", help="remove its password")
    p.add_argument("--lenient", action=argparse.BooleanOptionalAction, default=None)
    p = _sub(sts, "retire", _stations_retire, "retire a station (it may no longer connect)")
    p.add_argument("station_id")
    p = _sub(
        sts,
        "approve",
        _stations_approve,
        "approve a station waiting in Pending (admission policy pending): its next boot is "
        "Accepted",
    )
    p.add_argument("station_id")
    p = _sub(
        sts,
        "events",
        _stations_events,
        "show a station's log, newest first: what it reported that is worth keeping, and "
        "every command sent to it with its outcome",
    )
    p.add_argument("station_id")
    p.add_argument("--kind", help="only entries of this kind (command, offline, security, ...)")
    _paging(p)
    p = _sub(
        sts,
        "device-model",
        _stations_device_model,
        "show an OCPP 2.0.1 station's device model as it last reported it (NotifyReport): "
        "one line per reported attribute",
    )
    p.add_argument("station_id")
    p.add_argument("--component", help="only this component (any case, every instance)")
    p.add_argument("--variable", help="only this variable (any case, every instance)")
    _paging(p)
    _command_parser(sts)

    tars = commands.add_parser("tariffs", help="tariffs (OCPI documents)").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    p = _sub(tars, "import", _tariffs_import, "create or replace tariffs from OCPI JSON")
    p.add_argument("file", help="JSON file with one Tariff or a list (- for stdin)")
    p = _sub(tars, "list", _tariffs_list, "list tariffs")
    p.add_argument("--all", action="store_true", help="include retired tariffs")
    _paging(p)
    _sub(tars, "show", _tariffs_show, "show one tariff").add_argument("tariff_id")
    p = _sub(tars, "replace", _tariffs_replace, "replace a tariff with a full document")
    p.add_argument("tariff_id")
    p.add_argument("file", help="JSON file with the Tariff (- for stdin)")
    p = _sub(tars, "retire", _tariffs_retire, "retire a tariff (taken off all connectors)")
    p.add_argument("tariff_id")

    toks = commands.add_parser("tokens", help="local tokens (RFID cards, ...)").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    for verb, action, text in (
        ("create", _tokens_create, "create a local token"),
        ("show", _tokens_show, "show one token"),
        ("update", _tokens_update, "change fields of a token"),
        ("retire", _tokens_retire, "invalidate a token (tokens are never deleted)"),
    ):
        p = _sub(toks, verb, action, text)
        p.add_argument("uid", help="the id the reader sees (OCPP idTag)")
        p.add_argument("--type", default="RFID", help="AD_HOC_USER, APP_USER, OTHER, RFID")
        if verb in ("create", "update"):
            for name in _TOKEN_FLAGS:
                p.add_argument("--" + name.replace("_", "-"), dest=name)
        if verb == "update":
            p.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a field")
    _paging(_sub(toks, "list", _tokens_list, "list tokens"))

    sess = commands.add_parser("sessions", help="charging sessions").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    p = _sub(
        sess,
        "list",
        _sessions_list,
        "list sessions, oldest start first: id, status, station, start, kWh",
    )
    p.add_argument("--status", choices=SESSION_STATUSES, help="only sessions in this status")
    p.add_argument("--station", help="only sessions on this station")
    p.add_argument("--location", help="only sessions at this location")
    p.add_argument("--flag", help="only sessions with this flag (closed_by_rule, meter_jump, ...)")
    _paging(p)
    p = _sub(sess, "show", _sessions_show, "show one session with its charging periods")
    p.add_argument("session_id")
    p = _sub(
        sess,
        "close",
        _sessions_close,
        "close a session no station will stop (replaced, reset, wiped): it ends at its last "
        "trusted reading, flagged closed_by_operator, and its CDR is issued",
    )
    p.add_argument("session_id")
    p.add_argument("--note", help="why it is closed (kept in the station's log)")

    resv = commands.add_parser("reservations", help="reservations of EVSEs").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    p = _sub(
        resv,
        "list",
        _reservations_list,
        "list reservations, oldest first: id (the CancelReservation reservationId), status, "
        "station, EVSE, token uid, expiry, who made it",
    )
    p.add_argument("--station", help="only reservations at this station")
    p.add_argument(
        "--active",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only those still holding their EVSE (--no-active: only the others)",
    )
    _paging(p)

    cdrs = commands.add_parser("cdrs", help="charge detail records (OCPI CDRs)").add_subparsers(
        dest="verb", metavar="VERB", required=True
    )
    p = _sub(cdrs, "list", _cdrs_list, "list CDRs and credit CDRs, oldest first")
    p.add_argument("--session", help="only the CDRs of this session")
    _paging(p)
    p = _sub(
        cdrs,
        "show",
        _cdrs_show,
        "show a CDR: its header (session, period, token, location, totals), then the "
        "explanation of every amount, line by line (which period and price component, which "
        "tariff element and restriction, step_size and min/max price, the one rounding); "
        "--json prints the OCPI CDR with its explanation",
    )
    p.add_argument("cdr_id")
    p = _sub(
        cdrs,
        "credit",
        _cdrs_credit,
        "credit a CDR: issue its credit CDR (id ID-C, every amount negated, the reason as "
        "remark); --reissue also prices its session again and issues a new CDR",
    )
    p.add_argument("cdr_id")
    p.add_argument("--reason", required=True, help="why (becomes the credit CDR's remark)")
    p.add_argument(
        "--reissue", action="store_true", help="issue a new CDR for the session after the credit"
    )
    _ocpi_parser(commands)
    return parser


# Running -------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    names = {option.name for option in OPTIONS}
    flags = {k: v for k, v in vars(args).items() if k in names}
    overrides = DEMO_SETTINGS if args.command == "demo" else None
    return load_settings(flags, os.environ, overrides=overrides)


async def _run_action(args: argparse.Namespace, settings: Settings) -> Any:
    engine = create_engine(settings.database_url)
    try:
        if args.action is _db_upgrade:
            await prepare_schema(engine, allow_migrate=True)
        elif args.action is not _db_status:  # a status report must not change what it reports
            await prepare_schema(engine, allow_migrate=settings.auto_migrate)
        return await args.action(args, UnitOfWorkFactory(engine), settings)
    finally:
        await engine.dispose()


def _print(result: Any, as_json: bool) -> None:
    if isinstance(result, Report):
        print(result)
        return
    if not as_json and isinstance(result, dict) and "items" in result and "total" in result:
        for item in result["items"]:
            if "summary" in item and "received_at" in item:  # a station's log
                print(f"{item['received_at']}\t{item['kind']}\t{item['summary']}")
                continue
            if "transaction_id" in item and "kwh" in item:  # a session
                print(
                    f"{item['id']}\t{item['status']}\t{item['station_id']}\t"
                    f"{item['start_date_time']}\t{item['kwh']:g} kWh"
                )
                continue
            if "from_emsp" in item:  # a reservation
                made_by = f"eMSP {item['partner_id']}" if item["from_emsp"] else "operator"
                print(
                    f"{item['id']}\t{item['status']}\t{item['station_id']}\t"
                    f"{item['evse_uid'] or '-'}\t{item['token'].get('uid', '-')}\t"
                    f"{item['expiry_date']}\t{made_by}"
                )
                continue
            if "cdr_location" in item:  # a CDR
                total = _money(item["total_cost"], item["currency"])
                credit = (
                    f"\tcredit of {item.get('credit_reference_id')}" if item.get("credit") else ""
                )
                print(f"{item['id']}\t{item.get('session_id', '-')}\t{total}{credit}")
                continue
            key = item.get("id") or item.get("uid")
            label = item.get("name") or item.get("location_id") or item.get("type") or ""
            print(f"{key}\t{label}")
        shown = len(result["items"])
        print(f"({shown} of {result['total']}, from offset {result['offset']})", file=sys.stderr)
        return
    print(json.dumps(result, indent=None if as_json else 2, ensure_ascii=False))


def _announce(runtime: Any) -> None:
    s = runtime.settings
    base = runtime.base_url()
    lines = [
        f"cpms {version('cpms')} is running (Ctrl+C stops it)",
        f"  OCPP      ws://{s.ocpp_host}:{runtime.ocpp_port}/ocpp/{{station_id}}"
        f"  (admission: {s.station_admission.value})",
        f"  OCPI      {base}/ocpi/versions",
        f"  operator  {base}/api  (description: {base}/api/openapi.json)",
        f"  health    {base}/api/health",
        f"  database  {s.database_url}",
    ]
    if runtime.generated_admin_token:
        lines += [
            "",
            "  Operator API token (shown only this once, store it now):",
            f"    {runtime.generated_admin_token}",
            "  Use it as: Authorization: Bearer <token>. Set CPMS_ADMIN_TOKEN to choose your own.",
        ]
    print("\n".join(lines), flush=True)


def _announce_demo(runtime: Any, demo: Any) -> None:
    _announce(runtime)
    s, base, setup = runtime.settings, runtime.base_url(), demo.setup
    default_database = next(o.default for o in OPTIONS if o.name == "database_url")
    database = "" if s.database_url == default_database else f" --database-url '{s.database_url}'"
    first, last = setup.station_ids[0], setup.station_ids[-1]
    created = f"added {len(setup.created)} objects" if setup.created else "all there already"
    lines = [
        "",
        f"Demo: {demo.stations} simulated {_spoken(demo.ocpp)} stations ({first}..{last}) at "
        f"location {setup.location_id},",
        f"  tariffs {' and '.join(setup.tariff_ids)}, drivers with RFID cards "
        f"{demo.tokens[0]}..{demo.tokens[-1]} ({created})",
        *(f"  note: {note}" for note in setup.notes),
        "",
        "  An eMSP registers with our OCPI versions URL and this token A (single use):",
        f"    {demo.versions_url}",
        f"    {demo.token_a}",
        "",
        "  Try, in another terminal:",
        f"    cpms sessions list{database}",
        f"    cpms cdrs list{database}",
        f"    cpms locations show {setup.location_id}{database}",
        f"    curl -H 'Authorization: Token {demo.token_a}' {demo.versions_url}",
        f"    curl -H 'Authorization: Bearer <operator token>' {base}/api/sessions",
        f"    cpms simulate --url {demo.station_url} --stations 2   (more stations join in)",
        "",
        "  There is no dashboard yet: watch the lines below, the CLI and the APIs.",
        f"  A progress line every {demo.progress_every:g} s; Ctrl+C stops (stations finish first).",
    ]
    print("\n".join(lines), flush=True)


def _progress(line: str) -> None:
    print(line, flush=True)


def _level(settings: Settings) -> int:
    return logging.getLevelNamesMapping()[settings.log_level]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cpms`` command; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        from cpms.runtime import simulate  # the simulator, with its own options and help

        return simulate(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as error:
        print(f"cpms: configuration error: {error}", file=sys.stderr)
        return 2
    remote: RemoteAction | None = getattr(args, "remote", None)
    serving = args.action is None and remote is None
    # A management verb prints its result; progress logs would only clutter stderr.
    level = settings.log_level if serving else max(logging.WARNING, _level(settings))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            from cpms.runtime import demo

            event_loop.run(
                demo(
                    settings, stations=args.stations, ocpp=args.ocpp, seed=args.seed,
                    arrival_gap=args.arrival_gap, charge_time=args.charge_time,
                    meter_interval=args.meter_interval, progress_every=args.progress_every,
                    announce=_announce_demo, on_progress=_progress,
                ),
                settings.event_loop,
            )  # fmt: skip
            return 0
        if serving:
            from cpms.runtime import serve

            event_loop.run(serve(settings, announce=_announce), settings.event_loop)
            return 0
        if remote is not None:
            result = event_loop.run(remote(args, settings), settings.event_loop)
        else:
            result = event_loop.run(_run_action(args, settings), settings.event_loop)
    except UsageError as error:
        print(f"cpms: {error}", file=sys.stderr)
        return 2
    except SchemaOutOfDate as error:
        print(f"cpms: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"cpms: cannot start: {error}", file=sys.stderr)
        return 1
    except CpmsError as error:
        print(f"cpms: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    _print(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
