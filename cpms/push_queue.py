"""The per-partner push queue: what each OCPI partner must receive, in order, exactly once.

Two halves, both plain database work (the HTTP side is ``ocpi_api.push``):

**Fan-out.** ``fan_out`` claims a batch of unprocessed outbox rows in id order (on
PostgreSQL ``FOR UPDATE SKIP LOCKED``, so several nodes share the work), turns each event
into one ``OcpiPush`` per partner that must hear of it, and marks the rows processed, all in
one transaction: nothing is lost and nothing is queued twice. Who must hear of what:

- location, EVSE, connector and EVSE status events: every registered partner with a
  ``locations`` RECEIVER endpoint that may see the location (``cpms.publication``, the
  same rule as its GETs: published, or unpublished with a ``publish_allowed_to`` entry
  naming one of its tokens; never retired). A location that stops being shown is still
  pushed to the partners that have it, so they learn it is unpublished or retired;
- ``tariff.changed``: every partner with a ``tariffs`` RECEIVER (``tariff_delete`` once
  retired);
- ``session.*``: only the partner whose token the session runs on (``Session.partner_id``,
  never broadcast: CHECKLIST 3.2), if it has a ``sessions`` RECEIVER;
- ``cdr.issued``: only the partner that pays for it (``Cdr.partner_id``), with ``cdrs``
  RECEIVER.

Other topics are marked processed and go nowhere; so does a row of a module no partner
receives, without a query of its object. With no partner registered at all, no row is
looked at: one statement marks a whole batch processed (issue 8: a node without partners
pays next to nothing for its outbox). Session and CDR pushes carry their location's id
(and a CDR its session's) in their payload, for the order across objects below.

**Full sync.** ``queue_full_sync`` queues a whole PUT of every current tariff and every
location a partner may see when its registration completes (and, after a credentials
update, for a receiver endpoint that is new or moved), in short transactions of
``SYNC_BATCH`` objects, as ordinary pushes in the partner's background lane: every live
push (what changed since) is due before them, so a partner's 10,000 locations being sent
do not hold up a status change for minutes. A live push of an object still waiting in
the background lane (or of a session at a location waiting there) brings that object's
pushes forward (``fan_out``), since it goes out with them or after them.

**Delivery bookkeeping.** The pusher asks for ``due_heads`` (per partner and object, the
oldest pending push, if it is due; a session's or CDR's not while its location's, or a
CDR's while its session's, older push is pending, nor before the partner's first push of
that location: the partner never hears of a session at a location it does not know, nor
of a CDR before its session's end), ``claim``s one (a lease on every pending push of that
object, so no other pusher sends them meanwhile), and settles what it gathered:
``settle`` (SENT, the rest SUPERSEDED; or FAILED; or DROPPED) or ``retry_later``.
``queue_callback`` queues a request to a URL a partner gave us (a command's
``response_url``), delivered with the same retries as every push. The operator's view:
``backlog``, ``list_pushes``, ``make_available``.

**On hold.** A push addressed through a hub to a party the hub reports OFFLINE, SUSPENDED
or PLANNED (``ocpi_api.push`` decides) is put ``on_hold``: still pending, no attempt
counted, not FAILED, not DROPPED, due again only after ``HOLD_RECHECK`` seconds, its
``last_error`` saying why (``held_reason``: the operator sees it in the push list). When the
hub reports the party CONNECTED again, ``release_held`` (called by
``cpms.hub_clients.put_client_info`` in the same transaction) makes those pushes due at
once. The recheck catches the one race: a CONNECTED stored between the pusher's look at the
status and its hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    Select,
    String,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from cpms.driver_sql import DriverStatement
from cpms.errors import InvalidRequest, NotFound
from cpms.model import Cdr, Location, OcpiPartner, OcpiPush, OutboxEntry, Session, utcnow
from cpms.pages import Page, fetch_page
from cpms.publication import current_tariff_ids, visible_location, visible_location_ids
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "DROPPED",
    "FAILED",
    "FAN_OUT_BATCH",
    "HOLD_RECHECK",
    "LEASE",
    "PUSH_STATES",
    "SENT",
    "SUPERSEDED",
    "SYNC_BATCH",
    "DueHead",
    "FanOut",
    "FullSync",
    "Lane",
    "PartnerBacklog",
    "backlog",
    "claim",
    "due_heads",
    "fan_out",
    "held_reason",
    "list_pushes",
    "make_available",
    "next_due",
    "on_hold",
    "queue_callback",
    "queue_full_sync",
    "receiver_urls",
    "release",
    "release_held",
    "retry_later",
    "sent_response",
    "settle",
    "topic_module",
]

# Outcomes of a settled push (``OcpiPush.outcome``).
SENT = "SENT"
SUPERSEDED = "SUPERSEDED"
FAILED = "FAILED"
DROPPED = "DROPPED"

#: What the operator may list: waiting, refused by the partner, delivered.
PUSH_STATES = ("pending", "failed", "sent", "superseded", "dropped")

FAN_OUT_BATCH = 200
"""Outbox rows per fan-out transaction: short transactions, few round trips."""
LEASE = 30.0
"""Seconds a pusher holds the pushes it is sending (more than a request may take)."""
GATHER_LIMIT = 500
"""Pending pushes of one object coalesced into one delivery at most (the rest wait)."""
SWEEP_BATCH = 2000
"""Outbox rows marked processed per statement when no partner is registered."""
SYNC_BATCH = 500
"""Objects queued per transaction by ``queue_full_sync`` (10,000 locations: 20 short ones)."""
HOLD_RECHECK = 60.0
"""Seconds a held push waits before the pusher looks at its party's status again (a
CONNECTED releases it at once; this only bounds a race, see the module docstring)."""

_LOCATION_KINDS = {
    "location.changed": "location",
    "evse.changed": "evse",
    "evse.status_changed": "evse_status",
    "connector.changed": "connector",
}
_SESSION_KINDS = {
    "session.started": "session_start",
    "session.updated": "session_update",
    "session.ended": "session_end",
}
_MODULES = ("locations", "tariffs", "sessions", "cdrs")
"""The partner RECEIVER modules the outbox feeds."""
_AFTER_LOCATION = ("session_start", "session_update", "session_end", "cdr")
"""Kinds of push that wait for their location's pushes (and a CDR for its session's)."""


def topic_module(topic: str) -> str | None:
    """The partner module an outbox topic is pushed to (``None``: pushed to nobody)."""
    if topic in _LOCATION_KINDS:
        return "locations"
    if topic in _SESSION_KINDS:
        return "sessions"
    return {"tariff.changed": "tariffs", "cdr.issued": "cdrs"}.get(topic)


# --------------------------------------------------------------------------- fan-out


@dataclass(frozen=True, slots=True)
class FanOut:
    """What one fan-out transaction did."""

    events: int
    """Outbox rows marked processed."""
    pushes: int
    """Pushes queued for partners."""
    contended: bool = False
    """Another node claimed some of the same rows first; nothing was done, try again."""
    partners: bool = True
    """Some partner is registered. False: the rows were swept without a look at them, and
    no push can be due for anyone (the pusher skips looking for due pushes)."""
    receives: frozenset[str] = frozenset(_MODULES)
    """The modules some registered partner has a RECEIVER of: events of other modules
    interest nobody, and need not wake the pusher."""


@dataclass
class _Targets:
    """Who receives what, read once per fan-out batch."""

    uow: UnitOfWork
    _receivers: dict[str, list[int]] = field(default_factory=dict)
    _locations: dict[str, Location | None] = field(default_factory=dict)
    _known: dict[tuple[int, str], bool] = field(default_factory=dict)
    _shown: dict[tuple[int, str], bool] = field(default_factory=dict)
    _partners: list[OcpiPartner] | None = None

    async def partners(self) -> list[OcpiPartner]:
        """The registered partners, by id (one query per batch)."""
        if self._partners is None:
            self._partners = list(
                await self.uow.session.scalars(
                    select(OcpiPartner)
                    .where(OcpiPartner.state == "REGISTERED")
                    .order_by(OcpiPartner.id)
                )
            )
        return self._partners

    async def receivers(self, module: str) -> list[int]:
        """Registered partners with a RECEIVER endpoint of ``module``, by id."""
        if module not in self._receivers:
            self._receivers[module] = [
                partner.id
                for partner in await self.partners()
                if ((partner.endpoints or {}).get(module) or {}).get("RECEIVER")
            ]
        return self._receivers[module]

    async def receives(self) -> frozenset[str]:
        """The modules some registered partner receives."""
        return frozenset([module for module in _MODULES if await self.receivers(module)])

    async def location(self, location_id: str) -> Location | None:
        if location_id not in self._locations:
            self._locations[location_id] = await self.uow.session.get(Location, location_id)
        return self._locations[location_id]

    async def shows(self, partner_id: int, location: Location) -> bool:
        """Whether the partner may see the location (``cpms.publication`` decides)."""
        if location.publish and location.retired_at is None:
            return True  # the common case, without a query
        shown = self._shown.get((partner_id, location.id))
        if shown is None:
            try:
                await visible_location(self.uow, partner_id, location.id)
                shown = True
            except NotFound:
                shown = False
            self._shown[(partner_id, location.id)] = shown
        return shown

    async def knows(self, partner_id: int, object_key: str) -> bool:
        """Whether the partner has (or is about to get) the object: a push sent or pending."""
        known = self._known.get((partner_id, object_key))
        if known is None:
            found = await self.uow.session.scalar(
                select(OcpiPush.id)
                .where(
                    OcpiPush.partner_id == partner_id,
                    OcpiPush.object_key == object_key,
                    (OcpiPush.done_at.is_(None)) | (OcpiPush.outcome == SENT),
                )
                .limit(1)
            )
            known = self._known[(partner_id, object_key)] = found is not None
        return known

    def queued(self, partner_id: int, object_key: str) -> None:
        self._known[(partner_id, object_key)] = True


@dataclass(frozen=True, slots=True)
class _Recipients:
    """Where one outbox row goes: its object, the kind of push, the partners."""

    key: str = ""
    kind: str = ""
    partners: Sequence[int] = ()
    also: Mapping[str, Any] = field(default_factory=dict)
    """Added to the push's payload: the location (and session) a session or CDR waits for."""


