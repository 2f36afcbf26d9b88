"""A simulated station's life, the same for both OCPP versions.

``Station`` connects, boots (honouring Pending and Rejected and their retry interval), reports
its status, heartbeats, and runs transactions on its outlets with the physics of
``simulator.physics``. It reconnects with backoff when the connection drops. Transaction
messages go through a durable queue: while the station is offline they wait there and are
replayed in order once it is back and booted, so none is lost (OCPP 1.6 section 4.7, OCPP 2.0.1
E04). Status reports are not queued: after a reconnect the station reports how it is now.

The two dialects subclass it: ``simulator.v16.Station16`` and ``simulator.v201.Station201``
say how each step is spelled on the wire and answer the CSMS's calls. Statuses are kept in 1.6's
vocabulary (Available, Preparing, Charging, SuspendedEV, Finishing, Reserved, Unavailable,
Faulted); 2.0.1 maps them to its connector statuses when it reports.

What drives a station (a scenario, a test, a CSMS command) uses its verbs: ``plug_in``,
``authorize``, ``start_transaction``, ``stop_transaction``, ``unplug``, ``visit``; and the faults
of the moment: ``drop_connection``, ``go_offline``/``go_online``, ``send_malformed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.faults import Faults
from simulator.figures import Figures
from simulator.link import CallRefused, ConnectFailed, Link, LinkClosed, Reply, open_link
from simulator.ocppj import Call
from simulator.physics import Flow, Vehicle, advance, charge_power, random_vehicle
from simulator.signing import MeterSigner, SignedReading
from simulator.smart_charging import Profile, limit_w
from simulator.templates import ConnectorSpec, Template

__all__ = [
    "MeterSample",
    "Outlet",
    "QueuedMessage",
    "Station",
    "StationOptions",
    "Transaction",
    "TransactionRecord",
]

log = logging.getLogger("simulator")

RECONNECT_FIRST = 1.0
RECONNECT_MAX = 30.0
"""Reconnect backoff: doubling from the first wait up to this, each with jitter."""
SUBSTEP = 5.0
"""Energy is integrated in steps of at most this many seconds, so the taper is followed."""


@dataclass(frozen=True, slots=True)
class StationOptions:
    url: str
    """The CSMS's station endpoint without the id: ``ws://127.0.0.1:9000/ocpp``."""
    password: str | None = None
    """HTTP Basic password (Security Profile 1); None: no Authorization header."""
    call_timeout: float = 30.0
    """Seconds to wait for the answer to a CALL (and for the websocket to open)."""
    faults: Faults = field(default_factory=Faults)
    remote_visit: tuple[float, float] | None = None
    """After a remote start the driver leaves after a time in this range; None: stays."""


@dataclass(slots=True)
class Transaction:
    local_id: str
    """The station's own id: 2.0.1's transactionId; in 1.6 the queue's reference to it."""
    id_tag: str
    meter_start_wh: float
    started_at: datetime
    server_id: int | None = None
    """1.6: the transactionId the CSMS gave in its StartTransaction answer."""
    remote_start_id: int | None = None
    reservation_id: int | None = None
    seq_no: int = 0
    """2.0.1: the next TransactionEvent's seqNo."""
    trigger: str = "Authorized"
    vehicle: str = ""
    """The EV model charging, and its state of charge on arrival."""
    soc_start: float | None = None
    meter_stop_wh: float | None = None
    started_offline: bool = False

    def next_seq_no(self) -> int:
        seq = self.seq_no
        self.seq_no += 1
        return seq


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """A finished transaction as the station saw it, for tests to compare with the CSMS."""

    outlet: int
    transaction: Transaction
    energy_wh: float
    stop_reason: str

    @property
    def id_tag(self) -> str:
        return self.transaction.id_tag

    @property
    def server_id(self) -> int | None:
        """1.6: set once the CSMS answered the StartTransaction (perhaps after a replay)."""
        return self.transaction.server_id

    @property
    def local_id(self) -> str:
        return self.transaction.local_id


