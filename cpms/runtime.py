"""The composition root: the one module that wires the adapters around the core.

``Runtime`` opens the database (creating or upgrading its schema), makes sure the operator
has a token, and runs the OCPP websocket server and the HTTP server in one asyncio process.
``serve`` runs a runtime until SIGTERM or SIGINT, then shuts down in order: stop accepting
stations and HTTP clients, let in-flight work finish, close the database. ``demo`` does the
same with a simulated fleet charging at a demo site (``cpms.demo``), and ``simulate`` runs the
simulator's command line: the CLI reaches the simulator only through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from aiohttp import web

from cpms import stations
from cpms.admission import Admission
from cpms.authorization import Authorizer, Operator
from cpms.config import Settings
from cpms.database import (
    WalCheckpointer,
    create_engine,
    current_revision,
    head_revision,
    ping,
    prepare_schema,
)
from cpms.demo import (
    DEMO_STATION_PREFIX,
    DEMO_TOKENS,
    ConnectorPlan,
    DemoFigures,
    DemoPlan,
    DemoSetup,
    EvsePlan,
    StationPlan,
    demo_figures,
    invite_demo_partner,
    prepare_demo,
)
from cpms.errors import ConfigError, CpmsError
from cpms.event_loop import running_loop_name
from cpms.gc_freezer import GcFreezer
from cpms.group_commit import GroupCommitter, GroupReader
from cpms.liveness import Liveness, LivenessWriter
from cpms.locations import DefaultLocation
from cpms.model import utcnow
from cpms.operator_access import ensure_admin_token
from cpms.remote_control import expire_commands
from cpms.reservations import expire_reservations
from cpms.secrets import TokenVault
from cpms.session_closing import sweep
from cpms.station_lifecycle import (
    ConnectionClosed,
    ConnectionOpened,
    log_station_event,
    record_offlines,
    record_onlines,
)
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory
from ocpi_api import HttpContext, create_app
from ocpi_api.client import OcpiClient
from ocpi_api.hub_client_pull import pull_hub_clients
from ocpi_api.pull import OnPage, PullFailed, PullReport
from ocpi_api.push import Pusher
from ocpi_api.realtime_auth import OcpiRemoteAuthorizer
from ocpi_api.registration import RegistrationFailed, our_roles, register, unregister, update
from ocpi_api.token_pull import pull_tokens
from ocpi_api.versions import versions_url
from ocpp_gateway import OcppServer, OcppVersion, v16, v201
from ocpp_gateway.server import StationProfile
from ocpp_gateway.services import StationServices
from ocpp_gateway.station_port import GatewayStationPort
from ocpp_gateway.validation import Violation
from simulator.cli import main as simulator_main
from simulator.fleet import Fleet, FleetOptions
from simulator.scenarios import AutoTransactions
from simulator.templates import shipped_templates

__all__ = [
    "DemoStarted",
    "Runtime",
    "bound_port",
    "default_location",
    "demo",
    "our_versions_url",
    "register_partner",
    "serve",
    "simulate",
    "unregister_partner",
    "update_partner",
]

log = logging.getLogger("cpms")


def default_location(settings: Settings) -> DefaultLocation:
    """Return the default location described by ``settings``."""
    return DefaultLocation(
        id=settings.default_location_id,
        country_code=settings.country_code,
        party_id=settings.party_id,
        name=settings.default_location_name,
        address=settings.default_location_address,
        city=settings.default_location_city,
        postal_code=settings.default_location_postal_code,
        country=settings.default_location_country,
        latitude=settings.default_location_latitude,
        longitude=settings.default_location_longitude,
        time_zone=settings.default_location_time_zone,
    )


class Runtime:
    """One running CPMS node: database, OCPP server and HTTP server."""

    def __init__(self, settings: Settings, *, node: str | None = None) -> None:
        self.settings = settings
        self.node = node or f"{socket.gethostname()}:{os.getpid()}"
        self.engine = create_engine(settings.database_url)
        self.uow = UnitOfWorkFactory(self.engine)
        self.checkpointer = WalCheckpointer(self.engine)
        self.generated_admin_token: str | None = None
        self.committer = GroupCommitter(self.uow)
        self.reader = GroupReader(self.uow)
        self.vault = TokenVault.from_file(settings.secret_key_file)
        self.ocpi_client = OcpiClient(
            country_code=settings.country_code, party_id=settings.party_id
        )
        self.authorizer = Authorizer(
            Operator(settings.country_code, settings.party_id),
            OcpiRemoteAuthorizer(
                self.vault, self.ocpi_client, timeout=settings.ocpi_authorize_timeout
            ),
            accept_unknown=settings.accept_unknown_tokens,
        )
        self.pusher = Pusher(
            self.uow,
            self.vault,
            self.ocpi_client,
            retry_max=settings.ocpi_push_retry_max,
            base_url=self.base_url,
        )
        self.liveness = Liveness()
        self.liveness_writer = LivenessWriter(self.liveness, self.committer)
        services = StationServices(
            uow=self.uow,
            committer=self.committer,
            reader=self.reader,
            authorizer=self.authorizer,
            heartbeat_interval=settings.heartbeat_interval,
            liveness=self.liveness,
        )
        self.gateway = OcppServer(
            host=settings.ocpp_host,
            port=settings.ocpp_port,
            ssl_context=_tls_context(settings),
            admit=self._admit,
            on_connected=self._connected,
            on_disconnected=self._disconnected,
            on_tolerated=self._tolerated,
            handlers={
                OcppVersion.V16: v16.handlers(services),
                OcppVersion.V201: v201.handlers(services),
            },
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            open_timeout=settings.handshake_timeout,
            # FIELD-NOTES 1: a station silent for two heartbeat intervals is gone.
            silence_limit=2 * settings.heartbeat_interval,
        )
        self.station_port = GatewayStationPort(self.gateway)
        self._http_runner: web.AppRunner | None = None
        self._http_port: int | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # The core, as the gateway sees it

    async def _admit(self, station_id: str, password: str | None) -> Admission:
        return await stations.admit_station(
            self.uow(),
            station_id,
            password,
            policy=self.settings.station_admission,
            default_location=default_location(self.settings),
            write=self.committer.run,
            read=partial(self.reader.run_grouped, stations.find_stations),
        )

    async def _connected(self, station_id: str, version: OcppVersion) -> StationProfile:
        # Through the group committer: a reconnect storm must not cost a commit per station.
        station = await self.committer.run_grouped(
            record_onlines, ConnectionOpened(station_id, version.value, self.node)
        )
        log.info("station %s connected (%s)", station_id, version.value)
        return StationProfile(boot_status=station.boot_status, lenient=station.lenient)

    async def _disconnected(self, station_id: str, reason: str) -> None:
        await self.committer.run_grouped(
            record_offlines, ConnectionClosed(station_id, self.node, reason)
        )
        log.info("station %s offline: %s", station_id, reason)

    async def _tolerated(self, station_id: str, action: str, violations: list[Violation]) -> None:
        summary = "; ".join(f"{v.path}: {v.rule}" for v in violations)
        details = {"action": action, "violations": [dataclasses.asdict(v) for v in violations]}

        async def work(uow: UnitOfWork) -> None:
            log_station_event(
                uow,
                station_id,
                "tolerated",
                f"lenient: {action} accepted despite {summary}",
                received_at=utcnow(),
                details=details,
            )

        await self.committer.run(work)

    async def _sweep_forever(self) -> None:
        after = self.settings.stuck_session_after
        stuck_after = timedelta(seconds=after) if after else None
        # Often enough that a session is closed soon after its limit, rarely enough to cost
        # nothing: a quarter of the limit, between 0.2 s (tests) and a minute.
        interval = min(60.0, max(0.2, after / 4)) if after else 60.0
        while True:
            await asyncio.sleep(interval)
            try:
                await self._expire_overdue()
                report = await sweep(self.uow, now=utcnow(), stuck_after=stuck_after)
            except Exception:
                log.exception("session sweep failed; trying again in %.0f s", interval)
                continue
            if report.closed or report.cdrs_issued:
                log.info(
                    "sweep: %d stuck session(s) closed, %d missing CDR(s) issued",
                    len(report.closed),
                    len(report.cdrs_issued),
                )

    async def _expire_overdue(self) -> None:
        """Answer TIMEOUT for commands past their deadline; end reservations past expiry."""
        async with self.uow() as uow:
            expired = await expire_commands(uow, utcnow())
            await uow.commit()
        if expired:
            self.pusher.wake()
        async with self.uow() as uow:
            await expire_reservations(uow, now=utcnow())
            await uow.commit()

    # Lifecycle

    @property
    def http_port(self) -> int:
        """The port the HTTP server listens on (known after ``start``)."""
        if self._http_port is None:
            raise RuntimeError("the HTTP server is not started")
        return self._http_port

    @property
    def ocpp_port(self) -> int:
        """The port the OCPP server listens on (known after ``start``)."""
        return self.gateway.port

    def base_url(self) -> str:
        """The public base URL of the HTTP server."""
        return self.settings.base_url(self._http_port)

    async def start(self) -> None:
        """Prepare the database, then start both listeners. Undo everything on failure."""
        try:
            await prepare_schema(self.engine, allow_migrate=self.settings.auto_migrate)
            await self.checkpointer.start()
            self.generated_admin_token = await ensure_admin_token(
                self.uow(), self.settings.admin_token
            )
            await self.committer.start()
            await self.reader.start()
            await self.liveness_writer.start()
            # Before accepting work: a command left PENDING by a crash, whose deadline passed
            # while we were down, is answered TIMEOUT now, not at the first periodic sweep
            # (up to a minute later). The pusher, started below, delivers the results.
            await self._expire_overdue()
            await self.gateway.start()
            app = create_app(
                HttpContext(
                    settings=self.settings,
                    uow=self.uow,
                    health=self.health,
                    base_url=self.base_url,
                    station_port=self.station_port,
                    vault=self.vault,
                    ocpi_client=self.ocpi_client,
                    wake_pusher=self.pusher.wake,
                )
            )
            self._http_runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await self._http_runner.setup()
            site = web.TCPSite(self._http_runner, self.settings.http_host, self.settings.http_port)
            await site.start()
            self._http_port = bound_port(site)
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="session-sweep")
            await self.pusher.start()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "listening: OCPP ws://%s:%d/ocpp/{station_id}, HTTP %s (OCPI %s/ocpi/versions); "
            "event loop %s",
            self.settings.ocpp_host, self.ocpp_port, self.base_url(), self.base_url(),
            running_loop_name(),
        )  # fmt: skip

    async def stop(self) -> None:
        """Stop accepting, close connections, and close the database."""
        await self.pusher.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self.gateway.listening:
            await self.gateway.stop()
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None
        if self.committer.running:
            await self.liveness_writer.stop()  # the last moments heard, before the committer
        await self.committer.stop()
        await self.reader.stop()
        await self.checkpointer.stop()
        await self.ocpi_client.close()
        await self.engine.dispose()

    async def health(self) -> dict[str, Any]:
        """Report database and listener state."""
        database: dict[str, Any] = {"engine": self.engine.dialect.name}
        try:
            await ping(self.engine)
            revision = await current_revision(self.engine)
            database |= {"ok": revision == head_revision(), "revision": revision}
        except Exception as error:
            database |= {"ok": False, "error": f"{type(error).__name__}: {error}"}
        listeners = {
            "ocpp": {
                "listening": self.gateway.listening,
                "port": self.gateway.port if self.gateway.listening else None,
                "connected_stations": self.gateway.connection_count,
            },
            "http": {"listening": self._http_runner is not None, "port": self._http_port},
        }
        ok = database["ok"] and all(listener["listening"] for listener in listeners.values())
        return {
            "status": "ok" if ok else "degraded",
            "node": self.node,
            "database": database,
            "listeners": listeners,
        }


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server TLS context of Security Profile 2, when a certificate is configured."""
    if settings.ocpp_tls_cert is None or settings.ocpp_tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP 1.6 security whitepaper: 1.2+
    try:
        context.load_cert_chain(settings.ocpp_tls_cert, settings.ocpp_tls_key)
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(
            "CPMS_OCPP_TLS_CERT",
            settings.ocpp_tls_cert,
            f"a PEM certificate matching its key ({error})",
        ) from None
    return context