_NOBODY = _Recipients()


async def _recipients(targets: _Targets, entry: OutboxEntry) -> _Recipients:
    """Where one outbox row goes (no partners: ignore it).

    The receivers of the topic's module are asked first: a row nobody receives costs no
    query of its object.
    """
    topic, payload = entry.topic, entry.payload or {}
    module = topic_module(topic)
    receivers = await targets.receivers(module) if module is not None else []
    if not receivers:
        return _NOBODY
    if topic in _LOCATION_KINDS:
        key = f"location:{payload['location_id']}"
        location = await targets.location(str(payload["location_id"]))
        if location is None:
            return _NOBODY
        # Those who may see it (``cpms.publication``, as for their GETs), and those who
        # have it already: a location no longer shown must reach them unpublished.
        partners = [
            partner_id
            for partner_id in receivers
            if await targets.shows(partner_id, location) or await targets.knows(partner_id, key)
        ]
        return _Recipients(key, _LOCATION_KINDS[topic], partners)
    if topic == "tariff.changed":
        kind = "tariff_delete" if payload.get("retired") else "tariff"
        return _Recipients(f"tariff:{payload['tariff_id']}", kind, receivers)
    if topic in _SESSION_KINDS:
        session = await targets.uow.session.get(Session, payload["session_id"])
        if session is None or session.partner_id not in receivers:
            return _NOBODY
        return _Recipients(
            f"session:{payload['session_id']}",
            _SESSION_KINDS[topic],
            [session.partner_id],
            {"location_id": session.location_id},
        )
    if topic == "cdr.issued":
        cdr = await targets.uow.session.get(Cdr, payload["cdr_id"])
        if cdr is None or cdr.partner_id not in receivers:
            return _NOBODY
        location_id = ((cdr.document or {}).get("cdr_location") or {}).get("id")
        if location_id is None and cdr.session_id is not None:
            session = await targets.uow.session.get(Session, cdr.session_id)
            location_id = session.location_id if session is not None else None
        also = {"location_id": location_id} if location_id is not None else {}
        return _Recipients(f"cdr:{payload['cdr_id']}", "cdr", [cdr.partner_id], also)
    return _NOBODY


