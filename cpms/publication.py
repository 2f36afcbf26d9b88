"""What an OCPI partner may see of our data, and the one change it may ask of a session.

The queries behind the OCPI Sender interfaces (CHECKLIST 1.9, 2.1, 3.1, 4.1, 5.1), each for
one partner and one ``Window`` (``last_updated`` in ``[date_from, date_to)``, offset, limit):

- locations: not retired, and either ``publish`` or, unpublished, with a ``publish_allowed_to``
  entry one of the partner's valid tokens matches (CHECKLIST 2.3); EVSEs come with them,
  ``REMOVED`` ones included (OCPI never deletes an EVSE, a puller learns of its removal).
  The same rule picks what a partner is pushed (``cpms.push_queue``: its fan-out, and the
  full push a newly registered partner gets, walked in batches by ``visible_location_ids``);
- sessions and CDRs: those of the partner's tokens only (``partner_id``; GDPR);
- tariffs: every tariff not retired (retired ones were DELETEd at the partners).

Pages are in creation order with the id last (CHECKLIST 1.9: "creation time ascending, with
a unique tiebreaker"), not in ``last_updated`` order: a new object lands on the last page,
and a change to an object a crawler has already passed does not move it to the end, which
would shift the objects behind it onto pages already read and so hide one of them. Sessions
have no creation time of their own; their start is the nearest (see ``partner_sessions``).

``set_charging_preferences`` is the eMSP's ``PUT .../charging_preferences``. Every function
takes an entered unit of work and never commits. Knows no HTTP. Spec: OCPI 2.2.1 modules
Locations, Sessions, CDRs, Tariffs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from cpms.documents import format_datetime, parse_datetime, tariff_to_ocpi
from cpms.errors import DocumentError, InvalidRequest, NotFound
from cpms.events import SessionUpdated
from cpms.model import Cdr, Connector, Evse, Location, Session, Tariff, Token
from cpms.pages import Page, fetch_page
from cpms.pricing import TariffPlan, select_tariff
from cpms.session_pricing import connector_tariffs, switch_tariff
from cpms.tokens import PROFILE_TYPES
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "CHARGING_PREFERENCES_CAPABLE",
    "NoChargingPreferences",
    "Window",
    "charging_preferences_from_ocpi",
    "current_tariff_ids",
    "current_tariffs",
    "find_connector",
    "find_evse",
    "partner_cdrs",
    "partner_sessions",
    "set_charging_preferences",
    "visible_location",
    "visible_location_ids",
    "visible_locations",
]

#: The EVSE capability without which charging preferences are refused (HTTP 404 on OCPI).
CHARGING_PREFERENCES_CAPABLE = "CHARGING_PREFERENCES_CAPABLE"
#: Session statuses in which a preference can still change the charging.
_OPEN_STATUSES = ("ACTIVE", "PENDING")


@dataclass(frozen=True, slots=True)
class Window:
    """One page of a list: ``last_updated`` from ``date_from`` (inclusive) to ``date_to``
    (exclusive), skipping ``offset`` objects, at most ``limit`` of them."""

    date_from: datetime | None = None
    date_to: datetime | None = None
    offset: int = 0
    limit: int | None = None

    def bound(self, column: InstrumentedAttribute[datetime]) -> list[ColumnElement[bool]]:
        """The conditions on ``column`` (a ``last_updated``) this window sets."""
        conditions = []
        if self.date_from is not None:
            conditions.append(column >= self.date_from)
        if self.date_to is not None:
            conditions.append(column < self.date_to)
        return conditions


class NoChargingPreferences(InvalidRequest):
    """The session's EVSE does not take charging preferences (no CHARGING_PREFERENCES_CAPABLE)."""


async def _page(uow: UnitOfWork, query: Select[Any], window: Window) -> Page[Any]:
    return await fetch_page(uow.session, query, offset=window.offset, limit=window.limit)


async def _by_id(
    uow: UnitOfWork, query: Select[Any], column: InstrumentedAttribute[str], value: str
) -> Any:
    """The row of ``query`` whose ``column`` is ``value``, compared as OCPI CiStrings are.

    The exact match first (it uses the key's index); then case-insensitively.
    """
    found = await uow.session.scalar(query.where(column == value))
    if found is None:
        found = await uow.session.scalar(
            query.where(func.lower(column) == value.lower()).order_by(column).limit(1)
        )
    return found


