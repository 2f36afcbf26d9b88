"""The pusher: delivers what every partner must hear of, from the outbox, in order per object.

One background loop per node. Each round it fans the outbox out into per-partner pushes
(``cpms.push_queue.fan_out``), then starts one delivery task per object that is due, at
most ``PER_PARTNER`` at once in each partner's two lanes (a slow partner holds up nobody
else; a full sync, the background lane, holds up none of the partner's live pushes; a
push queued meanwhile starts as soon as one of its lane's requests is answered). Per
object, the oldest pending push that is due is claimed together with every other pending
push of that object (a lease, so no other node sends them meanwhile),
``ocpi_api.push_bodies.plan`` renders the few requests that bring the partner up to date
from the database as it is now, and each answer settles the pushes it carried:

- HTTP 2xx with OCPI 1xxx: SENT (the others SUPERSEDED);
- "unknown object" (HTTP 404, OCPI 2003 or 2004) to a PATCH or a sub-object PUT: the
  partner's copy is asked for with a GET of the same URL (CHECKLIST 1.5, 2.2, 3.2). Absent
  (HTTP 404, OCPI 2003/2004, no data): the whole object is PUT, carrying every push
  gathered. Present: the whole object is PUT too (``_deliver_object`` says why). A GET
  that fails as below (unreachable, 5xx, 3xxx, ...) is a transient failure: everything
  is tried again later, from the PATCH;
- OCPI 2xxx (or HTTP 400/422): our payload was refused; FAILED, kept for the operator,
  not retried unless the operator asks (``POST /api/ocpi/partners/{id}/pushes/retry``);
- unreachable, timeout, HTTP 5xx, OCPI 3xxx or hub 4xxx (CHECKLIST 1.7, 10): tried
  again later, after an exponential backoff from 1 s up to ``retry_max`` with jitter;
  the whole partner pauses too, so a partner that is down is probed by one request at a
  time, not hammered by one per object. Its first success makes everything it missed due
  at once.

Order across objects is the queue's (``cpms.push_queue.due_heads``): a partner gets a
location before a session or CDR there, and a session's end before its CDR.

Addressing and hubs (CHECKLIST 1.10, 9). Every push carries ``OCPI-from-*`` (us) and
``OCPI-to-*``. A request with a recipient party (``Step.to_party``: a session's or CDR's
token party, a command result's) is addressed to that party when the partner may speak
for it (one of its roles, or a client its hub reported) or is a hub (which routes by the
TO header, "via hub (addressed)"); otherwise, and for locations and tariffs (for everyone:
to a hub, a broadcast push), it is addressed to the partner's own first party. Through a
hub, a push addressed to a client the hub reports OFFLINE, SUSPENDED or PLANNED
(``cpms.hub_clients.connection_status``, that hub's word) is held
(``cpms.push_queue.on_hold``): not sent, no attempt counted, not FAILED, not DROPPED, the
partner not paused; everything of that object waits with it (and a CDR waits for its
session). It goes out once the hub reports the party CONNECTED (its ClientInfo PUT
releases it and wakes us; our pull of its list releases it, the next round sends it), else
it is looked at again every ``HOLD_RECHECK`` seconds.
A party the hub never reported is sent to. The checklist says "OFFLINE: don't send, don't
queue; they resync by GET"; we keep them instead, so nothing of a session or CDR is lost
should the party not resync (its GETs still answer everything).

Rounds run when a commit recorded events some partner receives (the pusher subscribes to
the unit of work, and knows from the last fan-out which modules have receivers), when
``wake()`` is called (registration, commands, the operator), when a push becomes due, and
at least every second (outbox rows other nodes or processes wrote, a partner registered
elsewhere). Without any registered partner (issue 8) a commit wakes nothing, and the
second's round is a fan-out that marks the outbox processed in one statement and reads
no push: nothing can be due. Starting resumes whatever a previous run left pending;
stopping lets the requests on their way finish (a few seconds at most) and hands the rest
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cpms.errors import NotFound
from cpms.events import DomainEvent
from cpms.hub_clients import connection_status
from cpms.model import OcpiPush, utcnow
from cpms.partners import PartnerLink, partner_link
from cpms.push_queue import (
    DROPPED,
    FAILED,
    FAN_OUT_BATCH,
    HOLD_RECHECK,
    LEASE,
    SENT,
    DueHead,
    Lane,
    claim,
    due_heads,
    fan_out,
    make_available,
    next_due,
    on_hold,
    release,
    retry_later,
    settle,
    topic_module,
)
from cpms.secrets import TokenVault
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory
from ocpi_api.client import OcpiClient, OcpiReply, PartnerUnreachable
from ocpi_api.push_bodies import Step, Undeliverable, plan, whole

__all__ = ["Pusher"]

log = logging.getLogger("ocpi_api.push")

POLL_INTERVAL = 1.0
"""Seconds between rounds when nothing wakes the pusher (outbox rows of other nodes)."""
PER_PARTNER = 4
"""Objects of one partner's lane (live or background) on their way at once."""
STOP_GRACE = 5.0
"""Seconds ``stop()`` lets requests on their way finish before cancelling them."""
LEASE_MARGIN = 15.0
"""Seconds a lease outlives the request timeout, for the database work around it."""
HOLDING_STATUSES = frozenset({"OFFLINE", "SUSPENDED", "PLANNED"})
"""HubClientInfo ConnectionStatus values that hold a push to the party (CHECKLIST 9)."""