async def fan_out(uow: UnitOfWork, *, limit: int = FAN_OUT_BATCH) -> FanOut:
    """Turn up to ``limit`` outbox rows into pushes and mark them processed, in one go.

    With no partner registered at all, no row needs a look: up to ``SWEEP_BATCH`` of them
    are marked processed by one statement (``FanOut.partners`` is then False).
    """
    now = utcnow()
    async with uow:
        targets = _Targets(uow)
        if not await targets.partners():
            return await _sweep(uow, now)
        receives = await targets.receives()
        query = (
            select(OutboxEntry)
            .where(OutboxEntry.processed_at.is_(None))
            .order_by(OutboxEntry.id)
            .limit(limit)
        )
        if _dialect(uow) == "postgresql":
            query = query.with_for_update(skip_locked=True)
        entries = list(await uow.session.scalars(query))
        if not entries:
            return FanOut(0, 0, receives=receives)
        # The claim itself: on PostgreSQL the rows are locked already; on SQLite this
        # write takes the database lock, and a row another process processed meanwhile
        # makes the count come out short, so this batch is given up instead of doubled.
        claimed = await uow.session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id.in_([e.id for e in entries]), OutboxEntry.processed_at.is_(None))
            .values(processed_at=now)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(claimed) != len(entries):
            await uow.rollback()
            return FanOut(0, 0, contended=True, receives=receives)
        queued = 0
        live: dict[int, set[str]] = {}
        for entry in entries:
            to = await _recipients(targets, entry)
            payload = dict(entry.payload or {}) | dict(to.also)
            for partner_id in to.partners:
                uow.session.add(
                    OcpiPush(
                        partner_id=partner_id,
                        object_key=to.key,
                        kind=to.kind,
                        payload=payload,
                        created_at=entry.created_at,
                        available_at=now,
                        attempts=0,
                    )
                )
                targets.queued(partner_id, to.key)
                live.setdefault(partner_id, set()).update(_waited_for(to.key, to.kind, payload))
                queued += 1
        for partner_id, keys in live.items():
            await _bring_forward(uow, partner_id, keys)
        await uow.commit()
    return FanOut(len(entries), queued, receives=receives)