# --------------------------------------------------------------------------- locations


def _same(stored: str | None, wanted: object, *, ci: bool) -> bool:
    if stored is None or not isinstance(wanted, str):
        return False
    return stored.lower() == wanted.lower() if ci else stored == wanted


def _token_matches(entry: Mapping[str, Any], token: Token) -> bool:
    """Whether ``token`` is one ``entry`` (an OCPI PublishTokenType) names.

    Every field the entry sets must match (uid and group_id are CiStrings; type,
    visual_number and issuer compare exactly); an entry that sets none names nobody.
    """
    checks = (
        ("uid", token.uid, True),
        ("type", token.type, False),
        ("visual_number", token.visual_number, False),
        ("issuer", token.issuer, False),
        ("group_id", token.group_id, True),
    )
    named = [(stored, entry[key], ci) for key, stored, ci in checks if entry.get(key) is not None]
    return bool(named) and all(_same(stored, wanted, ci=ci) for stored, wanted, ci in named)


async def _partner_tokens_named(
    uow: UnitOfWork, partner_id: int, entries: Sequence[Mapping[str, Any]]
) -> list[Token]:
    """The partner's valid tokens that any of ``entries`` could name (one query)."""

    def values(key: str, *, lower: bool) -> list[str]:
        found = {e[key] for e in entries if isinstance(e.get(key), str)}
        return sorted(v.lower() for v in found) if lower else sorted(found)

    uids, groups = values("uid", lower=True), values("group_id", lower=True)
    visual_numbers = values("visual_number", lower=False)
    if not (uids or groups or visual_numbers):
        return []
    query = select(Token).where(
        Token.partner_id == partner_id,
        Token.valid.is_(True),
        or_(
            func.lower(Token.uid).in_(uids),
            func.lower(Token.group_id).in_(groups),
            Token.visual_number.in_(visual_numbers),
        ),
    )
    return list(await uow.session.scalars(query))


async def _shown_among(
    uow: UnitOfWork, partner_id: int, candidates: Sequence[tuple[str, object]]
) -> list[str]:
    """Ids of ``candidates`` (location id, ``publish_allowed_to``) the partner's tokens open.

    One query for the partner's tokens the lists could name, whatever their number.
    """
    lists = [
        (location_id, [e for e in entries if isinstance(e, Mapping)])
        for location_id, entries in candidates
        if isinstance(entries, list) and entries
    ]
    if not lists:
        return []
    tokens = await _partner_tokens_named(
        uow, partner_id, [entry for _, entries in lists for entry in entries]
    )
    return [
        location_id
        for location_id, entries in lists
        if any(_token_matches(entry, token) for entry in entries for token in tokens)
    ]


async def _unpublished_shown_to(uow: UnitOfWork, partner_id: int) -> list[str]:
    """Ids of the unpublished, unretired locations a token of the partner is allowed to see.

    Reads the ``publish_allowed_to`` of every unpublished location (OCPI expects few:
    private sites shared with some drivers): two queries in all.
    """
    rows = await uow.session.execute(
        select(Location.id, Location.publish_allowed_to).where(
            Location.publish.is_(False), Location.retired_at.is_(None)
        )
    )
    return await _shown_among(uow, partner_id, [(row[0], row[1]) for row in rows])


def _locations_with_children() -> Select[tuple[Location]]:
    return select(Location).options(selectinload(Location.evses).selectinload(Evse.connectors))


async def _visible_to(uow: UnitOfWork, partner_id: int) -> ColumnElement[bool]:
    allowed = await _unpublished_shown_to(uow, partner_id)
    published = Location.publish.is_(True)
    shown = or_(published, Location.id.in_(allowed)) if allowed else published
    return and_(Location.retired_at.is_(None), shown)


async def visible_locations(uow: UnitOfWork, partner_id: int, window: Window) -> Page[Location]:
    """The locations partner ``partner_id`` may see, with EVSEs and connectors, one page."""
    query = (
        _locations_with_children()
        .where(await _visible_to(uow, partner_id), *window.bound(Location.last_updated))
        .order_by(Location.created_at, Location.id)
    )
    return await _page(uow, query, window)