@dataclass(frozen=True, slots=True)
class MeterSample:
    at: datetime
    register_wh: float
    flow: Flow
    soc: float | None
    context: str
    """1.6 ReadingContext: ``Sample.Periodic``, ``Transaction.Begin``, ``Transaction.End``, ..."""
    signed: SignedReading | None = None


@dataclass(slots=True)
class Reservation:
    id: int
    id_tag: str
    expires: datetime
    expiry_task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class Outlet:
    """What a transaction runs on: a 1.6 connector, or a 2.0.1 EVSE and its connectors."""

    number: int
    connectors: tuple[ConnectorSpec, ...]
    register_wh: float
    status: str = "Available"
    vehicle: Vehicle | None = None
    connector_index: int = 0
    """Which of the outlet's connectors the vehicle is plugged into."""
    transaction: Transaction | None = None
    reservation: Reservation | None = None
    profiles: list[Profile] = field(default_factory=list)
    operative: bool = True
    inoperative_after_transaction: bool = False
    flow: Flow | None = None
    metered_at: float = 0.0
    """``time.monotonic()`` of the last energy integration."""
    meter_task: asyncio.Task[None] | None = None

    @property
    def connector(self) -> ConnectorSpec:
        return self.connectors[self.connector_index]


@dataclass(slots=True)
class QueuedMessage:
    action: str
    payload: Callable[[], dict[str, Any]]
    """Built when sent: a 1.6 StopTransaction needs the id the StartTransaction answer gave."""
    answered: Callable[[dict[str, Any]], None] | None = None
    durable: bool = True
    """Transaction messages survive a lost connection; status reports do not."""
    reorderable: bool = False
    """Fault ``out_of_order`` may swap it with a neighbour on replay."""


