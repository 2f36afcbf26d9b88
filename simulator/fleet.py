"""Many simulated stations in one process: start them staggered, drive them, sum up the run.

``Fleet`` builds N stations (OCPP 1.6, 2.0.1 or a mix, templates assigned in turn), starts them
spread over a ramp so a thousand do not knock at once, runs a scenario on each, and after the
duration ends their transactions, lets the queued messages drain and disconnects. Stations
reconnect with backoff on their own. ``Fleet.progress`` is a snapshot for live output;
``FleetReport`` holds the closing figures. Importable by tests and benchmarks: the CLI
(``simulator.cli``) is a thin shell around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from simulator.faults import Faults
from simulator.figures import Figures
from simulator.station import Station, StationOptions
from simulator.templates import Template, shipped_templates
from simulator.v16 import Station16
from simulator.v201 import Station201

__all__ = ["Fleet", "FleetOptions", "FleetReport", "Progress", "Scenario", "build_station"]

VERSIONS = ("1.6", "2.0.1", "mix")
_DIALECTS: dict[str, type[Station]] = {"1.6": Station16, "2.0.1": Station201}


class Scenario(Protocol):
    async def drive(self, station: Station) -> None: ...


@dataclass(frozen=True, slots=True)
class FleetOptions:
    url: str = "ws://127.0.0.1:9000/ocpp"
    stations: int = 10
    ocpp: str = "1.6"
    """``1.6``, ``2.0.1`` or ``mix`` (every other station)."""
    templates: tuple[Template, ...] = ()
    """Assigned in turn among those that speak the station's version; empty: the shipped ones."""
    duration: float | None = 60.0
    """Seconds to run after the last station started; None: until ``Fleet.stop``."""
    seed: int = 1
    id_prefix: str = "SIM-"
    first_number: int = 1
    password: str | None = None
    ramp: float | None = None
    """Seconds over which station starts are spread; None: 10 ms per station, at most 30 s."""
    scenario: Scenario | None = None
    faults: Faults = field(default_factory=Faults)
    call_timeout: float = 30.0
    remote_visit: tuple[float, float] | None = None
    drain: float = 15.0
    """Seconds stations may take at the end to deliver queued transaction messages."""

    def __post_init__(self) -> None:
        if self.stations < 1:
            raise ValueError(f"stations is {self.stations}: at least 1")
        if self.ocpp not in VERSIONS:
            raise ValueError(f"ocpp is {self.ocpp!r}: one of {', '.join(VERSIONS)}")
        if self.duration is not None and self.duration < 0:
            raise ValueError("duration must not be negative")


@dataclass(frozen=True, slots=True)
class Progress:
    elapsed: float
    stations: int
    connected: int
    charging: int
    messages: int
    errors: int
    sessions: int

    def line(self) -> str:
        return (
            f"[{self.elapsed:6.1f}s] connected {self.connected}/{self.stations}"
            f"  charging {self.charging}  messages {self.messages}"
            f"  sessions {self.sessions}  errors {self.errors}"
        )


