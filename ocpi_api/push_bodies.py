"""What to send a partner for the pending pushes of one object: requests rendered from now.

The pusher gathers every pending push of one object (``cpms.push_queue.claim``); ``plan``
turns them into the few requests that bring the partner's copy up to date, rendered from
the database as it is *now* (never from the events' old values), following CHECKLIST 10:

- ``location:<id>``: a whole-location change (``LocationChanged`` without fields, or one
  naming ``evses`` or ``id``) is one ``PUT`` of the Location. Otherwise one request per
  changed object, in the order they first changed: location fields -> ``PATCH`` of the
  location; per EVSE, an EVSE added or replaced (or a connector removed) -> ``PUT`` of the
  EVSE, else its changed fields and status -> one ``PATCH`` of the EVSE; per connector,
  ``PUT`` or ``PATCH`` likewise. A PATCH cannot remove a field (CHECKLIST 1.5), so a field
  that is now absent makes it a PUT of that object. Every PATCH carries ``last_updated``.
- ``session:<id>``: the partner's charging periods are tracked as a count kept with the
  last SENT push (``response = {"periods": n}``). A session not delivered yet, or one the
  partner has no count of, is ``PUT``; while it runs only its closed periods (all but the
  still-growing last one) are sent, so later PATCHes can append the rest (OCPI: a PATCH
  *appends* periods). Progress is a ``PATCH`` of kwh, total cost, status, last_updated and
  the periods closed since; the ended session is ``PUT`` whole (its final periods replace
  the running ones).
- ``cdr:<id>``: ``POST`` of the CDR as issued; the ``Location`` header is kept.
- ``tariff:<id>``: the latest state wins: ``PUT`` of the tariff, or ``DELETE`` once retired.
- callbacks: the stored body to the stored URL with the stored method (``POST`` unless
  said), one per push, in order.

Each request names its recipient party (``Step.to_party``) where the object has one: a
session's and a CDR's is the party of its token (``cdr_token``), a command's result the
party of the command's token (or of the session it stopped). Locations and tariffs have
none: they are for everyone the partner serves (to a hub, a broadcast push). The pusher
addresses the request with it (``OCPI-to-*``) and, through a hub, holds it while the hub
reports that party not connected (``ocpi_api.push``).

A partial request (``Step.whole`` false) answered "unknown object" (HTTP 404, OCPI 2003 or
2004) is followed by a GET of the same URL and then ``whole``: the PUT of the whole object,
carrying every push gathered (CHECKLIST 1.5; ``ocpi_api.push`` decides). A full push of a
newly registered partner is "location" pushes without fields and "tariff" pushes: whole
PUTs. ``Undeliverable`` says the pushes cannot be delivered at all (object or endpoint
gone): they are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from cpms.documents import (
    connector_to_ocpi,
    evse_to_ocpi,
    location_to_ocpi,
    session_to_ocpi,
    tariff_to_ocpi,
)
from cpms.errors import NotFound
from cpms.model import (
    Cdr,
    Connector,
    Evse,
    Location,
    OcpiCommand,
    OcpiPush,
    Reservation,
    Session,
    Tariff,
)
from cpms.partners import PartnerLink
from cpms.push_queue import sent_response
from cpms.sessions import get_session
from cpms.unit_of_work import UnitOfWork
from ocpi_api.client import join_url

__all__ = ["Step", "Undeliverable", "plan", "whole"]

_FINAL_SESSION_STATES = ("COMPLETED", "INVALID")


class Undeliverable(Exception):
    """The pushes cannot be delivered: the object or the partner's endpoint is gone."""


@dataclass(frozen=True, slots=True)
class Step:
    """One request to the partner, and the pushes it settles."""

    method: str
    url: str
    body: Any
    covers: tuple[int, ...]
    """Ids of the pushes this request carries."""
    whole: bool = True
    """False for a PATCH or a sub-object PUT: "unknown" is answered by a GET, then ``whole``."""
    keep: dict[str, Any] | None = None
    """What to store as the SENT push's ``response`` when the partner accepts it."""
    keep_location_header: bool = False
    """Store the answer's ``Location`` header (CDRs, CHECKLIST 4.2)."""
    to_party: tuple[str, str] | None = None
    """The (country_code, party_id) the request is for, upper-cased; None: the partner
    itself (a broadcast, through a hub)."""


