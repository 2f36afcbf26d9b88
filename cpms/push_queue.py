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

Other topics are marked processed and go nowhere.

**Delivery bookkeeping.** The pusher asks for ``due_heads`` (per partner and object, the
oldest pending push, if it is due), ``claim``s one (a lease on every pending push of that
object, so no other pusher sends them meanwhile), and settles what it gathered:
``settle`` (SENT, the rest SUPERSEDED; or FAILED; or DROPPED) or ``retry_later``.
``queue_callback`` queues a request to a URL a partner gave us (a command's
``response_url``), delivered with the same retries as every push. The operator's view:
``backlog``, ``list_pushes``, ``make_available``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, exists, func, select, update
from sqlalchemy.orm import aliased

from cpms.errors import InvalidRequest, NotFound
from cpms.model import Cdr, Location, OcpiPartner, OcpiPush, OutboxEntry, Session, utcnow
from cpms.pages import Page, fetch_page
from cpms.publication import visible_location
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "DROPPED",
    "FAILED",
    "FAN_OUT_BATCH",
    "LEASE",
    "PUSH_STATES",
    "SENT",
    "SUPERSEDED",
    "DueHead",
    "FanOut",
    "PartnerBacklog",
    "backlog",
    "claim",
    "due_heads",
    "fan_out",
    "list_pushes",
    "make_available",
    "next_due",
    "queue_callback",
    "release",
    "retry_later",
    "sent_response",
    "settle",
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


@dataclass
class _Targets:
    """Who receives what, read once per fan-out batch."""

    uow: UnitOfWork
    _receivers: dict[str, list[int]] = field(default_factory=dict)
    _locations: dict[str, Location | None] = field(default_factory=dict)
    _known: dict[tuple[int, str], bool] = field(default_factory=dict)
    _shown: dict[tuple[int, str], bool] = field(default_factory=dict)
    _partners: list[OcpiPartner] | None = None

    async def receivers(self, module: str) -> list[int]:
        """Registered partners with a RECEIVER endpoint of ``module``, by id."""
        if module not in self._receivers:
            if self._partners is None:
                self._partners = list(
                    await self.uow.session.scalars(
                        select(OcpiPartner)
                        .where(OcpiPartner.state == "REGISTERED")
                        .order_by(OcpiPartner.id)
                    )
                )
            self._receivers[module] = [
                partner.id
                for partner in self._partners
                if ((partner.endpoints or {}).get(module) or {}).get("RECEIVER")
            ]
        return self._receivers[module]

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


async def _recipients(targets: _Targets, entry: OutboxEntry) -> tuple[str, str, list[int]]:
    """The object key, push kind and partners of one outbox row (no partners: ignore it)."""
    topic, payload = entry.topic, entry.payload or {}
    if topic in _LOCATION_KINDS:
        key = f"location:{payload['location_id']}"
        location = await targets.location(str(payload["location_id"]))
        if location is None:
            return key, _LOCATION_KINDS[topic], []
        # Those who may see it (``cpms.publication``, as for their GETs), and those who
        # have it already: a location no longer shown must reach them unpublished.
        partners = [
            partner_id
            for partner_id in await targets.receivers("locations")
            if await targets.shows(partner_id, location) or await targets.knows(partner_id, key)
        ]
        return key, _LOCATION_KINDS[topic], partners
    if topic == "tariff.changed":
        kind = "tariff_delete" if payload.get("retired") else "tariff"
        return f"tariff:{payload['tariff_id']}", kind, await targets.receivers("tariffs")
    if topic in _SESSION_KINDS:
        key = f"session:{payload['session_id']}"
        session = await targets.uow.session.get(Session, payload["session_id"])
        owner = session.partner_id if session is not None else None
        partners = [p for p in await targets.receivers("sessions") if p == owner]
        return key, _SESSION_KINDS[topic], partners
    if topic == "cdr.issued":
        key = f"cdr:{payload['cdr_id']}"
        cdr = await targets.uow.session.get(Cdr, payload["cdr_id"])
        payer = cdr.partner_id if cdr is not None else None
        return key, "cdr", [p for p in await targets.receivers("cdrs") if p == payer]
    return "", "", []


async def fan_out(uow: UnitOfWork, *, limit: int = FAN_OUT_BATCH) -> FanOut:
    """Turn up to ``limit`` outbox rows into pushes and mark them processed, in one go."""
    now = utcnow()
    async with uow:
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
            return FanOut(0, 0)
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
            return FanOut(0, 0, contended=True)
        targets = _Targets(uow)
        queued = 0
        for entry in entries:
            key, kind, partners = await _recipients(targets, entry)
            for partner_id in partners:
                uow.session.add(
                    OcpiPush(
                        partner_id=partner_id,
                        object_key=key,
                        kind=kind,
                        payload=dict(entry.payload or {}),
                        created_at=entry.created_at,
                        available_at=now,
                        attempts=0,
                    )
                )
                targets.queued(partner_id, key)
                queued += 1
        await uow.commit()
    return FanOut(len(entries), queued)


def queue_callback(
    uow: UnitOfWork, *, partner_id: int, url: str, body: dict[str, Any], object_key: str
) -> OcpiPush:
    """Queue ``POST url`` with ``body`` for ``partner_id`` (``uow`` entered; commit after)."""
    now = utcnow()
    push = OcpiPush(
        partner_id=partner_id,
        object_key=object_key,
        kind="callback",
        payload={"url": url, "body": body},
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


def _pending() -> Any:
    return OcpiPush.done_at.is_(None)


def _is_head() -> Any:
    """No older push of the same partner and object is pending (in order per object)."""
    older = aliased(OcpiPush)
    return ~exists().where(
        older.partner_id == OcpiPush.partner_id,
        older.object_key == OcpiPush.object_key,
        older.done_at.is_(None),
        older.id < OcpiPush.id,
    )


async def due_heads(
    uow: UnitOfWork, *, now: datetime, per_partner: int = 25, skip: Sequence[int] = ()
) -> list[DueHead]:
    """Per partner and object, the oldest pending push if it is due; oldest first.

    A push waits while an older push of the same object is pending (in order per
    object). At most ``per_partner`` objects of each partner, so a partner catching up on
    a long backlog does not hold up the others; partners in ``skip`` (backing off) are
    left out.
    """
    due = [_pending(), OcpiPush.available_at <= now, _is_head()]
    if skip:
        due.append(OcpiPush.partner_id.not_in(list(skip)))
    heads: list[DueHead] = []
    async with uow:
        partners = await uow.session.scalars(
            select(OcpiPush.partner_id).where(*due).group_by(OcpiPush.partner_id)
        )
        for partner_id in list(partners):
            rows = await uow.session.execute(
                select(OcpiPush.id, OcpiPush.object_key)
                .where(*due, OcpiPush.partner_id == partner_id)
                .order_by(OcpiPush.id)
                .limit(per_partner)
            )
            heads += [DueHead(id, partner_id, key) for id, key in rows.all()]
    return sorted(heads, key=lambda head: head.id)


async def next_due(uow: UnitOfWork, *, skip: Sequence[int] = ()) -> datetime | None:
    """When the earliest object waiting to be sent becomes due (``None``: none waits)."""
    query = select(func.min(OcpiPush.available_at)).where(_pending(), _is_head())
    if skip:
        query = query.where(OcpiPush.partner_id.not_in(list(skip)))
    async with uow:
        return await uow.session.scalar(query)


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
