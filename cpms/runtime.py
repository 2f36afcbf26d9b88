"""The composition root: the one module that wires the adapters around the core.

``Runtime`` opens the database (creating or upgrading its schema), makes sure the operator
has a token, and runs the OCPP websocket server and the HTTP server in one asyncio process.
``serve`` runs a runtime until SIGTERM or SIGINT, then shuts down in order: stop accepting
stations and HTTP clients, let in-flight work finish, close the database.
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
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web

from cpms import stations
from cpms.admission import Admission
from cpms.authorization import Authorizer, Operator
from cpms.config import Settings
from cpms.database import create_engine, current_revision, head_revision, ping, prepare_schema
from cpms.errors import ConfigError, CpmsError
from cpms.group_commit import GroupCommitter
from cpms.locations import DefaultLocation
from cpms.model import utcnow
from cpms.operator_access import ensure_admin_token
from cpms.remote_control import expire_commands
from cpms.reservations import expire_reservations
from cpms.secrets import TokenVault
from cpms.session_closing import sweep
from cpms.station_lifecycle import log_station_event, record_offline, record_online
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory
from ocpi_api import HttpContext, create_app
from ocpi_api.client import OcpiClient
from ocpi_api.push import Pusher
from ocpi_api.realtime_auth import OcpiRemoteAuthorizer
from ocpi_api.registration import RegistrationFailed, our_roles, register, unregister, update
from ocpi_api.versions import versions_url
from ocpp_gateway import OcppServer, OcppVersion, v16
from ocpp_gateway.server import StationProfile
from ocpp_gateway.services import StationServices
from ocpp_gateway.station_port import GatewayStationPort
from ocpp_gateway.validation import Violation

__all__ = [
    "Runtime",
    "default_location",
    "our_versions_url",
    "register_partner",
    "serve",
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
        self.generated_admin_token: str | None = None
        self.committer = GroupCommitter(self.uow)
        self.vault = TokenVault.from_file(settings.secret_key_file)
        self.ocpi_client = OcpiClient(
            country_code=settings.country_code, party_id=settings.party_id
        )
        self.authorizer = Authorizer(
            Operator(settings.country_code, settings.party_id),
            OcpiRemoteAuthorizer(
                self.uow, self.vault, self.ocpi_client, timeout=settings.ocpi_authorize_timeout
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
        services = StationServices(
            uow=self.uow,
            committer=self.committer,
            authorizer=self.authorizer,
            heartbeat_interval=settings.heartbeat_interval,
        )
        self.gateway = OcppServer(
            host=settings.ocpp_host,
            port=settings.ocpp_port,
            ssl_context=_tls_context(settings),
            admit=self._admit,
            on_connected=self._connected,
            on_disconnected=self._disconnected,
            on_tolerated=self._tolerated,
            handlers={OcppVersion.V16: v16.handlers(services)},
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
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
        )

    async def _connected(self, station_id: str, version: OcppVersion) -> StationProfile:
        # Through the group committer: a reconnect storm must not cost a commit per station.
        station = await self.committer.run(
            lambda uow: record_online(uow, station_id, ocpp_version=version.value, node=self.node)
        )
        log.info("station %s connected (%s)", station_id, version.value)
        return StationProfile(boot_status=station.boot_status, lenient=station.lenient)

    async def _disconnected(self, station_id: str, reason: str) -> None:
        await self.committer.run(
            lambda uow: record_offline(uow, station_id, node=self.node, reason=reason)
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
            self.generated_admin_token = await ensure_admin_token(
                self.uow(), self.settings.admin_token
            )
            await self.committer.start()
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
            self._http_port = _bound_port(site)
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="session-sweep")
            await self.pusher.start()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "listening: OCPP ws://%s:%d/ocpp/{station_id}, HTTP %s (OCPI %s/ocpi/versions)",
            self.settings.ocpp_host, self.ocpp_port, self.base_url(), self.base_url(),
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
        await self.committer.stop()
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


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp exposes the bound sockets only here
    assert isinstance(server, asyncio.Server)
    return int(server.sockets[0].getsockname()[1])


async def serve(settings: Settings, *, announce: Callable[[Runtime], None] | None = None) -> None:
    """Run a node until SIGTERM or SIGINT, then shut it down cleanly."""
    runtime = Runtime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await runtime.start()
        if announce is not None:
            announce(runtime)
        await stop.wait()
        log.info("shutting down")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runtime.stop()
    log.info("stopped")


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