def _waited_for(key: str, kind: str, payload: Mapping[str, Any]) -> list[str]:
    """The objects a live push of ``key`` goes out with or after: itself, its location."""
    if kind in _AFTER_LOCATION and payload.get("location_id"):
        return [key, f"location:{payload['location_id']}"]
    return [key]


async def _bring_forward(uow: UnitOfWork, partner_id: int, keys: Collection[str]) -> None:
    """Move the background pushes of ``keys`` to the partner's live lane.

    A live push waits for the older pushes of its object (and a session's for its
    location's first); left in the background lane, those would hold it up behind a
    whole full sync.
    """
    await uow.session.execute(
        update(OcpiPush)
        .where(
            OcpiPush.partner_id == partner_id,
            OcpiPush.object_key.in_(sorted(keys)),
            _pending(),
            OcpiPush.background.is_(True),
        )
        .values(background=False)
        .execution_options(synchronize_session=False)
    )


_SWEEP = DriverStatement(
    update(OutboxEntry)
    .where(
        OutboxEntry.id.in_(
            select(OutboxEntry.id)
            .where(OutboxEntry.processed_at.is_(None))
            .order_by(OutboxEntry.id)
            .limit(SWEEP_BATCH)
            # PostgreSQL: rows another node is sweeping are left to it (SQLite has one writer).
            .with_for_update(skip_locked=True)
        ),
        OutboxEntry.processed_at.is_(None),
        ~exists().where(OcpiPartner.state == "REGISTERED"),
    )
    .values(processed_at=bindparam("now", type_=OutboxEntry.__table__.c.processed_at.type)),
    ("now",),
)


async def _sweep(uow: UnitOfWork, now: datetime) -> FanOut:
    """Mark waiting outbox rows processed at once: no partner is registered (``uow`` entered).

    When rows wait, one UPDATE marks them, the first statement of a transaction of its own:
    on SQLite a write that follows a read in the same transaction fails at once ("database
    is locked") when another connection committed in between, so the reads are rolled back
    first. The statement itself checks again that no partner is registered, so a partner
    whose registration commits meanwhile misses no event: then nothing is marked, and the
    next fan-out looks at every row. (Events before its registration are covered by the
    full sync it gets, ``queue_full_sync``.)
    """
    waiting = await uow.session.scalar(
        select(func.count()).select_from(
            select(OutboxEntry.id)
            .where(OutboxEntry.processed_at.is_(None))
            .limit(SWEEP_BATCH)
            .subquery()
        )
    )
    if not waiting:  # a read: nothing is written (nor locked, on SQLite) when all is quiet
        return FanOut(0, 0, partners=False, receives=frozenset())
    await uow.rollback()
    count = await _SWEEP.execute(await uow.session.connection(), (now,))
    await uow.commit()
    # Fewer than waiting: another node took some, or a partner registered; look again.
    return FanOut(count, 0, contended=count < waiting, partners=False, receives=frozenset())


def queue_callback(
    uow: UnitOfWork,
    *,
    partner_id: int,
    url: str,
    body: dict[str, Any],
    object_key: str,
    method: str = "POST",
) -> OcpiPush:
    """Queue ``method url`` with ``body`` for ``partner_id`` (``uow`` entered; commit after).

    ``POST`` for a result to a ``response_url``; ``PUT`` for an ActiveChargingProfile to a
    partner's chargingprofiles SENDER interface.
    """
    now = utcnow()
    push = OcpiPush(
        partner_id=partner_id,
        object_key=object_key,
        kind="callback",
        payload={"url": url, "body": body, "method": method},
        created_at=now,
        available_at=now,
        attempts=0,
    )
    uow.session.add(push)
    return push


# --------------------------------------------------------------------------- delivery


@dataclass(frozen=True, slots=True)
class DueHead:
    """The oldest pending push of one object of one partner, due now."""

    id: int
    partner_id: int
    object_key: str
    background: bool = False
    """In the partner's background lane (a full sync's push), see ``due_heads``."""


@cache
def _pending() -> Any:
    return OcpiPush.done_at.is_(None)


@cache  # one expression, built once: it is part of every delivery query
def _is_head() -> Any:
    """No older push of the same partner and object is pending (in order per object)."""
    older = aliased(OcpiPush)
    return ~exists().where(
        older.partner_id == OcpiPush.partner_id,
        older.object_key == OcpiPush.object_key,
        older.done_at.is_(None),
        older.id < OcpiPush.id,
    )