class Verdict(enum.Enum):
    """What an answer means for the pushes a request carried."""

    OK = "ok"
    UNKNOWN = "unknown"
    """The partner lacks the object a partial request was about."""
    REFUSED = "refused"
    TRANSIENT = "transient"


def judge(step: Step, reply: OcpiReply) -> Verdict:
    """Classify a partner's answer to ``step`` (CHECKLIST 1.7, 1.8, 10)."""
    if reply.ok:
        return Verdict.OK
    if step.method == "DELETE" and (
        reply.http_status == 404 or (200 <= reply.http_status < 300 and reply.status_code is None)
    ):
        return Verdict.OK  # gone (already), maybe said with a bare 204: what the DELETE wanted
    if not step.whole and (reply.http_status == 404 or reply.status_code in _UNKNOWN_CODES):
        return Verdict.UNKNOWN
    code = reply.status_code or 0
    if 2000 <= code < 3000 or (code == 0 and reply.http_status in (400, 422)):
        return Verdict.REFUSED
    # 3xxx server and 4xxx hub errors, HTTP 5xx, 401/403 (credentials being changed),
    # 404 of a whole object (a wrong endpoint), anything else: worth another try later.
    return Verdict.TRANSIENT


_UNKNOWN_CODES = (2003, 2004)
"""OCPI "unknown Location" and "unknown Token", which receivers use for any unknown object."""


def held(reply: OcpiReply) -> bool | None:
    """Whether the partner holds the object it answered a GET for (CHECKLIST 1.5, 1.7).

    ``True``: HTTP 2xx, OCPI 1xxx, with the object. ``False``: HTTP 404 or OCPI 2003/2004
    (both are used for "unknown"), a success without data, or any answer that cannot say
    (405 or another 2xxx: no GET there), where a whole PUT is the repair all the same.
    ``None``: it failed as a transient failure does (``judge``): ask again later.
    """
    if reply.ok:
        return bool(reply.data)
    if reply.http_status == 404 or reply.status_code in _UNKNOWN_CODES:
        return False
    code = reply.status_code or 0
    transient = reply.http_status >= 500 and reply.http_status != 501  # 501: no GET there
    if code >= 3000 or transient or reply.http_status in (401, 403, 408, 429):
        return None
    return False


def addressee(link: PartnerLink, step: Step) -> tuple[str, str] | None:
    """The ``OCPI-to-*`` party of ``step`` to ``link`` (the module docstring's rule)."""
    party = step.to_party
    if party is not None and (link.hub or link.owns(*party)):
        return party
    return link.party


def _own_party(link: PartnerLink, party: tuple[str, str]) -> bool:
    return any((cc, pid) == party for _, cc, pid in link.roles)


def _describe(step: Step, reply: OcpiReply) -> str:
    message = f": {reply.message}" if reply.message else ""
    return f"{step.method} {step.url}: HTTP {reply.http_status}, OCPI {reply.status_code}{message}"


@dataclass
class _PartnerHealth:
    """How a partner answered lately (this node's view)."""

    failures: int = 0
    """Transient failures in a row; more than 0: probe with one request at a time."""
    paused_until: float = 0.0
    """Event-loop time before which nothing is sent to the partner."""


