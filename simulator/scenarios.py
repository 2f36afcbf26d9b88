"""What drivers do at the stations: the automatic transaction generator and scripted scenarios.

The generator (``AutoTransactions``) runs one loop per outlet: a driver arrives after an
exponentially distributed gap, presents a token drawn from a weighted list, starts charging with
the given probability (or walks away), charges for a time in a range, and leaves. Every draw
comes from the station's generator, seeded from the run's seed and the station's id, so a run
with the same seed makes the same visits.

A scripted scenario is a JSON file of steps, each at a time after the station booted::

    {"steps": [
        {"at": 0,  "station": "*", "do": "plug", "outlet": 1, "ev": "sedan"},
        {"at": 1,  "station": "SIM-00001", "do": "start", "outlet": 1, "token": "DEMO0001"},
        {"at": 30, "do": "stop", "outlet": 1},
        {"at": 31, "do": "unplug", "outlet": 1},
        {"at": 40, "do": "offline"}, {"at": 70, "do": "online"},
        {"at": 80, "do": "charge", "outlet": 1, "token": "DEMO0002", "duration": 60}
    ]}

``station`` is an id or ``*`` (the default: every station). Verbs: plug, unplug, authorize,
start, stop, charge, offline, online, drop, malformed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.physics import EV_MODELS, Vehicle, random_vehicle
from simulator.station import Station

__all__ = [
    "AutoTransactions",
    "Script",
    "ScriptError",
    "Step",
    "load_script",
    "parse_tokens",
]

VERBS = (
    "plug",
    "unplug",
    "authorize",
    "start",
    "stop",
    "charge",
    "offline",
    "online",
    "drop",
    "malformed",
)


@dataclass(frozen=True, slots=True)
class AutoTransactions:
    """The generator's parameters; see the module docstring."""

    tokens: tuple[tuple[str, float], ...] = (("SIMTOKEN0001", 1.0),)
    """Tokens drivers present, with relative weights."""
    mean_arrival_gap: float = 60.0
    """Mean seconds between one driver leaving an outlet and the next arriving."""
    duration: tuple[float, float] = (120.0, 600.0)
    """Seconds a driver charges, uniformly in this range."""
    start_probability: float = 1.0
    """Share of arriving drivers who start charging (the others walk away)."""
    first_arrival: tuple[float, float] | None = None
    """Range of the first arrival after boot; None: drawn like the others."""

    def __post_init__(self) -> None:
        if not self.tokens or any(weight <= 0 for _, weight in self.tokens):
            raise ValueError("tokens: at least one, each with a positive weight")
        if self.mean_arrival_gap <= 0:
            raise ValueError("mean_arrival_gap must be positive")
        low, high = self.duration
        if not 0 < low <= high:
            raise ValueError(f"duration {low}..{high}: need 0 < min <= max")
        if not 0.0 <= self.start_probability <= 1.0:
            raise ValueError("start_probability is a share between 0 and 1")

    async def drive(self, station: Station) -> None:
        """Run drivers at every outlet of ``station`` until cancelled."""
        async with asyncio.TaskGroup() as group:
            for number in station.outlets:
                group.create_task(self._outlet(station, number))

    async def _outlet(self, station: Station, number: int) -> None:
        rng = station.derived_rng(f"driver:{number}")
        tokens = [token for token, _ in self.tokens]
        weights = [weight for _, weight in self.tokens]
        first = True
        while True:
            if first and self.first_arrival is not None:
                gap = rng.uniform(*self.first_arrival)
            else:
                gap = rng.expovariate(1.0 / self.mean_arrival_gap)
            first = False
            await asyncio.sleep(gap)
            await station.booted.wait()
            outlet = station.outlets[number]
            if outlet.vehicle is not None or outlet.reservation is not None or not outlet.operative:
                continue  # someone is there (a remote start, a reservation): come back later
            token = rng.choices(tokens, weights)[0]
            duration = rng.uniform(*self.duration)
            vehicle = random_vehicle(rng)
            if rng.random() >= self.start_probability:
                station.plug_in(number, vehicle)
                await asyncio.sleep(min(duration, 10.0))
                await station.unplug(number)
                continue
            await station.visit(number, token, duration, vehicle)