@cache  # one expression, built once: it is part of every delivery query
def _not_waiting() -> Any:
    """A session's or CDR's push does not wait for another object's (in order across objects).

    Within one partner, a Session or CDR never overtakes its location, nor a CDR its
    session: a session or CDR push waits while a push of its location is pending that is
    older, or that would be the first the partner gets of it (it never had one SENT: an
    initial sync queued after the session started, say); a CDR also waits while an older
    push of its session is pending (the session's end). Location pushes never wait, so
    nothing waits forever: what it waits for is sent, FAILED or DROPPED in time. The
    location (and session) is in the push's payload (``fan_out``); a push without it
    waits for nothing.
    """
    other, sent = aliased(OcpiPush), aliased(OcpiPush)
    location = literal("location:", String) + OcpiPush.payload["location_id"].as_string()
    session = literal("session:", String) + OcpiPush.payload["session_id"].as_string()
    never_had_it = ~exists().where(
        sent.partner_id == other.partner_id,
        sent.object_key == other.object_key,
        sent.outcome == SENT,
    )
    waits_for = exists().where(
        other.partner_id == OcpiPush.partner_id,
        other.done_at.is_(None),
        or_(
            and_(other.object_key == location, or_(other.id < OcpiPush.id, never_had_it)),
            and_(OcpiPush.kind == "cdr", other.object_key == session, other.id < OcpiPush.id),
        ),
    )
    return or_(OcpiPush.kind.not_in(_AFTER_LOCATION), ~waits_for)


Lane = tuple[int, bool]
"""A partner's live (False) or background (True) pushes; the two are delivered side by side."""


async def _open_lanes(uow: UnitOfWork, skip: Collection[int], busy: Collection[Lane]) -> list[Lane]:
    """Every partner's two lanes but those of ``skip`` partners and the ``busy`` ones.

    Read from the partner table (a handful of rows), so each lane is then one index range
    of ``ix_ocpi_push_partner_id_background_done_at_id``, never a pass over every pending
    push: a new partner's full sync leaves 10,000 of them.
    """
    partners = await uow.session.scalars(select(OcpiPartner.id).order_by(OcpiPartner.id))
    return [
        (partner_id, background)
        for partner_id in partners
        if partner_id not in skip
        for background in (False, True)
        if (partner_id, background) not in busy
    ]


def _in_lane(lane: Lane) -> list[Any]:
    partner_id, background = lane
    # ``=``, not ``IS``: PostgreSQL uses an index for the one only
    return [OcpiPush.partner_id == partner_id, OcpiPush.background == background, _pending()]


async def due_heads(
    uow: UnitOfWork,
    *,
    now: datetime,
    per_partner: int = 25,
    skip: Collection[int] = (),
    busy: Collection[Lane] = (),
) -> list[DueHead]:
    """Per partner and object, the oldest pending push if it is due; live first, then oldest.

    A push waits while an older push of the same object is pending (in order per
    object), and a session's or CDR's while its location's or session's does
    (``_not_waiting``). Each partner has two lanes: live pushes (what changed) and
    background ones (``OcpiPush.background``: a full sync), so a new partner's 10,000
    locations never hold up a status change meanwhile. At most ``per_partner`` objects of
    each lane, so a partner catching up on a long backlog does not hold up the others;
    partners in ``skip`` (backing off) are left out, and so are the ``busy`` lanes (as
    many of their objects on their way as they may have).
    """
    due = [OcpiPush.available_at <= now, _is_head(), _not_waiting()]
    heads: list[DueHead] = []
    async with uow:
        for lane in await _open_lanes(uow, skip, busy):
            rows = await uow.session.execute(
                select(OcpiPush.id, OcpiPush.object_key)
                .where(*_in_lane(lane), *due)
                .order_by(OcpiPush.id)
                .limit(per_partner)
            )
            heads += [DueHead(id, lane[0], key, lane[1]) for id, key in rows.all()]
    return sorted(heads, key=lambda head: (head.background, head.id))


async def next_due(
    uow: UnitOfWork, *, skip: Collection[int] = (), busy: Collection[Lane] = ()
) -> datetime | None:
    """When the earliest object waiting to be sent becomes due (``None``: none waits).

    Lanes as in ``due_heads``: ``skip`` partners and ``busy`` lanes are left out.
    """
    earliest: datetime | None = None
    async with uow:
        for lane in await _open_lanes(uow, skip, busy):
            due = await uow.session.scalar(
                select(func.min(OcpiPush.available_at)).where(
                    *_in_lane(lane), _is_head(), _not_waiting()
                )
            )
            if due is not None and (earliest is None or due < earliest):
                earliest = due
    return earliest