def bound_port(site: web.TCPSite) -> int:
    """The port a started aiohttp site listens on (it was asked for port 0, say)."""
    server = site._server  # aiohttp exposes the bound sockets only here
    # An asyncio.Server, or uvloop's Server, which has the same `sockets` but no common base.
    sockets = getattr(server, "sockets", None)
    assert sockets, "the HTTP site is not listening"
    return int(sockets[0].getsockname()[1])


class _StopSignals:
    """SIGTERM and SIGINT as a request to stop: the first sets ``requested``, a later one
    calls ``again`` (if set): a shutdown that takes its time can be cut short."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.again: Callable[[], object] | None = None

    def __call__(self) -> None:
        if self.requested.is_set() and self.again is not None:
            self.again()
        self.requested.set()


@contextlib.asynccontextmanager
async def _node(settings: Settings) -> AsyncIterator[tuple[Runtime, _StopSignals]]:
    """A started node and the stop its signals ask for; the node stops when the block ends."""
    runtime = Runtime(settings)
    signals = _StopSignals()
    # The process's, not the Runtime's: freezing is process-wide, and a process that starts
    # and stops many nodes (the test suite) would pay a full collection after every stop.
    freezer = GcFreezer()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signals)
    try:
        await runtime.start()
        await freezer.start()
        yield runtime, signals
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await freezer.stop()
        await runtime.stop()
    log.info("stopped")


async def serve(settings: Settings, *, announce: Callable[[Runtime], None] | None = None) -> None:
    """Run a node until SIGTERM or SIGINT, then shut it down cleanly."""
    async with _node(settings) as (runtime, signals):
        if announce is not None:
            announce(runtime)
        await signals.requested.wait()
        log.info("shutting down")


# The demo and the simulator (`cpms demo`, `cpms simulate`) ----------------------------------
#
# The simulator is a client on the wire; this module is the one place the CLI reaches it from.


def simulate(argv: Sequence[str]) -> int:
    """Run ``cpms simulate ARGV``: the simulator's own command line; its exit code."""
    return simulator_main(list(argv), prog="cpms simulate")