@dataclass
class FleetReport:
    stations: int
    seconds: float
    figures: dict[str, Any]
    versions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stations": self.stations,
            "versions": self.versions,
            "seconds": round(self.seconds, 1),
            **self.figures,
        }

    def table(self) -> str:
        """The closing figures as aligned text."""
        f = self.figures
        latency = f["ack_latency_ms"]
        rows = [
            (
                "stations",
                f"{self.stations} ({', '.join(f'{v}: {n}' for v, n in self.versions.items())})",
            ),
            ("ran", f"{self.seconds:.1f} s"),
            ("most connected at once", str(f["most_connected"])),
            ("connections opened", str(f["connects"])),
            ("messages sent", str(f["messages"])),
            ("ack latency p50 / p99", f"{_ms(latency['p50'])} / {_ms(latency['p99'])}"),
            (
                "sessions started / completed",
                f"{f['sessions_started']} / {f['sessions_completed']}",
            ),
            ("energy delivered", f"{f['energy_kwh']:.3f} kWh"),
            ("errors", str(f["errors"])),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines.append("")
        lines.append("messages by action")
        for action, count in f["messages_by_action"].items():
            lines.append(f"  {action:<{width - 2}}  {count}")
        if f["csms_calls_by_action"]:
            lines.append("calls from the CSMS")
            for action, count in f["csms_calls_by_action"].items():
                lines.append(f"  {action:<{width - 2}}  {count}")
        if f["errors_by_kind"]:
            lines.append("errors by kind")
            for kind, count in f["errors_by_kind"].items():
                lines.append(f"  {kind:<{width - 2}}  {count}")
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def build_station(
    station_id: str,
    version: str,
    template: Template,
    options: StationOptions,
    *,
    figures: Figures | None = None,
    seed: int = 1,
) -> Station:
    """One station of ``version`` made from ``template``, its randomness seeded."""
    if version not in template.versions:
        raise ValueError(f"template {template.name} does not speak OCPP {version}")
    rng = random.Random(f"{seed}:{station_id}")
    return _DIALECTS[version](station_id, template, options, figures=figures, rng=rng)


class Fleet:
    """See the module docstring."""

    def __init__(self, options: FleetOptions) -> None:
        self.options = options
        self.figures = Figures()
        templates = options.templates or tuple(shipped_templates().values())
        station_options = StationOptions(
            url=options.url,
            password=options.password,
            call_timeout=options.call_timeout,
            faults=options.faults,
            remote_visit=options.remote_visit,
        )
        self.stations: list[Station] = []
        for index in range(options.stations):
            version = self._version(index)
            fitting = [t for t in templates if version in t.versions]
            if not fitting:
                raise ValueError(f"no template speaks OCPP {version}")
            station_id = f"{options.id_prefix}{options.first_number + index:05d}"
            self.stations.append(
                build_station(
                    station_id,
                    version,
                    fitting[index // (2 if options.ocpp == "mix" else 1) % len(fitting)],
                    station_options,
                    figures=self.figures,
                    seed=options.seed,
                )
            )
        self._stop = asyncio.Event()
        self._began = time.monotonic()

    def _version(self, index: int) -> str:
        if self.options.ocpp == "mix":
            return "1.6" if index % 2 == 0 else "2.0.1"
        return self.options.ocpp

    @property
    def progress(self) -> Progress:
        return Progress(
            elapsed=time.monotonic() - self._began,
            stations=len(self.stations),
            connected=self.figures.online,
            charging=sum(
                1 for s in self.stations for o in s.outlets.values() if o.transaction is not None
            ),
            messages=sum(self.figures.sent.values()),
            errors=sum(self.figures.errors.values()),
            sessions=self.figures.sessions_started,
        )

    def stop(self) -> None:
        """End the run early (Ctrl+C): stations still finish their transactions."""
        self._stop.set()

    async def wait_connected(self, count: int | None = None, within: float = 60.0) -> None:
        """Wait until ``count`` (default: all) stations have booted."""
        wanted = len(self.stations) if count is None else count
        async with asyncio.timeout(within):
            while self.figures.online < wanted:  # noqa: ASYNC110 - a count over many stations
                await asyncio.sleep(0.05)

    async def run(
        self,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        progress_every: float = 2.0,
    ) -> FleetReport:
        """Run the fleet for its duration (or until ``stop``) and return the figures."""
        self._began = time.monotonic()
        options = self.options
        ramp = options.ramp if options.ramp is not None else min(0.01 * len(self.stations), 30.0)
        reporter = None
        if on_progress is not None:
            reporter = asyncio.create_task(self._report(on_progress, progress_every))
        drivers: list[asyncio.Task[None]] = []
        try:
            for index, station in enumerate(self.stations):
                if self._stop.is_set():
                    break
                station.start()
                if options.scenario is not None:
                    drivers.append(asyncio.create_task(options.scenario.drive(station)))
                if index + 1 < len(self.stations):
                    await self._sleep(ramp / len(self.stations))
            if options.duration is None:
                await self._stop.wait()
            else:
                await self._sleep(options.duration)
        finally:
            for driver in drivers:
                driver.cancel()
            await asyncio.gather(*drivers, return_exceptions=True)
            await asyncio.gather(
                *(s.stop(grace=options.drain) for s in self.stations), return_exceptions=True
            )
            if reporter is not None:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
        versions: dict[str, int] = {}
        for station in self.stations:
            versions[station.version] = versions.get(station.version, 0) + 1
        return FleetReport(
            stations=len(self.stations),
            seconds=time.monotonic() - self._began,
            figures=self.figures.summary(),
            versions=versions,
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _report(self, on_progress: Callable[[Progress], None], every: float) -> None:
        while True:
            await asyncio.sleep(every)
            on_progress(self.progress)