async def visible_location_ids(
    uow: UnitOfWork, partner_id: int, *, after: str | None = None, limit: int
) -> list[str]:
    """Ids of the locations partner ``partner_id`` may see, in id order, after ``after``.

    One batch of a walk over all of them (a full push, ``cpms.push_queue.queue_full_sync``):
    keyed on the id, so locations added or changed meanwhile shift no batch.
    """
    query = select(Location.id).where(await _visible_to(uow, partner_id))
    if after is not None:
        query = query.where(Location.id > after)
    return list(await uow.session.scalars(query.order_by(Location.id).limit(limit)))


async def visible_location(uow: UnitOfWork, partner_id: int, location_id: str) -> Location:
    """The location ``location_id`` with its EVSEs and connectors, if the partner may see it.

    Raise ``NotFound`` for a location that does not exist and for one the partner may not
    see alike: an unpublished location's existence is not to be told.
    """
    location: Location | None = await _by_id(
        uow, _locations_with_children(), Location.id, location_id
    )
    if location is None or location.retired_at is not None:
        raise NotFound("location", location_id)
    if not location.publish and not await _shown_among(
        uow, partner_id, [(location.id, location.publish_allowed_to)]
    ):
        raise NotFound("location", location_id)
    return location


def find_evse(location: Location, evse_uid: str) -> Evse:
    """The EVSE ``evse_uid`` (a CiString) of a loaded location; raise ``NotFound``."""
    for evse in location.evses:
        if evse.uid.lower() == evse_uid.lower():
            return evse
    raise NotFound("evse", f"{location.id}/{evse_uid}")


def find_connector(evse: Evse, connector_id: str) -> Connector:
    """The connector ``connector_id`` (a CiString) of a loaded EVSE; raise ``NotFound``."""
    for connector in evse.connectors:
        if connector.id.lower() == connector_id.lower():
            return connector
    raise NotFound("connector", f"{evse.uid}/{connector_id}")


# --------------------------------------------------------------------------- sessions, CDRs


async def partner_sessions(uow: UnitOfWork, partner_id: int, window: Window) -> Page[Session]:
    """The sessions of partner ``partner_id``'s tokens, with their charging periods, one page.

    Ordered by start, then id: a running session changes with every meter reading, and
    must not move while a partner pages through the list. A session replayed late by an
    offline station may land before pages already read: the crawler then sees one session
    twice, and the late one is in its next ``date_from`` pull (its ``last_updated`` is new).
    """
    query = (
        select(Session)
        .options(selectinload(Session.charging_periods))
        .where(Session.partner_id == partner_id, *window.bound(Session.last_updated))
        .order_by(Session.start_date_time, Session.id)
    )
    return await _page(uow, query, window)


async def partner_cdrs(uow: UnitOfWork, partner_id: int, window: Window) -> Page[Cdr]:
    """The CDRs partner ``partner_id`` pays for (credit CDRs included), in issue order."""
    query = (
        select(Cdr)
        .where(Cdr.partner_id == partner_id, *window.bound(Cdr.last_updated))
        .order_by(Cdr.issued_at, Cdr.id)
    )
    return await _page(uow, query, window)


# --------------------------------------------------------------------------- tariffs


async def current_tariffs(uow: UnitOfWork, window: Window) -> Page[Tariff]:
    """The tariffs not retired, one page; every partner sees them all.

    Tariffs whose validity has not begun or has ended are served too: a connector may list
    them to schedule a switch (CHECKLIST 5.2), and a puller replaces its whole list.
    """
    query = (
        select(Tariff)
        .where(Tariff.retired_at.is_(None), *window.bound(Tariff.last_updated))
        .order_by(Tariff.created_at, Tariff.id)
    )
    return await _page(uow, query, window)


async def current_tariff_ids(uow: UnitOfWork, *, after: str | None = None, limit: int) -> list[str]:
    """Ids of the tariffs not retired, in id order, after ``after``: one batch of a walk."""
    query = select(Tariff.id).where(Tariff.retired_at.is_(None))
    if after is not None:
        query = query.where(Tariff.id > after)
    return list(await uow.session.scalars(query.order_by(Tariff.id).limit(limit)))


# --------------------------------------------------------------------------- preferences