async def plan(uow: UnitOfWork, link: PartnerLink, pushes: Sequence[OcpiPush]) -> list[Step]:
    """The requests that deliver ``pushes`` (one object's, oldest first; ``uow`` entered)."""
    kind = pushes[0].object_key.partition(":")[0]
    if kind == "location":
        return await _location_steps(uow, link, pushes)
    if kind == "session":
        return [await _session_step(uow, link, pushes, partial_ok=True)]
    if kind == "cdr":
        return [await _cdr_step(uow, link, pushes)]
    if kind == "tariff":
        return [await _tariff_step(uow, link, pushes)]
    if all(push.kind == "callback" for push in pushes):
        to_party = await _callback_party(uow, pushes[0].object_key)
        return [_callback_step(push, to_party) for push in pushes]
    raise Undeliverable(f"no way to deliver {pushes[0].object_key!r} ({pushes[0].kind})")


async def whole(uow: UnitOfWork, link: PartnerLink, pushes: Sequence[OcpiPush]) -> Step:
    """The PUT of the whole object, carrying all of ``pushes`` (``uow`` entered)."""
    kind = pushes[0].object_key.partition(":")[0]
    if kind == "location":
        location = await _location(uow, pushes[0].object_key)
        return _put_location(link, location, pushes)
    if kind == "session":
        return await _session_step(uow, link, pushes, partial_ok=False)
    raise Undeliverable(f"{pushes[0].object_key!r} has no whole-object PUT")


# --------------------------------------------------------------------------- locations


def _endpoint(link: PartnerLink, module: str) -> str:
    url = link.endpoint(module, "RECEIVER")
    if not url:
        raise Undeliverable(f"partner {link.partner_id} has no {module} RECEIVER endpoint")
    return url


def _ids(pushes: Sequence[OcpiPush]) -> tuple[int, ...]:
    return tuple(push.id for push in pushes)


def _party_of(token: Any) -> tuple[str, str] | None:
    """The (country_code, party_id) of an OCPI Token or CdrToken document, upper-cased."""
    if not isinstance(token, dict):
        return None
    country_code, party_id = token.get("country_code"), token.get("party_id")
    if isinstance(country_code, str) and isinstance(party_id, str) and country_code and party_id:
        return country_code.upper(), party_id.upper()
    return None


async def _location(uow: UnitOfWork, object_key: str) -> Location:
    location_id = object_key.partition(":")[2]
    location = await uow.session.scalar(
        select(Location)
        .where(Location.id == location_id)
        .options(selectinload(Location.evses).selectinload(Evse.connectors))
        .execution_options(populate_existing=True)
    )
    if location is None:
        raise Undeliverable(f"location {location_id!r} does not exist")
    return location


def _location_url(link: PartnerLink, location: Location, *segments: str) -> str:
    base = _endpoint(link, "locations")
    return join_url(base, location.country_code, location.party_id, location.id, *segments)


def _put_location(link: PartnerLink, location: Location, pushes: Sequence[OcpiPush]) -> Step:
    return Step("PUT", _location_url(link, location), location_to_ocpi(location), _ids(pushes))


@dataclass
class _Change:
    """What changed on one object (location, EVSE or connector) among the gathered pushes."""

    first: int
    """Id of the first push about it: requests go out in the order objects first changed."""
    pushes: list[OcpiPush] = field(default_factory=list)
    replaced: bool = False
    fields: set[str] = field(default_factory=set)


def _patch_body(document: dict[str, Any], fields: set[str]) -> dict[str, Any] | None:
    """The PATCH body of ``fields`` of ``document``; ``None`` when one was removed."""
    if any(name not in document for name in fields):
        return None  # a PATCH cannot remove a field: PUT the object instead
    body = {name: document[name] for name in sorted(fields) if name != "last_updated"}
    body["last_updated"] = document["last_updated"]
    return body


def _find(items: Sequence[Any], attribute: str, wanted: str) -> Any:
    exact = [item for item in items if getattr(item, attribute) == wanted]
    if exact:
        return exact[0]
    # OCPI ids are case-insensitive (CHECKLIST 1.11).
    loose = [item for item in items if str(getattr(item, attribute)).lower() == wanted.lower()]
    return loose[0] if loose else None