class Pusher:
    """Turns outbox events into per-partner pushes and sends them; see the module docstring."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        vault: TokenVault,
        client: OcpiClient,
        *,
        retry_max: float,
        base_url: object = None,
    ) -> None:
        self.uow, self.vault, self.client, self.retry_max = uow, vault, client, retry_max
        # A lease must outlive the request it covers.
        self.lease = max(LEASE, float(getattr(client, "timeout", 15.0)) + LEASE_MARGIN)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._health: dict[int, _PartnerHealth] = {}
        self._held: set[int] = set()
        """Pushes leased by this pusher and not settled yet (handed back on stop)."""
        self._flying: dict[Lane, dict[str, asyncio.Task[None]]] = {}
        """Per partner's lane, the objects on their way (by object key) and their tasks."""
        self._partners = True
        """Some partner was registered at the last fan-out; False: no push can be due."""
        self._receives: frozenset[str] | None = None
        """The modules some partner receives, as of the last fan-out (None: not known yet)."""
        uow.subscribe(self._committed)

    async def _committed(self, events: Sequence[DomainEvent]) -> None:
        # A commit with events left outbox rows: fan them out now, not at the next poll,
        # if some partner receives any of them. The others wait for the next round (within
        # a second), which marks them processed in one statement when no partner is
        # registered: a node without partners pays no transaction per commit (issue 8).
        receives = self._receives
        if receives is None or any(topic_module(event.topic) in receives for event in events):
            self._wakeup.set()

    def wake(self) -> None:
        """Deliver soon: something was queued, or the operator made pushes due again."""
        for health in self._health.values():
            health.paused_until = 0.0  # one probe each; a partner still down pauses again
        self._wakeup.set()

    async def start(self) -> None:
        """Start delivering in the background."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="ocpi-pusher")

    async def stop(self) -> None:
        """Stop delivering; what is not sent stays queued."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wakeup.set()
        running = [task, *(one for lane in self._flying.values() for one in lane.values())]
        try:
            async with asyncio.timeout(STOP_GRACE):
                await asyncio.shield(asyncio.gather(*running, return_exceptions=True))
        except TimeoutError:
            for one in running:
                one.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        held, self._held = list(self._held), set()
        if held:
            try:
                await release(self.uow(), held, now=utcnow())
            except Exception:
                log.exception(
                    "could not hand back %d leased pushes; due when leases end", len(held)
                )

    # The loop

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            try:
                more = await self._round()
            except Exception:
                log.exception("push round failed; trying again in %.0f s", POLL_INTERVAL)
                more = False
            if self._stopping:
                break
            if more or self._wakeup.is_set():
                continue  # a delivery ended or a commit came meanwhile: no need to ask when
            delay = POLL_INTERVAL
            with contextlib.suppress(Exception):
                delay = await self._idle_delay()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()

    def _paused(self) -> list[int]:
        now = asyncio.get_running_loop().time()
        return [pid for pid, health in self._health.items() if health.paused_until > now]

    async def _idle_delay(self) -> float:
        """Seconds until something may be due: a push, or a paused partner's next probe."""
        if not self._partners:
            return POLL_INTERVAL  # nobody registered: nothing can be due, nothing to ask
        loop_now = asyncio.get_running_loop().time()
        delays = [POLL_INTERVAL]
        due = await next_due(self.uow(), skip=self._paused(), busy=self._full_lanes())
        if due is not None:
            delays.append((due - utcnow()).total_seconds())
        delays += [
            h.paused_until - loop_now for h in self._health.values() if h.paused_until > loop_now
        ]
        return max(0.01, min(delays))

    async def _round(self) -> bool:
        """Fan out the outbox, start delivering what is due; whether the outbox has more.

        Every delivery that ends wakes the pusher for the next round, so nothing else
        needs a round at once: a lane with room got every head that was due.
        """
        more = True
        for _ in range(50):  # bounded: a busy outbox must not starve delivery
            result = await fan_out(self.uow())
            if self._stopping:
                return False
            if not result.contended:
                self._partners, self._receives = result.partners, result.receives
            if result.events < FAN_OUT_BATCH and not result.contended:
                more = False
                break
        if not self._partners:
            return more  # nobody registered: no push can be due, none is looked for
        heads = await due_heads(
            self.uow(),
            now=utcnow(),
            per_partner=PER_PARTNER,
            skip=self._paused(),
            busy=self._full_lanes(),
        )
        for head in heads:  # live heads first
            lane = (head.partner_id, head.background)
            flying = self._flying.setdefault(lane, {})
            if head.object_key in flying or len(flying) >= self._room(lane):
                continue  # on its way already (not claimed yet), or the lane is full
            # One task per object, at most PER_PARTNER per lane: a slow partner holds up
            # nobody else, a full sync (the background lane) holds up none of the
            # partner's live pushes, and a push queued meanwhile starts as soon as any
            # of its lane's requests is answered.
            task = asyncio.create_task(self._deliver(head), name=f"ocpi-push-{head.id}")
            flying[head.object_key] = task
            task.add_done_callback(lambda done, head=head: self._delivered(head, done))
        return more

    def _room(self, lane: Lane) -> int:
        """How many objects of ``lane`` may be on their way at once."""
        partner_id, background = lane
        other = self._flying.get((partner_id, not background))
        health = self._health.get(partner_id)
        if health is not None and health.failures:
            # Probing a partner that failed: one request at a time, not one per lane.
            return 0 if other else 1
        if background and other:
            # Live pushes on their way: the full sync goes on, one object at a time, so
            # that what changes now has the node (and the partner) to itself.
            return 1
        return PER_PARTNER

    def _full_lanes(self) -> list[Lane]:
        return [lane for lane in self._flying if len(self._flying[lane]) >= self._room(lane)]

    def _delivered(self, head: DueHead, task: asyncio.Task[None]) -> None:
        lane = (head.partner_id, head.background)
        self._flying.get(lane, {}).pop(head.object_key, None)
        if not task.cancelled() and task.exception() is not None:  # _deliver handles its own
            log.error("delivery to partner %d failed", head.partner_id, exc_info=task.exception())
        self._wakeup.set()  # its next objects may be due, or pushes queued meanwhile

    # One object

    async def _deliver(self, head: DueHead) -> None:
        pushes = await claim(self.uow(), head, now=utcnow(), lease=self.lease)
        if not pushes:
            return  # another pusher took it
        ids = [push.id for push in pushes]
        self._held.update(ids)
        try:
            await self._deliver_object(head.partner_id, pushes)
        except Exception as error:
            # A bug or the database: never lose the pushes, never spin on them.
            log.exception("delivering %s to partner %d failed", head.object_key, head.partner_id)
            await self._retry(pushes, ids, f"internal error: {type(error).__name__}: {error}")
        finally:
            self._held.difference_update(ids)

    async def _deliver_object(self, partner_id: int, pushes: list[OcpiPush]) -> None:
        by_id = {push.id: push for push in pushes}
        async with self.uow() as uow:
            try:
                link = await partner_link(uow, self.vault, partner_id)
                steps = await plan(uow, link, pushes)
            except (NotFound, Undeliverable) as why:
                reason = str(why) if isinstance(why, Undeliverable) else "partner not registered"
                log.info(
                    "dropping %d push(es) of %s: %s", len(pushes), pushes[0].object_key, reason
                )
                await settle(self.uow(), list(by_id), outcome=DROPPED, now=utcnow(), error=reason)
                return
            holding = await self._holding(uow, link, steps)
        if holding is not None:
            (country_code, party_id), status = holding
            log.info(
                "holding %d push(es) of %s for partner %d: the hub reports %s*%s %s",
                len(pushes), pushes[0].object_key, partner_id, country_code, party_id, status,
            )  # fmt: skip
            await on_hold(
                self.uow(), list(by_id), country_code=country_code, party_id=party_id,
                status=status, available_at=_later(HOLD_RECHECK),
            )  # fmt: skip
            return
        if not steps:  # nothing left to tell (cannot happen: every push is in a request)
            await settle(self.uow(), list(by_id), outcome=DROPPED, now=utcnow(), error="empty")
            return
        queue = list(steps)
        while queue:
            step = queue.pop(0)
            remaining = [i for later in queue for i in later.covers]
            verdict, reply, error = await self._send(link, step)
            if verdict is Verdict.OK:
                response = step.keep
                if step.keep_location_header:
                    response = {"location": _header(reply, "Location")}
                await settle(
                    self.uow(), step.covers, outcome=SENT, now=utcnow(), response=response,
                    renew=remaining, lease=self.lease,
                )  # fmt: skip
                await self._recovered(partner_id)
            elif verdict is Verdict.UNKNOWN:
                # CHECKLIST 1.5: "If a PATCH fails, the client should GET the object from the
                # receiver; if absent, PUT the full object." The PUT carries everything left.
                carried = sorted(set(step.covers) | set(remaining))
                holds, said = await self._holds(link, step.url, addressee(link, step))
                if holds is None:
                    log.warning("partner %d: %s; trying again later", partner_id, said)
                    await self._retry([by_id[i] for i in carried], carried, said)
                    self._failed(partner_id)
                    return
                # Present, yet the PATCH was refused as unknown: the object appeared since,
                # or the partner's copy lacks the part the PATCH named (some receivers answer
                # a GET of an EVSE with its location). The checklist says nothing of this
                # case. Sending the same PATCH again would most likely be refused again, and
                # a transient failure is retried forever, holding up every later push of the
                # object. A PUT of the whole current object is always allowed (1.5: PUT is a
                # full create or replace) and safe to repeat (10: "we may retry idempotent
                # PUTs"), and it leaves the partner with exactly our copy: PUT it as well.
                log.info(
                    "partner %d %s %s (%s): putting it whole",
                    partner_id, "holds" if holds else "lacks", pushes[0].object_key, said,
                )  # fmt: skip
                async with self.uow() as uow:
                    queue = [await whole(uow, link, [by_id[i] for i in carried])]
            elif verdict is Verdict.REFUSED:
                log.warning("partner %d refused %s", partner_id, error)
                await settle(
                    self.uow(), step.covers, outcome=FAILED, now=utcnow(), error=error,
                    renew=remaining, lease=self.lease,
                )  # fmt: skip
                await self._recovered(partner_id)
            else:
                carried = sorted(set(step.covers) | set(remaining))
                log.warning("partner %d: %s; trying again later", partner_id, error)
                await self._retry([by_id[i] for i in carried], carried, error or "failed")
                self._failed(partner_id)
                return

    @staticmethod
    async def _holding(
        uow: UnitOfWork, link: PartnerLink, steps: Sequence[Step]
    ) -> tuple[tuple[str, str], str] | None:
        """The hub's client these steps are for and its status, if that holds them."""
        if not link.hub:
            return None  # only a hub tells us how its clients are connected
        for party in {step.to_party for step in steps}:
            if party is None or _own_party(link, party):
                continue  # for the hub itself (a broadcast): never held
            status = await connection_status(uow, *party, partner_id=link.partner_id)
            if status in HOLDING_STATUSES:
                return party, status
        return None

    async def _holds(
        self, link: PartnerLink, url: str, to_party: tuple[str, str] | None
    ) -> tuple[bool | None, str]:
        """GET ``url`` of the partner: whether it holds the object (``held``), and its answer."""
        try:
            reply = await self.client.request(
                "GET", url, token=link.token, base64_encoded=link.auth_base64, to_party=to_party
            )
        except PartnerUnreachable as error:
            return None, f"GET {url}: {error}"
        message = f": {reply.message}" if reply.message else ""
        said = f"GET {url}: HTTP {reply.http_status}, OCPI {reply.status_code}{message}"
        return held(reply), said

    async def _send(
        self, link: PartnerLink, step: Step
    ) -> tuple[Verdict, OcpiReply | None, str | None]:
        try:
            reply = await self.client.request(
                step.method,
                step.url,
                token=link.token,
                base64_encoded=link.auth_base64,
                body=step.body,
                to_party=addressee(link, step),
            )
        except PartnerUnreachable as error:
            return Verdict.TRANSIENT, None, str(error)
        verdict = judge(step, reply)
        return verdict, reply, None if verdict is Verdict.OK else _describe(step, reply)

    # Backing off

    def _backoff(self, attempts: int) -> float:
        """Exponential from 1 s, at most ``retry_max``, with jitter (no thundering herd)."""
        delay = min(self.retry_max, 2.0 ** max(0, attempts - 1))
        return delay * random.uniform(0.75, 1.0)

    async def _retry(self, pushes: Sequence[OcpiPush], ids: Sequence[int], error: str) -> None:
        attempts = max((push.attempts for push in pushes), default=0) + 1
        await retry_later(
            self.uow(), ids, error=error, available_at=_later(self._backoff(attempts))
        )

    def _failed(self, partner_id: int) -> None:
        health = self._health.setdefault(partner_id, _PartnerHealth())
        health.failures += 1
        health.paused_until = asyncio.get_running_loop().time() + self._backoff(health.failures)

    async def _recovered(self, partner_id: int) -> None:
        health = self._health.get(partner_id)
        if health is None or not health.failures:
            return
        health.failures, health.paused_until = 0, 0.0
        # Back: what waited out long backoffs meanwhile is due now.
        count = await make_available(
            self.uow(), partner_id, now=utcnow(), reopen_failed=False, lease=self.lease
        )
        log.info("partner %d answers again; %d waiting push(es) due now", partner_id, count)
        self._wakeup.set()


def _header(reply: OcpiReply | None, name: str) -> str | None:
    """A header of the answer, its name compared case-insensitively (HTTP)."""
    headers = reply.headers if reply is not None else {}
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _later(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