@dataclass(frozen=True, slots=True)
class DemoStarted:
    """What ``cpms demo`` announces once its site is ready and its fleet starts."""

    setup: DemoSetup
    versions_url: str
    token_a: str
    """The single-use token A of the invited demo eMSP."""
    stations: int
    ocpp: str
    station_url: str
    tokens: tuple[str, ...]
    progress_every: float


async def demo(
    settings: Settings,
    *,
    stations: int = 6,
    ocpp: str = "mix",
    seed: int = 1,
    arrival_gap: float = 45.0,
    charge_time: tuple[float, float] = (60.0, 180.0),
    meter_interval: float = 10.0,
    progress_every: float = 30.0,
    announce: Callable[[Runtime, DemoStarted], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> None:
    """Run a node with a simulated fleet charging at the demo site, until SIGTERM or SIGINT.

    Prepares the site (``cpms.demo.prepare_demo``), invites a demo eMSP, starts the fleet
    (drivers arrive within seconds, then every ``arrival_gap`` s on average) and reports a
    progress line every ``progress_every`` s. On the first signal the stations end their
    transactions and deliver them, so their CDRs are issued, then the node stops; a second
    signal cuts the stations' goodbye short.
    """
    if settings.ocpp_tls_cert is not None:
        raise CpmsError("cpms demo: the simulated stations connect over ws://; run it without TLS")
    async with _node(settings) as (runtime, signals):
        fleet = _demo_fleet(
            settings, runtime.ocpp_port, stations=stations, ocpp=ocpp, seed=seed,
            arrival_gap=arrival_gap, charge_time=charge_time, meter_interval=meter_interval,
        )  # fmt: skip
        plan = _demo_plan(settings, fleet)
        setup = await prepare_demo(runtime.uow, plan)
        _, token_a = await invite_demo_partner(runtime.uow)
        before = await demo_figures(runtime.uow, plan.location_id)
        if announce is not None:
            announce(
                runtime,
                DemoStarted(
                    setup=setup, versions_url=versions_url(runtime.base_url()), token_a=token_a,
                    stations=stations, ocpp=ocpp, station_url=fleet.options.url,
                    tokens=plan.tokens, progress_every=progress_every,
                ),
            )  # fmt: skip
        running = asyncio.create_task(fleet.run(), name="demo-fleet")
        reporter: asyncio.Task[None] | None = None
        if on_progress is not None:
            reporter = asyncio.create_task(
                _report_demo(
                    fleet, runtime.uow, plan.location_id, before, on_progress, progress_every
                ),
                name="demo-progress",
            )
        stopping = asyncio.create_task(signals.requested.wait())
        try:
            done, _ = await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                log.info(
                    "stopping: the stations end their transactions first (signal again: skip that)"
                )
        finally:
            stopping.cancel()
            fleet.stop()
            signals.again = running.cancel
            await asyncio.wait({running})
            if reporter is not None:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
        if not running.cancelled() and running.exception() is not None:
            error = running.exception()
            raise CpmsError(f"the simulated fleet failed: {type(error).__name__}: {error}")
        if on_progress is not None:
            after = await demo_figures(runtime.uow, plan.location_id)
            on_progress(_demo_totals(fleet, before, after, final=True))
        log.info("shutting down")


def _demo_fleet(
    settings: Settings,
    ocpp_port: int,
    *,
    stations: int,
    ocpp: str,
    seed: int,
    arrival_gap: float,
    charge_time: tuple[float, float],
    meter_interval: float,
) -> Fleet:
    host = "127.0.0.1" if settings.ocpp_host in ("0.0.0.0", "::", "") else settings.ocpp_host
    if ":" in host:
        host = f"[{host}]"
    drivers = AutoTransactions(
        tokens=tuple((token, 1.0) for token in DEMO_TOKENS),
        mean_arrival_gap=arrival_gap,
        duration=charge_time,
        # The first drivers come within seconds: a newcomer sees sessions at once.
        first_arrival=(0.5, min(8.0, max(1.0, arrival_gap))),
    )
    templates = tuple(
        dataclasses.replace(template, meter_interval=meter_interval)
        for template in shipped_templates().values()
    )
    try:
        options = FleetOptions(
            url=f"ws://{host}:{ocpp_port}/ocpp", stations=stations, ocpp=ocpp,
            templates=templates, duration=None, seed=seed, id_prefix=DEMO_STATION_PREFIX,
            scenario=drivers, remote_visit=charge_time,
        )  # fmt: skip
        return Fleet(options)
    except ValueError as error:
        raise CpmsError(f"cpms demo: {error}") from None


def _demo_plan(settings: Settings, fleet: Fleet) -> DemoPlan:
    """The demo site as the fleet's stations number their EVSEs on the wire."""
    return DemoPlan(
        country_code=settings.country_code,
        party_id=settings.party_id,
        stations=tuple(
            StationPlan(
                station.id,
                tuple(
                    EvsePlan(
                        number,
                        tuple(
                            ConnectorPlan(
                                c.standard, c.format, c.power_type, c.max_power_w, c.voltage_v
                            )
                            for c in outlet.connectors
                        ),
                    )
                    for number, outlet in sorted(station.outlets.items())
                ),
            )
            for station in fleet.stations
        ),
    )


async def _report_demo(
    fleet: Fleet,
    uow: UnitOfWorkFactory,
    location_id: str,
    before: DemoFigures,
    on_progress: Callable[[str], None],
    every: float,
) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            now = await demo_figures(uow, location_id)
        except Exception:
            log.exception("demo progress: cannot count sessions and CDRs")
            continue
        on_progress(_demo_totals(fleet, before, now))


def _demo_totals(
    fleet: Fleet, before: DemoFigures, now: DemoFigures, *, final: bool = False
) -> str:
    p = fleet.progress
    return (
        f"[{p.elapsed:6.0f}s] {'stopped: ' if final else ''}stations connected "
        f"{p.connected}/{p.stations}, charging "
        f"{p.charging}; sessions started {p.sessions}, completed "
        f"{now.sessions_completed - before.sessions_completed}; CDRs issued "
        f"{now.cdrs - before.cdrs}; station errors {p.errors}"
    )


# OCPI partners from outside a running node (the `cpms ocpi` verbs) ---------------------------
#
# Registration talks to the partner with the OCPI adapter's client while the partner calls
# back the running server; composing the core with that adapter is this module's job.


def our_versions_url(settings: Settings) -> str:
    """Our OCPI versions URL, as partners reach it."""
    return versions_url(settings.base_url())


@contextlib.asynccontextmanager
async def _partner_client(settings: Settings) -> AsyncIterator[OcpiClient]:
    client = OcpiClient(country_code=settings.country_code, party_id=settings.party_id)
    try:
        yield client
    except RegistrationFailed as error:
        raise CpmsError(f"OCPI {int(error.status_code)}: {error.message}") from None
    finally:
        await client.close()


async def register_partner(
    settings: Settings,
    uow: UnitOfWorkFactory,
    vault: TokenVault,
    *,
    name: str,
    versions_url: str,
    token_a: str,
) -> int:
    """Register with the partner at ``versions_url`` using its ``token_a``; its id."""
    async with _partner_client(settings) as client:
        return await register(
            uow,
            vault,
            client,
            name=name,
            versions_url=versions_url,
            token_a=token_a,
            our_versions_url=our_versions_url(settings),
            our_roles=our_roles(settings),
        )


async def update_partner(
    settings: Settings, uow: UnitOfWorkFactory, vault: TokenVault, partner_id: int
) -> None:
    """Rotate tokens with a registered partner (credentials PUT)."""
    async with _partner_client(settings) as client:
        await update(
            uow,
            vault,
            client,
            partner_id,
            our_versions_url=our_versions_url(settings),
            our_roles=our_roles(settings),
        )


async def unregister_partner(
    settings: Settings, uow: UnitOfWorkFactory, vault: TokenVault, partner_id: int
) -> str | None:
    """Unregister a partner (credentials DELETE); why it did not confirm, or None."""
    async with _partner_client(settings) as client:
        return await unregister(uow, vault, client, partner_id)


# Pulling partners' lists (`cpms ocpi pull-tokens`, `cpms ocpi pull-clients`) --------------------


async def pull_partner_list(
    settings: Settings,
    uow: UnitOfWorkFactory,
    vault: TokenVault,
    partner_id: int,
    *,
    what: str,
    since: datetime | None = None,
    on_page: OnPage | None = None,
) -> PullReport:
    """Pull a partner's ``what`` list ("tokens" or "clients") and store it; what it did."""
    pull = {"tokens": pull_tokens, "clients": pull_hub_clients}[what]
    async with _partner_client(settings) as client:
        try:
            return await pull(uow, vault, client, partner_id, since=since, on_page=on_page)
        except PullFailed as error:
            raise CpmsError(f"pulling {what} of partner {partner_id} stopped: {error}") from None