async def claim(uow: UnitOfWork, head: DueHead, *, now: datetime, lease: float) -> list[OcpiPush]:
    """Lease ``head`` and every pending push of its object; return them oldest first.

    Empty when another pusher took the head first. The lease (``available_at`` moved
    ``lease`` seconds ahead) keeps every other pusher off these pushes until they are
    settled, or until the lease runs out should this process die while sending.
    """
    until = now + timedelta(seconds=lease)
    async with uow:
        won = await uow.session.execute(
            update(OcpiPush)
            .where(OcpiPush.id == head.id, _pending(), OcpiPush.available_at <= now)
            .values(available_at=until)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(won) != 1:
            await uow.rollback()
            return []
        rows = list(
            await uow.session.scalars(
                select(OcpiPush)
                .where(
                    OcpiPush.partner_id == head.partner_id,
                    OcpiPush.object_key == head.object_key,
                    _pending(),
                )
                .order_by(OcpiPush.id)
                .limit(GATHER_LIMIT)
            )
        )
        for row in rows:
            row.available_at = until
        await uow.commit()
    return rows


async def settle(
    uow: UnitOfWork,
    ids: Sequence[int],
    *,
    outcome: str,
    now: datetime,
    response: dict[str, Any] | None = None,
    error: str | None = None,
    renew: Sequence[int] = (),
    lease: float = 0.0,
) -> None:
    """Settle the pushes ``ids`` one request carried.

    ``SENT``: the newest of them is SENT (with ``response``, what the partner answered that
    we keep), the others SUPERSEDED. ``FAILED`` or ``DROPPED``: all of them, with ``error``.
    ``renew`` extends the lease of the pushes still to be sent by ``lease`` seconds.
    """
    if not ids:
        return
    async with uow:
        rows = list(
            await uow.session.scalars(
                select(OcpiPush).where(OcpiPush.id.in_(list(ids))).order_by(OcpiPush.id)
            )
        )
        # Settled meanwhile (by a pusher whose lease ran out before ours): left as they are.
        live = [row for row in rows if row.done_at is None]
        for row in live:
            row.done_at = now
            if outcome == SENT:
                row.outcome = SENT if row is live[-1] else SUPERSEDED
                row.response = response if row is live[-1] else None
            else:
                row.outcome = outcome
                row.last_error = error
            if outcome in (SENT, FAILED):
                row.attempts += 1
        if renew:
            await uow.session.execute(
                update(OcpiPush)
                .where(OcpiPush.id.in_(list(renew)), _pending())
                .values(available_at=now + timedelta(seconds=lease))
                .execution_options(synchronize_session=False)
            )
        await uow.commit()


async def retry_later(
    uow: UnitOfWork, ids: Sequence[int], *, error: str, available_at: datetime
) -> int:
    """Count an attempt on the pushes ``ids`` and make them wait; return the attempts made."""
    attempts = 0
    async with uow:
        rows = await uow.session.scalars(
            select(OcpiPush).where(OcpiPush.id.in_(list(ids)), _pending())
        )
        for row in rows:
            row.attempts += 1
            row.last_error = error[:2000]
            row.available_at = available_at
            attempts = max(attempts, row.attempts)
        await uow.commit()
    return attempts


def _held_prefix(country_code: str, party_id: str) -> str:
    return f"on hold for {country_code.upper()}*{party_id.upper()}: "


def held_reason(country_code: str, party_id: str, status: str) -> str:
    """The ``last_error`` of a push held for a party its hub reports ``status``."""
    return (
        f"{_held_prefix(country_code, party_id)}the hub reports the party {status} "
        "(HubClientInfo); sent once it reports it CONNECTED"
    )


async def on_hold(
    uow: UnitOfWork,
    ids: Sequence[int],
    *,
    country_code: str,
    party_id: str,
    status: str,
    available_at: datetime,
) -> None:
    """Hold the pushes ``ids`` for a party its hub does not connect: no attempt counted.

    They stay pending; ``release_held`` (the party CONNECTED again) or ``available_at``
    (a recheck) makes them due.
    """
    async with uow:
        await uow.session.execute(
            update(OcpiPush)
            .where(OcpiPush.id.in_(list(ids)), _pending())
            .values(
                available_at=available_at,
                last_error=held_reason(country_code, party_id, status),
            )
            .execution_options(synchronize_session=False)
        )
        await uow.commit()


async def release_held(
    uow: UnitOfWork, partner_id: int, *, country_code: str, party_id: str, now: datetime
) -> int:
    """Make the hub's pushes held for the party due now; count them (``uow`` entered)."""
    released = await uow.session.execute(
        update(OcpiPush)
        .where(
            OcpiPush.partner_id == partner_id,
            _pending(),
            # CiStrings may hold "%" or "_": escaped, so only this party's holds match.
            OcpiPush.last_error.startswith(_held_prefix(country_code, party_id), autoescape=True),
        )
        .values(available_at=now, last_error=None)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(released)


async def release(uow: UnitOfWork, ids: Sequence[int], *, now: datetime) -> None:
    """Give up the lease on pushes ``ids`` not settled (shutting down): due again now."""
    if not ids:
        return
    async with uow:
        await uow.session.execute(
            update(OcpiPush)
            .where(OcpiPush.id.in_(list(ids)), _pending())
            .values(available_at=now)
            .execution_options(synchronize_session=False)
        )
        await uow.commit()


async def sent_response(uow: UnitOfWork, partner_id: int, object_key: str) -> dict[str, Any] | None:
    """What the partner answered to the newest SENT push of the object (``uow`` entered)."""
    return await uow.session.scalar(
        select(OcpiPush.response)
        .where(
            OcpiPush.partner_id == partner_id,
            OcpiPush.object_key == object_key,
            OcpiPush.outcome == SENT,
        )
        .order_by(OcpiPush.id.desc())
        .limit(1)
    )


async def make_available(
    uow: UnitOfWork,
    partner_id: int,
    *,
    now: datetime,
    reopen_failed: bool,
    lease: float = LEASE,
) -> int:
    """Make a partner's waiting pushes due now (and FAILED ones pending again); count them.

    A push whose ``available_at`` is less than ``lease`` seconds ahead may be on its way
    to the partner right now (leased by a pusher), so it is left alone; it is due soon
    anyway. Raise ``NotFound`` for an unknown partner.
    """
    async with uow:
        if await uow.session.get(OcpiPartner, partner_id) is None:
            raise NotFound("partner", partner_id)
        waiting = await uow.session.execute(
            update(OcpiPush)
            .where(
                OcpiPush.partner_id == partner_id,
                _pending(),
                OcpiPush.available_at > now + timedelta(seconds=lease),
            )
            .values(available_at=now)
            .execution_options(synchronize_session=False)
        )
        count = _rowcount(waiting)
        if reopen_failed:
            failed = await uow.session.execute(
                update(OcpiPush)
                .where(OcpiPush.partner_id == partner_id, OcpiPush.outcome == FAILED)
                .values(done_at=None, outcome=None, available_at=now)
                .execution_options(synchronize_session=False)
            )
            count += _rowcount(failed)
        await uow.commit()
    return count


# --------------------------------------------------------------------------- full sync


@dataclass(frozen=True, slots=True)
class FullSync:
    """What ``queue_full_sync`` queued for one partner."""

    tariffs: int = 0
    locations: int = 0
    transactions: int = 0
    """Transactions it took: one per batch of at most ``SYNC_BATCH`` objects."""


def _receiver_urls(endpoints: Mapping[str, Any] | None) -> dict[str, str]:
    urls = {module: ((endpoints or {}).get(module) or {}).get("RECEIVER") for module in _MODULES}
    return {module: url for module, url in urls.items() if isinstance(url, str) and url}


async def receiver_urls(uow: UnitOfWork, partner_id: int) -> dict[str, str]:
    """A registered partner's ``{module: RECEIVER url}`` (empty for any other partner)."""
    async with uow:
        partner = await uow.session.get(OcpiPartner, partner_id)
        if partner is None or partner.state != "REGISTERED":
            return {}
        return _receiver_urls(partner.endpoints)


async def queue_full_sync(
    uow: Callable[[], UnitOfWork],
    partner_id: int,
    *,
    known: Mapping[str, str] | None = None,
    batch: int = SYNC_BATCH,
) -> FullSync:
    """Queue a whole PUT of every current tariff and every location a partner may see.

    Called when a partner's registration completes (either side initiated it), so it
    holds our data from the start, not only what changes later. Tariffs go first (with a
    tariffs RECEIVER): connectors name them. Then locations (with a locations RECEIVER),
    those ``cpms.publication`` shows the partner, as its GETs and the fan-out do. They
    are ordinary pushes ("tariff", "location" without fields: a whole PUT) through the
    queue, so order per object, retries and coalescing with what fan-out queues meanwhile
    all hold; and a session or CDR at a location waits for that location's push
    (``due_heads``).

    ``known``: after a credentials update, the partner's RECEIVER URLs before it. Only a
    module whose URL is new or changed is pushed again: an endpoint that moved (another
    host, another version) holds nothing of ours, while a rotation of tokens alone, advised
    monthly (CHECKLIST 1.3), loses nothing at the partner, and resending every location
    each time would be pure waste (the partner may always pull, CHECKLIST 1.12).

    ``batch`` objects per transaction, read by id (keyset, so nothing is skipped or taken
    twice while objects are added): 10,000 locations are 20 short transactions, not one
    long one. ``uow`` makes one unit of work per transaction.
    """
    urls = await receiver_urls(uow(), partner_id)
    modules = [
        module
        for module in ("tariffs", "locations")
        if module in urls and (known is None or known.get(module) != urls[module])
    ]
    counts = dict.fromkeys(modules, 0)
    transactions = 0
    for module in modules:
        after: str | None = None
        while True:
            async with uow() as work:
                if module == "tariffs":
                    ids = await current_tariff_ids(work, after=after, limit=batch)
                else:
                    ids = await visible_location_ids(work, partner_id, after=after, limit=batch)
                if not ids:
                    break
                now = utcnow()
                await work.session.execute(
                    insert(OcpiPush), [_full_push(partner_id, module, id, now) for id in ids]
                )
                await work.commit()
            transactions += 1
            counts[module] += len(ids)
            if len(ids) < batch:
                break
            after = ids[-1]
            await asyncio.sleep(0)  # short transactions, and the node's other work between
    return FullSync(counts.get("tariffs", 0), counts.get("locations", 0), transactions)


def _full_push(partner_id: int, module: str, object_id: str, now: datetime) -> dict[str, Any]:
    """The row of one push of a full sync (``payload.sync`` tells the operator why)."""
    if module == "tariffs":
        key, kind, payload = f"tariff:{object_id}", "tariff", {"tariff_id": object_id}
    else:
        key, kind = f"location:{object_id}", "location"
        payload = {"location_id": object_id, "fields": []}  # no fields: the whole Location
    return {
        "partner_id": partner_id,
        "object_key": key,
        "kind": kind,
        "payload": payload | {"sync": True},
        "background": True,
        "created_at": now,
        "available_at": now,
        "attempts": 0,
    }


# --------------------------------------------------------------------------- operator view


@dataclass(frozen=True, slots=True)
class PartnerBacklog:
    """A partner and what it still has to receive."""

    partner: OcpiPartner
    pending: int
    failed: int
    oldest_pending: datetime | None
    last_error: str | None


async def backlog(
    uow: UnitOfWork, *, offset: int = 0, limit: int | None = None
) -> Page[PartnerBacklog]:
    """Partners, oldest first, one page, each with its backlog (pending, failed, errors)."""
    async with uow:
        partners = await fetch_page(
            uow.session, select(OcpiPartner).order_by(OcpiPartner.id), offset=offset, limit=limit
        )
        ids = [partner.id for partner in partners.items]
        pending = {
            partner_id: (count, oldest)
            for partner_id, count, oldest in (
                await uow.session.execute(
                    select(OcpiPush.partner_id, func.count(), func.min(OcpiPush.created_at))
                    .where(_pending(), OcpiPush.partner_id.in_(ids))
                    .group_by(OcpiPush.partner_id)
                )
            ).all()
        }
        failed: dict[int, int] = {
            partner_id: count
            for partner_id, count in (
                await uow.session.execute(
                    select(OcpiPush.partner_id, func.count())
                    .where(OcpiPush.outcome == FAILED, OcpiPush.partner_id.in_(ids))
                    .group_by(OcpiPush.partner_id)
                )
            ).all()
        }
        items = []
        for partner in partners.items:
            count, oldest = pending.get(partner.id, (0, None))
            refused = failed.get(partner.id, 0)
            items.append(
                PartnerBacklog(
                    partner=partner,
                    pending=count,
                    failed=refused,
                    oldest_pending=oldest,
                    last_error=await _last_error(uow, partner.id) if count or refused else None,
                )
            )
    return Page(items=items, total=partners.total, offset=partners.offset, limit=partners.limit)


async def _last_error(uow: UnitOfWork, partner_id: int) -> str | None:
    # The push waiting longest ahead failed last; without one, the latest refusal.
    waiting = await uow.session.scalar(
        select(OcpiPush.last_error)
        .where(OcpiPush.partner_id == partner_id, _pending(), OcpiPush.last_error.is_not(None))
        .order_by(OcpiPush.available_at.desc(), OcpiPush.id.desc())
        .limit(1)
    )
    if waiting is not None:
        return waiting
    return await uow.session.scalar(
        select(OcpiPush.last_error)
        .where(OcpiPush.partner_id == partner_id, OcpiPush.outcome == FAILED)
        .order_by(OcpiPush.done_at.desc(), OcpiPush.id.desc())
        .limit(1)
    )


async def list_pushes(
    uow: UnitOfWork,
    partner_id: int,
    *,
    state: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> Page[OcpiPush]:
    """One page of a partner's pushes: pending ones oldest first, the others newest first."""
    if state is not None and state not in PUSH_STATES:
        raise InvalidRequest(f"state must be one of {', '.join(PUSH_STATES)}, not {state!r}")
    query: Select[Any] = select(OcpiPush).where(OcpiPush.partner_id == partner_id)
    if state == "pending":
        query = query.where(_pending()).order_by(OcpiPush.id)
    else:
        if state is not None:
            query = query.where(OcpiPush.outcome == state.upper())
        query = query.order_by(OcpiPush.id.desc())
    async with uow:
        if await uow.session.get(OcpiPartner, partner_id) is None:
            raise NotFound("partner", partner_id)
        return await fetch_page(uow.session, query, offset=offset, limit=limit)


# --------------------------------------------------------------------------- internals


def _dialect(uow: UnitOfWork) -> str:
    bind = uow.session.bind
    return bind.dialect.name if bind is not None else ""


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