def charging_preferences_from_ocpi(document: object) -> dict[str, Any]:
    """Check an OCPI ChargingPreferences document; return its fields as stored.

    ``profile_type`` is required; ``departure_time`` (DateTime, written back in our ``Z``
    form), ``energy_need`` (kWh, 0 or more) and ``discharge_allowed`` are optional; unknown
    fields are ignored (CHECKLIST 1.12). Raise ``DocumentError`` naming the field.
    """
    if not isinstance(document, Mapping):
        raise DocumentError("", "expected a ChargingPreferences object")
    profile = document.get("profile_type")
    if profile not in PROFILE_TYPES:
        problem = "is required" if profile is None else f"is {profile!r}"
        raise DocumentError(
            "profile_type", f"{problem}; expected one of {', '.join(PROFILE_TYPES)}"
        )
    stored: dict[str, Any] = {"profile_type": profile}
    departure = document.get("departure_time")
    if departure is not None:
        stored["departure_time"] = format_datetime(parse_datetime(departure, "departure_time"))
    energy = document.get("energy_need")
    if energy is not None:
        if isinstance(energy, bool) or not isinstance(energy, int | float) or energy < 0:
            raise DocumentError(
                "energy_need", f"expected a number of kWh, 0 or more, not {energy!r}"
            )
        stored["energy_need"] = energy
    discharge = document.get("discharge_allowed")
    if discharge is not None:
        if not isinstance(discharge, bool):
            raise DocumentError("discharge_allowed", f"expected true or false, not {discharge!r}")
        stored["discharge_allowed"] = discharge
    return stored


async def _profile_supported(
    uow: UnitOfWork, connector: Connector | None, profile: str, at: datetime
) -> bool:
    """Whether the connector lists a tariff of type ``PROFILE_<profile>`` in force at ``at``.

    ``REGULAR`` needs none: it is the charging every connector does.
    """
    if profile == "REGULAR":
        return True
    plans = [
        TariffPlan.from_ocpi(tariff_to_ocpi(t)) for t in await connector_tariffs(uow, connector)
    ]
    plan = select_tariff(plans, at, profile=profile)
    return plan is not None and plan.type == f"PROFILE_{profile}"


def _connector_of(evse: Evse | None, connector_id: str | None) -> Connector | None:
    if evse is None or connector_id is None:
        return None
    return next((c for c in evse.connectors if c.id.lower() == connector_id.lower()), None)


async def set_charging_preferences(
    uow: UnitOfWork, partner_id: int, session_id: str, document: object, *, now: datetime
) -> str:
    """Take an eMSP's ChargingPreferences for one of its sessions; return the OCPI answer.

    Raise ``NotFound`` for a session that is not the partner's (or does not exist),
    ``NoChargingPreferences`` when its EVSE lacks ``CHARGING_PREFERENCES_CAPABLE``, and
    ``DocumentError`` for a bad document. Otherwise answer (a ChargingPreferencesResponse):
    ``PROFILE_TYPE_NOT_SUPPORTED`` when the session's connector has no tariff of type
    ``PROFILE_<profile_type>`` in force, ``NOT_POSSIBLE`` when the session is not ACTIVE or
    PENDING (or has no EVSE), else ``ACCEPTED``: the preferences are stored on the session,
    whose ``last_updated`` moves to ``now``, and ``SessionUpdated`` is recorded. When the
    ``profile_type`` calls for another tariff than the one in force, the session is billed
    with that tariff from ``now`` on (``session_pricing.switch_tariff``).
    """
    query = select(Session).where(Session.partner_id == partner_id)
    session: Session | None = await _by_id(uow, query, Session.id, session_id)
    if session is None:
        raise NotFound("session", session_id)
    evse = None
    if session.evse_uid is not None:
        evse = await uow.session.scalar(
            select(Evse).where(Evse.uid == session.evse_uid).options(selectinload(Evse.connectors))
        )
    if evse is not None and CHARGING_PREFERENCES_CAPABLE not in (evse.capabilities or ()):
        raise NoChargingPreferences(
            f"EVSE {evse.uid!r} of session {session.id!r} does not take charging preferences"
        )
    preferences = charging_preferences_from_ocpi(document)
    connector = _connector_of(evse, session.connector_id)
    if not await _profile_supported(uow, connector, preferences["profile_type"], now):
        return "PROFILE_TYPE_NOT_SUPPORTED"
    if evse is None or session.status not in _OPEN_STATUSES:
        return "NOT_POSSIBLE"
    session.charging_preferences = preferences
    await switch_tariff(uow, session, connector, preferences["profile_type"], now)
    if now > session.last_updated:
        session.last_updated = now
    uow.record(SessionUpdated(occurred_at=now, session_id=session.id, status=session.status))
    return "ACCEPTED"