async def _location_steps(
    uow: UnitOfWork, link: PartnerLink, pushes: Sequence[OcpiPush]
) -> list[Step]:
    location = await _location(uow, pushes[0].object_key)
    own: _Change | None = None
    evses: dict[str, _Change] = {}
    connectors: dict[str, dict[str, _Change]] = {}
    for push in pushes:
        payload = push.payload or {}
        fields = set(payload.get("fields") or ())
        if push.kind == "location":
            if not fields or fields & {"evses", "id"}:
                return [_put_location(link, location, pushes)]
            own = own or _Change(push.id)
            own.pushes.append(push)
            own.fields |= fields
            continue
        uid = str(payload.get("evse_uid"))
        evse_change = evses.setdefault(uid, _Change(push.id))
        if push.kind == "connector":
            evse_change.pushes.append(push)
            if payload.get("removed"):
                evse_change.replaced = True  # no connector DELETE in OCPI: PUT the EVSE
                continue
            change = connectors.setdefault(uid, {}).setdefault(
                str(payload.get("connector_id")), _Change(push.id)
            )
            change.pushes.append(push)
            if not fields or "id" in fields:
                change.replaced = True
            change.fields |= fields
        elif push.kind in ("evse", "evse_status"):
            evse_change.pushes.append(push)
            if push.kind == "evse_status":
                evse_change.fields.add("status")
            elif not fields or fields & {"uid", "connectors"}:
                evse_change.replaced = True
            else:
                evse_change.fields |= fields
        else:
            raise Undeliverable(f"unknown location push kind {push.kind!r}")

    ordered: list[tuple[int, list[Step]]] = []
    if own is not None:
        body = _patch_body(location_to_ocpi(location), own.fields)
        if body is None:
            return [_put_location(link, location, pushes)]
        step = Step("PATCH", _location_url(link, location), body, _ids(own.pushes), whole=False)
        ordered.append((own.first, [step]))
    for uid, evse_change in evses.items():
        evse = _find(location.evses, "uid", uid)
        if evse is None:  # EVSEs are never deleted; should it happen, resend everything
            return [_put_location(link, location, pushes)]
        ordered.append(
            (
                evse_change.first,
                _evse_steps(link, location, evse, evse_change, connectors.get(uid, {})),
            )
        )
    ordered.sort(key=lambda item: item[0])
    return [step for _, steps in ordered for step in steps]


def _evse_steps(
    link: PartnerLink,
    location: Location,
    evse: Evse,
    evse_change: _Change,
    connector_changes: dict[str, _Change],
) -> list[Step]:
    """The requests for one EVSE: its PUT, or its PATCH and its connectors' requests."""
    evse_url = _location_url(link, location, evse.uid)
    document = evse_to_ocpi(evse)
    put_evse = Step("PUT", evse_url, document, _ids(evse_change.pushes), whole=False)
    if evse_change.replaced:
        return [put_evse]
    ordered: list[tuple[int, Step]] = []
    connector_pushes = {p.id for c in connector_changes.values() for p in c.pushes}
    own_pushes = [p for p in evse_change.pushes if p.id not in connector_pushes]
    if own_pushes:
        body = _patch_body(document, evse_change.fields)
        if body is None:
            return [put_evse]
        ordered.append(
            (own_pushes[0].id, Step("PATCH", evse_url, body, _ids(own_pushes), whole=False))
        )
    for connector_id, change in connector_changes.items():
        connector: Connector | None = _find(evse.connectors, "id", connector_id)
        if connector is None:  # removed since: the EVSE's connector list says so
            return [put_evse]
        url = join_url(evse_url, connector.id)
        rendered = connector_to_ocpi(connector)
        body = None if change.replaced else _patch_body(rendered, change.fields)
        if body is None:
            step = Step("PUT", url, rendered, _ids(change.pushes), whole=False)
        else:
            step = Step("PATCH", url, body, _ids(change.pushes), whole=False)
        ordered.append((change.first, step))
    ordered.sort(key=lambda item: item[0])
    return [step for _, step in ordered]


# --------------------------------------------------------------------------- sessions