class Station(ABC):
    """One simulated station; see the module docstring."""

    subprotocol: str
    version: str

    def __init__(
        self,
        station_id: str,
        template: Template,
        options: StationOptions,
        *,
        figures: Figures | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.id = station_id
        self.template = template
        self.options = options
        self.faults = options.faults
        self.figures = figures if figures is not None else Figures()
        self.rng = rng if rng is not None else random.Random(station_id)
        self._seed = self.rng.getrandbits(64)
        self.serial = f"SIM{uuid.UUID(int=self.rng.getrandbits(128)).hex[:12].upper()}"
        self.firmware = template.firmware
        self.outlets = self._outlets(template)
        self.signer = MeterSigner(self.serial, self.rng) if template.signed_meter_values else None
        self.meter_interval = template.meter_interval
        self.heartbeat_interval = 300.0
        self.boot_status: str | None = None
        self._boot_interval = 0.0
        self._boot_accepted = asyncio.Event()
        self._link_gone = asyncio.Event()
        self.history: list[TransactionRecord] = []
        self.link: Link | None = None
        self.booted = asyncio.Event()
        self._online = asyncio.Event()
        self._online.set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._queue: deque[QueuedMessage] = deque()
        self._queue_changed = asyncio.Event()
        self._queue_empty = asyncio.Event()
        self._queue_empty.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._reboot = asyncio.Event()

    def _outlets(self, template: Template) -> dict[int, Outlet]:
        """Outlets by number; registers start at a believable odometer value."""
        return {
            number: Outlet(number, connectors, register_wh=float(self.rng.randrange(1, 5_000_000)))
            for number, connectors in enumerate(self._outlet_layout(template), 1)
        }

    def _outlet_layout(self, template: Template) -> list[tuple[ConnectorSpec, ...]]:
        """The connectors of each outlet (2.0.1: an EVSE's; 1.6 overrides: one each)."""
        return [evse.connectors for evse in template.evses]

    # The dialect -------------------------------------------------------------------------

    @abstractmethod
    def boot_payload(self) -> dict[str, Any]: ...

    @abstractmethod
    def status_messages(self, outlet: Outlet | None) -> list[tuple[str, dict[str, Any]]]:
        """The reports of ``outlet``'s status now (None: the station as a whole, if any)."""

    @abstractmethod
    def authorize_payload(self, id_tag: str) -> dict[str, Any]: ...

    @abstractmethod
    def authorized(self, answer: dict[str, Any]) -> bool: ...

    @abstractmethod
    def started(self, outlet: Outlet, tx: Transaction, sample: MeterSample) -> None:
        """Queue the report that ``tx`` started."""

    @abstractmethod
    def metered(self, outlet: Outlet, tx: Transaction, sample: MeterSample) -> None:
        """Queue a periodic meter report of ``tx``."""

    @abstractmethod
    def ended(self, outlet: Outlet, tx: Transaction, sample: MeterSample, reason: str) -> None:
        """Queue the report that ``tx`` ended; ``reason`` in 1.6's Reason vocabulary."""

    @abstractmethod
    async def handle(self, call: Call) -> Reply:
        """Answer a CSMS call; raise ``NotImplementedError`` for one not simulated."""

    # Running -----------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start connecting in the background; return the station's main task."""
        self._runner = asyncio.create_task(self.run(), name=f"station-{self.id}")
        return self._runner

    async def run(self) -> None:
        """Connect, boot, serve, and reconnect with backoff, until ``stop``."""
        backoff = RECONNECT_FIRST
        while not self._stopping:
            await self._online.wait()
            if self._stopping:
                break
            try:
                link = await open_link(
                    self.options.url, self.id, self.subprotocol,
                    password=self.options.password, handler=self.handle, figures=self.figures,
                    faults=self.faults, rng=self.rng, call_timeout=self.options.call_timeout,
                    spawn=self.spawn,
                )  # fmt: skip
            except ConnectFailed as error:
                self.figures.errors["connect"] += 1
                log.info(
                    "%s: cannot connect (%s); retrying in about %.0f s", self.id, error, backoff
                )
                await self._pause(backoff * self.rng.uniform(0.5, 1.5))
                backoff = min(backoff * 2, RECONNECT_MAX)
                continue
            self.figures.connects += 1
            backoff = RECONNECT_FIRST
            self.link = link
            self._link_gone.clear()
            try:
                await self._serve(link)
            except (LinkClosed, TimeoutError, CallRefused) as error:
                log.info("%s: connection ended (%s)", self.id, error or type(error).__name__)
            finally:
                if self.booted.is_set():
                    self.figures.station_online(-1)
                self.booted.clear()
                self.link = None
                await link.close()
                self._forget_reports()
                self._link_gone.set()
            if self._reboot.is_set():
                self._reboot.clear()
                await self._pause(1.0)
            elif not self._stopping and self._online.is_set():
                await self._pause(self.rng.uniform(0.2, 1.0) * RECONNECT_FIRST)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the station is stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def _serve(self, link: Link) -> None:
        await self._boot(link)
        self.booted.set()
        self.figures.station_online(+1)
        for outlet in [None, *self.outlets.values()]:
            for action, payload in self.status_messages(outlet):
                self._enqueue(QueuedMessage(action, _const(payload), durable=False), front=False)
        if self.faults.out_of_order:
            self._shuffle_queue()
        sender = asyncio.create_task(self._send_queue(link), name=f"queue-{self.id}")
        beats = asyncio.create_task(self._heartbeats(link), name=f"heartbeat-{self.id}")
        try:
            await link.closed.wait()
        finally:
            for task in (sender, beats):
                task.cancel()
            await asyncio.gather(sender, beats, return_exceptions=True)

    async def _boot(self, link: Link) -> None:
        """BootNotification until Accepted, waiting the interval Pending or Rejected asks.

        A boot the CSMS triggers while Pending (``send_boot`` from a TriggerMessage handler)
        and accepts ends the wait at once.
        """
        self._boot_accepted.clear()
        while True:
            await self.send_boot(link, self.boot_payload())
            if self._boot_accepted.is_set():
                return
            if self.boot_status == "Rejected":
                self.figures.errors["boot rejected"] += 1
            wait = self._boot_interval if self._boot_interval > 0 else 60.0
            accepted = asyncio.ensure_future(self._boot_accepted.wait())
            closed = asyncio.ensure_future(link.closed.wait())
            try:
                await asyncio.wait(
                    {accepted, closed}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                accepted.cancel()
                closed.cancel()
            if link.closed.is_set():
                raise LinkClosed("BootNotification")
            if self._boot_accepted.is_set():
                return

    async def send_boot(self, link: Link, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a BootNotification (at connect, or triggered) and take its answer."""
        answer = await link.call("BootNotification", payload)
        self.boot_status = str(answer.get("status"))
        self._boot_interval = float(answer.get("interval") or 0)
        if self.boot_status == "Accepted":
            if self._boot_interval > 0:
                self.heartbeat_interval = self._boot_interval
            self._boot_accepted.set()
        return answer

    async def _heartbeats(self, link: Link) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            with contextlib.suppress(CallRefused, TimeoutError):
                await link.call("Heartbeat", {})

    async def _send_queue(self, link: Link) -> None:
        """Send queued messages in order; one that fails for want of a link stays first."""
        while True:
            while self._queue:
                item = self._queue[0]
                try:
                    answer = await link.call(item.action, item.payload())
                except CallRefused as error:
                    log.warning("%s: %s refused: %s", self.id, item.action, error)
                    answer = None
                except TimeoutError:
                    # Perhaps it arrived and only the answer was lost; the CSMS must take the
                    # replay (FIELD-NOTES 8). Sent again on the next connection.
                    await link.close()
                    return
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
                if answer is not None and item.answered is not None:
                    item.answered(answer)
                if item.durable and self._chance(self.faults.duplicate_rate):
                    # Fault: the firmware sends it again under a new message id.
                    with contextlib.suppress(CallRefused, TimeoutError):
                        await link.call(item.action, item.payload())
            self._queue_changed.clear()
            self._queue_empty.set()
            await self._queue_changed.wait()

    def _enqueue(self, item: QueuedMessage, *, front: bool = False) -> None:
        if not item.durable and not self.booted.is_set():
            return  # a status report of a station that is not connected is simply not made
        if front:
            self._queue.appendleft(item)
        else:
            self._queue.append(item)
        self._queue_empty.clear()
        self._queue_changed.set()

    def _forget_reports(self) -> None:
        self._queue = deque(item for item in self._queue if item.durable)

    def _shuffle_queue(self) -> None:
        items = list(self._queue)
        for i in range(0, len(items) - 1, 2):
            if items[i].reorderable and items[i + 1].reorderable:
                items[i], items[i + 1] = items[i + 1], items[i]
        self._queue = deque(items)

    @property
    def queued(self) -> int:
        """Transaction messages waiting to be sent."""
        return len(self.queued_messages())

    async def delivered(self, within: float) -> bool:
        """Wait up to ``within`` seconds for the queue to be sent; return whether it was."""
        try:
            await asyncio.wait_for(self._queue_empty.wait(), within)
        except TimeoutError:
            return False
        return True

    def queued_messages(self) -> list[QueuedMessage]:
        """The transaction messages waiting to be sent, oldest first."""
        return [item for item in self._queue if item.durable]

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` as the station's own task, cancelled when the station stops."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if not isinstance(error, (LinkClosed, TimeoutError, CallRefused)):
                self.figures.errors[f"simulator {type(error).__name__}"] += 1
                log.error("%s: %s", self.id, error, exc_info=error)

    async def stop(self, *, finish_transactions: bool = True, grace: float = 10.0) -> None:
        """End running transactions (if asked), let the queue drain, and disconnect."""
        if finish_transactions:
            for outlet in self.outlets.values():
                if outlet.transaction is not None:
                    await self.stop_transaction(outlet.number, "Local")
            if self.link is not None and self.booted.is_set():
                await self.delivered(grace)
        self._stopping = True
        self._stopped.set()
        self._online.set()
        for outlet in self.outlets.values():
            if outlet.meter_task is not None:
                outlet.meter_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Whatever the runner waits on now (a connect, a boot answer), stopping does not wait.
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self.link is not None:
            await self.link.close()

    # Faults of the moment ----------------------------------------------------------------

    async def drop_connection(self) -> None:
        """Lose the connection at once, as a cut cable does; the station reconnects."""
        if self.link is not None:
            await self.link.abort()

    async def go_offline(self) -> None:
        """Disconnect and stay away; transaction messages queue until ``go_online``."""
        self._online.clear()
        if self.link is not None:
            await self.link.close()

    def go_online(self) -> None:
        self._online.set()

    async def send_malformed(self, text: str = '[2, "x", "Heartbeat", {') -> None:
        """Put a frame that is not OCPP-J on the wire."""
        if self.link is not None:
            await self.link.send_text(text)
            self.figures.sent["(malformed frame)"] += 1

    async def reboot(self, reason: str) -> None:
        """End transactions, drop the connection, and boot again (Reset, firmware update)."""
        for outlet in self.outlets.values():
            if outlet.transaction is not None:
                await self.stop_transaction(outlet.number, reason)
        # Let the ends reach the CSMS before the connection goes; what does not is replayed.
        if self.link is not None:
            await self.delivered(5.0)
        self._reboot.set()
        if self.link is not None:
            await self.link.close()
            # Done when the old connection is torn down: ``booted`` then means the new boot.
            await self._link_gone.wait()

    def derived_rng(self, purpose: str) -> random.Random:
        """A generator of its own for ``purpose`` (a driver at one outlet), seeded from the
        station's: its draws do not depend on how other tasks' draws interleave with it."""
        return random.Random(f"{self._seed}:{purpose}")

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    # Time and the meter ------------------------------------------------------------------

    def now(self) -> datetime:
        """The station's clock: ours plus the skew a fault gave it."""
        return datetime.now(UTC) + timedelta(seconds=self.faults.clock_skew)

    @staticmethod
    def timestamp(at: datetime) -> str:
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"

    def _limit(self, outlet: Outlet) -> float | None:
        tx = outlet.transaction
        return limit_w(
            outlet.profiles,
            now=self.now(),
            voltage_v=outlet.connector.voltage_v,
            phases=outlet.connector.phases,
            transaction_id=tx.local_id if tx else None,
            tx_started=tx.started_at if tx else None,
        )

    def _integrate(self, outlet: Outlet) -> None:
        """Move energy into the vehicle for the time since the last integration."""
        moment = time.monotonic()
        elapsed, outlet.metered_at = moment - outlet.metered_at, moment
        vehicle = outlet.vehicle
        if outlet.transaction is None or vehicle is None:
            outlet.flow = charge_power(outlet.connector, None, None)
            return
        limit = self._limit(outlet)
        while elapsed > 0:
            step = min(elapsed, SUBSTEP)
            outlet.flow = charge_power(outlet.connector, vehicle, limit)
            outlet.register_wh += advance(vehicle, outlet.flow.power_w, step)
            elapsed -= step
        outlet.flow = charge_power(outlet.connector, vehicle, limit)

    def sample(self, outlet: Outlet, context: str) -> MeterSample:
        """Read the outlet's meter now (integrating what flowed since the last reading)."""
        self._integrate(outlet)
        at = self.now()
        signed = None
        if self.signer is not None and outlet.transaction is not None:
            signed = self.signer.sign(
                at=at, register_wh=outlet.register_wh, id_tag=outlet.transaction.id_tag,
                context=context,
            )  # fmt: skip
        flow = outlet.flow or charge_power(outlet.connector, None, None)
        soc = outlet.vehicle.soc if outlet.vehicle is not None else None
        return MeterSample(at, outlet.register_wh, flow, soc, context, signed)

    async def _meter(self, outlet: Outlet) -> None:
        while outlet.transaction is not None:
            await asyncio.sleep(self.meter_interval)
            tx = outlet.transaction
            if tx is None:
                return
            sample = self.sample(outlet, "Sample.Periodic")
            self.metered(outlet, tx, sample)
            if outlet.vehicle is not None and outlet.vehicle.full and outlet.status == "Charging":
                self.set_status(outlet, "SuspendedEV")
            elif (
                outlet.flow is not None and outlet.flow.power_w == 0 and outlet.status == "Charging"
            ):
                self.set_status(outlet, "SuspendedEVSE")
            elif (
                outlet.flow is not None
                and outlet.flow.power_w > 0
                and outlet.status == "SuspendedEVSE"
            ):
                self.set_status(outlet, "Charging")

    def limits_changed(self, outlet: Outlet) -> None:
        """A charging profile changed: settle the energy so far under the old limit."""
        self._integrate(outlet)

    # Statuses ----------------------------------------------------------------------------

    def set_status(self, outlet: Outlet, status: str) -> None:
        if outlet.status == status:
            return
        outlet.status = status
        for action, payload in self.status_messages(outlet):
            self._enqueue(QueuedMessage(action, _const(payload), durable=False))

    def _idle_status(self, outlet: Outlet) -> str:
        if not outlet.operative:
            return "Unavailable"
        if outlet.reservation is not None:
            return "Reserved"
        return "Available" if outlet.vehicle is None else "Preparing"

    # Verbs -------------------------------------------------------------------------------

    def outlet(self, number: int) -> Outlet:
        try:
            return self.outlets[number]
        except KeyError:
            raise ValueError(f"{self.id} has no outlet {number}") from None

    def free_outlet(self) -> Outlet | None:
        """An outlet a new driver could use now."""
        for outlet in self.outlets.values():
            if outlet.operative and outlet.vehicle is None and outlet.reservation is None:
                return outlet
        return None

    def remote_start_outlet(self, id_tag: str) -> Outlet | None:
        """Where a remote start without an outlet goes: the one reserved for ``id_tag``, else
        one with a vehicle waiting, else a free one."""
        for outlet in self.outlets.values():
            reservation = outlet.reservation
            if reservation is not None and reservation.id_tag.lower() == id_tag.lower():
                return outlet
        waiting = [
            o for o in self.outlets.values() if o.vehicle is not None and o.transaction is None
        ]
        return waiting[0] if waiting else self.free_outlet()

    def plug_in(
        self, number: int, vehicle: Vehicle | None = None, connector_index: int = 0
    ) -> Outlet:
        outlet = self.outlet(number)
        if outlet.vehicle is not None:
            raise ValueError(f"{self.id} outlet {number} already has a vehicle")
        outlet.vehicle = vehicle or random_vehicle(self.rng)
        outlet.connector_index = connector_index
        if outlet.transaction is None:
            self.set_status(outlet, "Preparing")
        return outlet

    async def authorize(self, id_tag: str) -> bool:
        """Ask the CSMS about ``id_tag``; offline, accept it (LocalAuthorizeOffline)."""
        link = self.link
        if link is None or not self.booted.is_set():
            return True
        try:
            return self.authorized(await link.call("Authorize", self.authorize_payload(id_tag)))
        except (LinkClosed, TimeoutError):
            return True
        except CallRefused:
            return False

    async def start_transaction(
        self,
        number: int,
        id_tag: str,
        *,
        remote_start_id: int | None = None,
        trigger: str = "Authorized",
    ) -> Transaction:
        """Start charging on outlet ``number`` (plugging a vehicle in if none is)."""
        outlet = self.outlet(number)
        if outlet.transaction is not None:
            raise ValueError(f"{self.id} outlet {number} is already in a transaction")
        if outlet.vehicle is None:
            self.plug_in(number)
        reservation = outlet.reservation
        reservation_id = None
        if reservation is not None and reservation.id_tag.lower() == id_tag.lower():
            reservation_id = reservation.id
            self._end_reservation(outlet)
        outlet.metered_at = time.monotonic()
        tx = Transaction(
            local_id=str(uuid.UUID(int=self.rng.getrandbits(128))),
            id_tag=id_tag,
            meter_start_wh=outlet.register_wh,
            started_at=self.now(),
            remote_start_id=remote_start_id,
            reservation_id=reservation_id,
            trigger=trigger,
            started_offline=not self.booted.is_set(),
        )
        if outlet.vehicle is not None:
            tx.vehicle, tx.soc_start = outlet.vehicle.model.name, outlet.vehicle.soc
        outlet.transaction = tx
        sample = self.sample(outlet, "Transaction.Begin")
        self.figures.sessions_started += 1
        self.started(outlet, tx, sample)
        self.set_status(outlet, "Charging")
        outlet.meter_task = self.spawn(self._meter(outlet))
        return tx

    async def stop_transaction(
        self, number: int, reason: str = "Local"
    ) -> TransactionRecord | None:
        """End outlet ``number``'s transaction, if it has one; ``reason`` as in 1.6."""
        outlet = self.outlet(number)
        tx = outlet.transaction
        if tx is None:
            return None
        sample = self.sample(outlet, "Transaction.End")
        outlet.transaction = None
        if outlet.meter_task is not None and outlet.meter_task is not asyncio.current_task():
            outlet.meter_task.cancel()
        outlet.meter_task = None
        tx.meter_stop_wh = sample.register_wh
        self.ended(outlet, tx, sample, reason)
        energy = tx.meter_stop_wh - tx.meter_start_wh
        record = TransactionRecord(number, tx, energy, reason)
        self.history.append(record)
        self.figures.sessions_completed += 1
        self.figures.energy_wh += energy
        outlet.profiles = [p for p in outlet.profiles if p.purpose != "tx"]
        if outlet.inoperative_after_transaction:
            outlet.operative = False
            outlet.inoperative_after_transaction = False
        self.set_status(
            outlet, "Finishing" if outlet.vehicle is not None else self._idle_status(outlet)
        )
        return record

    async def unplug(self, number: int) -> None:
        """The driver takes the cable: the transaction (if any) ends, the outlet frees up."""
        outlet = self.outlet(number)
        if outlet.transaction is not None:
            await self.stop_transaction(number, "EVDisconnected")
        outlet.vehicle = None
        self.set_status(outlet, self._idle_status(outlet))

    async def visit(
        self, number: int, id_tag: str, duration: float, vehicle: Vehicle | None = None
    ) -> TransactionRecord | None:
        """A driver's whole visit: plug in, authorize, charge ``duration`` seconds, leave."""
        self.plug_in(number, vehicle)
        try:
            if not await self.authorize(id_tag):
                await asyncio.sleep(min(duration, 5.0))
                return None
            outlet = self.outlet(number)
            if outlet.transaction is None and outlet.vehicle is not None:
                await self.start_transaction(number, id_tag)
            await asyncio.sleep(duration)
            return await self.stop_transaction(number, "Local")
        finally:
            if self.outlet(number).vehicle is not None:
                await self.unplug(number)

    async def start_remotely(
        self,
        outlet: Outlet,
        id_tag: str,
        *,
        authorize_first: bool,
        remote_start_id: int | None = None,
    ) -> bool:
        """Carry out an accepted remote start; return whether a transaction started."""
        if authorize_first and not await self.authorize(id_tag):
            return False
        if outlet.transaction is not None:
            return False
        await self.start_transaction(
            outlet.number, id_tag, remote_start_id=remote_start_id, trigger="RemoteStart"
        )
        if self.options.remote_visit is not None:
            await self.leave_after(outlet.number, self.rng.uniform(*self.options.remote_visit))
        return True

    def remote_stop(self, matches: Callable[[Transaction], bool]) -> Reply:
        """Answer a remote stop: Accepted, then the stop, for the transaction that ``matches``."""
        for outlet in self.outlets.values():
            tx = outlet.transaction
            if tx is not None and matches(tx):

                async def stop(number: int = outlet.number) -> None:
                    await self.stop_transaction(number, "Remote")

                return Reply({"status": "Accepted"}, stop)
        return Reply({"status": "Rejected"})

    async def leave_after(self, number: int, seconds: float) -> None:
        """The driver of a remotely started transaction comes back after ``seconds``."""
        tx = self.outlet(number).transaction
        await asyncio.sleep(seconds)
        if tx is not None and self.outlet(number).transaction is tx:
            await self.stop_transaction(number, "Local")
            await self.unplug(number)

    # Reservations ------------------------------------------------------------------------

    def reservation_refusal(self, outlet: Outlet, reservation_id: int) -> str | None:
        """Why ``outlet`` cannot take reservation ``reservation_id`` now (a ReserveNow status
        both versions share), or None when it can."""
        if not outlet.operative:
            return "Unavailable"
        if outlet.status == "Faulted":
            return "Faulted"
        existing = outlet.reservation
        busy = outlet.transaction is not None or outlet.vehicle is not None
        if busy or (existing is not None and existing.id != reservation_id):
            return "Occupied"
        return None

    def reserve(self, outlet: Outlet, reservation_id: int, id_tag: str, expires: datetime) -> None:
        self._end_reservation(outlet)
        reservation = Reservation(reservation_id, id_tag, expires)
        outlet.reservation = reservation
        reservation.expiry_task = self.spawn(self._expire(outlet, reservation))
        self.set_status(outlet, "Reserved")

    async def _expire(self, outlet: Outlet, reservation: Reservation) -> None:
        await asyncio.sleep(max(0.0, (reservation.expires - self.now()).total_seconds()))
        if outlet.reservation is reservation:
            outlet.reservation = None
            self.reservation_ended(outlet, reservation, "Expired")
            if outlet.transaction is None:
                self.set_status(outlet, self._idle_status(outlet))

    def reservation_ended(self, outlet: Outlet, reservation: Reservation, why: str) -> None:
        """A reservation expired or was cancelled (2.0.1 also reports it to the CSMS)."""
        log.info("%s: reservation %d on outlet %d %s", self.id, reservation.id, outlet.number, why)

    def cancel_reservation(self, reservation_id: int) -> bool:
        for outlet in self.outlets.values():
            if outlet.reservation is not None and outlet.reservation.id == reservation_id:
                self._end_reservation(outlet)
                if outlet.transaction is None:
                    self.set_status(outlet, self._idle_status(outlet))
                return True
        return False

    def _end_reservation(self, outlet: Outlet) -> None:
        reservation, outlet.reservation = outlet.reservation, None
        task = reservation.expiry_task if reservation is not None else None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # Availability ------------------------------------------------------------------------

    def change_availability(self, outlets: list[Outlet], operative: bool) -> str:
        """Apply ChangeAvailability: ``Accepted``, or ``Scheduled`` when a transaction runs."""
        scheduled = False
        for outlet in outlets:
            if not operative:
                if outlet.transaction is not None:
                    outlet.inoperative_after_transaction = True
                    scheduled = True
                    continue
                outlet.operative = False
            else:
                outlet.operative = True
                outlet.inoperative_after_transaction = False
            if outlet.transaction is None:
                self.set_status(outlet, self._idle_status(outlet))
        return "Scheduled" if scheduled else "Accepted"


def _const(payload: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: payload
