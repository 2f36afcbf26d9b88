"""What flows through a connector: an EV's battery, its charge curve, and the meter register.

Power is voltage x current x phases, capped by the connector, by the EV (its on-board charger
on AC, its battery on DC, tapering as the battery fills) and by the limit a charging profile
set. Energy is integrated over real elapsed time, so the register only grows and the state of
charge follows from the energy that went in. Pure: callers pass the time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator.templates import ConnectorSpec

__all__ = ["EV_MODELS", "EvModel", "Flow", "Vehicle", "advance", "charge_power", "random_vehicle"]

TAPER_FROM_SOC = 80.0
"""Above this state of charge the battery takes less and less power."""
TAPER_FLOOR = 0.1
"""At 100 % the battery still takes this share of its peak power (then it is full)."""


@dataclass(frozen=True, slots=True)
class EvModel:
    name: str
    capacity_wh: float
    max_ac_w: float
    ac_phases: int
    max_dc_w: float


EV_MODELS: tuple[EvModel, ...] = (
    EvModel("city", 40_000, 7_400, 1, 50_000),
    EvModel("compact", 58_000, 11_000, 3, 120_000),
    EvModel("sedan", 75_000, 11_000, 3, 170_000),
    EvModel("suv", 95_000, 22_000, 3, 250_000),
)


@dataclass(slots=True)
class Vehicle:
    """One EV plugged in: its model and how full its battery is (0 to 100)."""

    model: EvModel
    soc: float

    @property
    def full(self) -> bool:
        return self.soc >= 100.0

    def acceptance_w(self, dc: bool) -> float:
        """The most power the EV takes now, on AC or DC, before any connector limit."""
        peak = self.model.max_dc_w if dc else self.model.max_ac_w
        if self.full:
            return 0.0
        if self.soc <= TAPER_FROM_SOC:
            return peak
        share = 1.0 - (self.soc - TAPER_FROM_SOC) / (100.0 - TAPER_FROM_SOC) * (1.0 - TAPER_FLOOR)
        return peak * share


def random_vehicle(rng: random.Random) -> Vehicle:
    """An EV arriving with 10 % to 60 % in its battery."""
    return Vehicle(rng.choice(EV_MODELS), soc=round(rng.uniform(10.0, 60.0), 1))


@dataclass(frozen=True, slots=True)
class Flow:
    """Power on a connector at one moment, and how it is carried."""

    power_w: float
    current_a: float
    """Per phase on AC; the DC current on DC."""
    phases: int
    voltage_v: float


def charge_power(connector: ConnectorSpec, vehicle: Vehicle | None, limit_w: float | None) -> Flow:
    """The flow into ``vehicle`` on ``connector``, under a charging-profile limit if any."""
    phases = 0 if connector.is_dc else connector.phases
    if vehicle is None:
        return Flow(0.0, 0.0, phases, connector.voltage_v)
    if not connector.is_dc:
        # The on-board charger draws on as many phases as both sides have.
        phases = min(phases, vehicle.model.ac_phases)
    per_line = connector.voltage_v * max(phases, 1)
    power = min(connector.max_current_a * per_line, vehicle.acceptance_w(connector.is_dc))
    if limit_w is not None:
        power = min(power, max(limit_w, 0.0))
    return Flow(power, power / per_line, phases, connector.voltage_v)


def advance(vehicle: Vehicle, power_w: float, seconds: float) -> float:
    """Put ``power_w`` into the battery for ``seconds``; return the Wh that went in."""
    if seconds <= 0 or power_w <= 0 or vehicle.full:
        return 0.0
    room_wh = (100.0 - vehicle.soc) / 100.0 * vehicle.model.capacity_wh
    energy = min(power_w * seconds / 3600.0, room_wh)
    vehicle.soc = min(100.0, vehicle.soc + energy / vehicle.model.capacity_wh * 100.0)
    return energy