async def _session_step(
    uow: UnitOfWork, link: PartnerLink, pushes: Sequence[OcpiPush], *, partial_ok: bool
) -> Step:
    session_id = pushes[0].object_key.partition(":")[2]
    try:
        session = await get_session(uow, session_id)
    except NotFound:
        raise Undeliverable(f"session {session_id!r} does not exist") from None
    url = join_url(_endpoint(link, "sessions"), session.country_code, session.party_id, session.id)
    to_party = _party_of(session.cdr_token)
    periods = list(session.charging_periods)
    final = session.end_date_time is not None or session.status in _FINAL_SESSION_STATES
    if final:
        # The ended session replaces the partner's copy, final periods included.
        document = session_to_ocpi(session, periods)
        return Step(
            "PUT", url, document, _ids(pushes), keep={"periods": len(periods)}, to_party=to_party
        )
    closed = periods[:-1]  # the last period is still growing

    known = await sent_response(uow, link.partner_id, pushes[0].object_key)
    sent = (known or {}).get("periods")
    starting = any(push.kind == "session_start" for push in pushes)
    if starting or not partial_ok or not isinstance(sent, int):
        document = session_to_ocpi(session, closed)
        return Step(
            "PUT", url, document, _ids(pushes), keep={"periods": len(closed)}, to_party=to_party
        )
    document = session_to_ocpi(session, closed[sent:])
    body = {
        name: document[name]
        for name in ("kwh", "total_cost", "status", "charging_periods", "last_updated")
        if name in document
    }
    if not body["charging_periods"]:
        del body["charging_periods"]  # nothing new: absent leaves the partner's as they are
    keep = {"periods": max(sent, len(closed))}
    return Step("PATCH", url, body, _ids(pushes), whole=False, keep=keep, to_party=to_party)


# --------------------------------------------------------------------------- CDRs, tariffs


async def _cdr_step(uow: UnitOfWork, link: PartnerLink, pushes: Sequence[OcpiPush]) -> Step:
    cdr_id = pushes[0].object_key.partition(":")[2]
    cdr = await uow.session.get(Cdr, cdr_id)
    if cdr is None:
        raise Undeliverable(f"CDR {cdr_id!r} does not exist")
    # POST to the module URL itself, no cc/pid/id segments (CHECKLIST 4.2).
    return Step(
        "POST",
        _endpoint(link, "cdrs"),
        cdr.document,
        _ids(pushes),
        keep_location_header=True,
        to_party=_party_of((cdr.document or {}).get("cdr_token")),
    )


async def _tariff_step(uow: UnitOfWork, link: PartnerLink, pushes: Sequence[OcpiPush]) -> Step:
    tariff_id = pushes[0].object_key.partition(":")[2]
    tariff = await uow.session.get(Tariff, tariff_id, populate_existing=True)
    if tariff is None:
        raise Undeliverable(f"tariff {tariff_id!r} does not exist")
    url = join_url(_endpoint(link, "tariffs"), tariff.country_code, tariff.party_id, tariff.id)
    if tariff.retired_at is not None:
        return Step("DELETE", url, None, _ids(pushes))
    return Step("PUT", url, tariff_to_ocpi(tariff), _ids(pushes))


async def _callback_party(uow: UnitOfWork, object_key: str) -> tuple[str, str] | None:
    """The party a callback answers: the one whose token the command (or reservation) named.

    START_SESSION and RESERVE_NOW carry the token; STOP_SESSION names a session, whose token
    it is; others (UNLOCK_CONNECTOR, CANCEL_RESERVATION, charging profiles) name no party, and
    an ActiveChargingProfile goes to whoever set the limit: the partner itself.
    """
    kind, _, ident = object_key.partition(":")
    if kind == "reservation" and ident.isdigit():
        reservation = await uow.session.get(Reservation, int(ident))
        return _party_of(reservation.token) if reservation is not None else None
    if kind != "command":
        return None
    command = await uow.session.get(OcpiCommand, ident)
    if command is None:
        return None
    request = command.request or {}
    if "token" in request:
        return _party_of(request["token"])
    session_id = request.get("session_id")
    if command.command == "STOP_SESSION" and isinstance(session_id, str):
        session = await uow.session.get(Session, session_id)
        return _party_of(session.cdr_token) if session is not None else None
    return None


def _callback_step(push: OcpiPush, to_party: tuple[str, str] | None) -> Step:
    payload = push.payload or {}
    url = payload.get("url")
    if not isinstance(url, str) or not url:
        raise Undeliverable(f"callback push {push.id} has no URL")
    # POST of a result to a response_url; PUT of an ActiveChargingProfile (queue_callback).
    return Step(
        payload.get("method", "POST"), url, payload.get("body"), (push.id,), to_party=to_party
    )