def parse_tokens(text: str) -> tuple[tuple[str, float], ...]:
    """``A,B:3,C`` as ((A, 1), (B, 3), (C, 1)): tokens with optional weights."""
    found = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        token, _, weight = part.partition(":")
        try:
            found.append((token, float(weight) if weight else 1.0))
        except ValueError:
            raise ValueError(f"token weight {weight!r} of {token!r} is not a number") from None
    if not found:
        raise ValueError("no tokens given")
    return tuple(found)


class ScriptError(ValueError):
    """A scenario file that cannot run; the message names the step."""


@dataclass(frozen=True, slots=True)
class Step:
    at: float
    station: str
    do: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Script:
    steps: tuple[Step, ...]

    def for_station(self, station_id: str) -> list[Step]:
        return [s for s in self.steps if s.station in ("*", station_id)]

    async def drive(self, station: Station) -> None:
        """Run this script's steps for ``station``, timed from its first boot."""
        await station.booted.wait()
        loop = asyncio.get_running_loop()
        began = loop.time()
        for step in sorted(self.for_station(station.id), key=lambda s: s.at):
            await asyncio.sleep(max(0.0, began + step.at - loop.time()))
            await _perform(station, step)


async def _perform(station: Station, step: Step) -> None:
    a = step.args
    outlet = int(a.get("outlet", 1))
    match step.do:
        case "plug":
            model = a.get("ev")
            vehicle = None
            if model is not None:
                chosen = next(m for m in EV_MODELS if m.name == model)
                vehicle = Vehicle(chosen, float(a.get("soc", 30.0)))
            station.plug_in(outlet, vehicle)
        case "unplug":
            await station.unplug(outlet)
        case "authorize":
            await station.authorize(str(a["token"]))
        case "start":
            await station.start_transaction(outlet, str(a["token"]))
        case "stop":
            await station.stop_transaction(outlet, str(a.get("reason", "Local")))
        case "charge":
            station.spawn(station.visit(outlet, str(a["token"]), float(a.get("duration", 60))))
        case "offline":
            await station.go_offline()
        case "online":
            station.go_online()
        case "drop":
            await station.drop_connection()
        case "malformed":
            await station.send_malformed()


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _step(doc: Any, where: str) -> Step:
    if not isinstance(doc, dict):
        raise ScriptError(f"{where}: a step is an object")
    verb = doc.get("do")
    if verb not in VERBS:
        raise ScriptError(f"{where}: 'do' is {verb!r}, not one of {', '.join(VERBS)}")
    at = doc.get("at", 0)
    if not _number(at) or at < 0:
        raise ScriptError(f"{where}: 'at' is {at!r}, not seconds >= 0")
    if verb in ("start", "authorize", "charge") and not isinstance(doc.get("token"), str):
        raise ScriptError(f"{where}: {verb!r} needs a 'token'")
    if doc.get("ev") is not None and doc["ev"] not in {m.name for m in EV_MODELS}:
        names = ", ".join(m.name for m in EV_MODELS)
        raise ScriptError(f"{where}: 'ev' is {doc['ev']!r}, not one of {names}")
    duration = doc.get("duration", 60)
    if not _number(duration) or duration <= 0:
        raise ScriptError(f"{where}: 'duration' is {duration!r}, not seconds > 0")
    soc = doc.get("soc", 30)
    if not _number(soc) or not 0 <= soc <= 100:
        raise ScriptError(f"{where}: 'soc' is {soc!r}, not a percentage from 0 to 100")
    outlet = doc.get("outlet", 1)
    if not isinstance(outlet, int) or outlet < 1:
        raise ScriptError(f"{where}: 'outlet' is {outlet!r}, not a number from 1")
    args = {k: v for k, v in doc.items() if k not in ("at", "station", "do")}
    return Step(float(at), str(doc.get("station", "*")), verb, args)


def parse_script(doc: Any, where: str) -> Script:
    steps_doc = doc.get("steps") if isinstance(doc, dict) else None
    if not isinstance(steps_doc, list):
        raise ScriptError(f"{where}: a scenario is an object with a 'steps' list")
    steps: Sequence[Step] = [_step(s, f"{where}: steps[{i}]") for i, s in enumerate(steps_doc)]
    return Script(tuple(steps))


def load_script(path: str | Path) -> Script:
    """Read a scenario file; raise ``ScriptError`` naming the file and the bad step."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ScriptError(f"{path}: cannot read ({error.strerror})") from None
    except ValueError as error:
        raise ScriptError(f"{path}: not JSON ({error})") from None
    return parse_script(doc, str(path))
