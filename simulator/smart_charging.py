"""The power limit charging profiles put on an outlet now, for both OCPP versions.

Each dialect reads its own ``ChargingProfile`` JSON into ``Profile``; the rules that pick the
limit are the same: the transaction's profile (or, without one, the default profile) with the
highest stack level, capped by the station-wide maximum profile; within a schedule, the last
period that has started. Limits in amperes become watts with the connector's voltage and the
phases in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["MAX", "TX", "TX_DEFAULT", "Period", "Profile", "limit_w"]

MAX, TX_DEFAULT, TX = "max", "default", "tx"


@dataclass(frozen=True, slots=True)
class Period:
    start_s: float
    limit: float
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    id: int
    purpose: str
    """``MAX``, ``TX_DEFAULT`` or ``TX``."""
    stack_level: int
    unit: str
    """``A`` or ``W``."""
    periods: tuple[Period, ...]
    starts: datetime | None = None
    """Absolute schedules start here; None: relative to the transaction's start (or now)."""
    transaction_id: str | None = None
    recurring_s: float | None = None
    """Daily or weekly schedules repeat with this period."""


def _current(profile: Profile, now: datetime, tx_started: datetime | None) -> Period | None:
    start = profile.starts or tx_started or now
    elapsed = (now - start).total_seconds()
    if profile.recurring_s and elapsed >= 0:
        elapsed %= profile.recurring_s
    running = [p for p in profile.periods if p.start_s <= elapsed]
    return max(running, key=lambda p: p.start_s) if running else None


def _watts(period: Period, unit: str, voltage_v: float, phases: int) -> float:
    if unit == "W":
        return period.limit
    lines = phases if phases else 1  # DC: amperes times voltage
    if phases and period.phases:
        lines = min(phases, period.phases)
    return period.limit * voltage_v * lines


def limit_w(
    profiles: list[Profile],
    *,
    now: datetime,
    voltage_v: float,
    phases: int,
    transaction_id: str | None,
    tx_started: datetime | None,
) -> float | None:
    """The limit in watts the profiles set now; None when nothing limits."""

    def top(purpose: str) -> float | None:
        mine = [
            p
            for p in profiles
            if p.purpose == purpose
            and (
                purpose != TX
                or (transaction_id is not None and p.transaction_id in (None, transaction_id))
            )
        ]
        for profile in sorted(mine, key=lambda p: p.stack_level, reverse=True):
            period = _current(profile, now, tx_started)
            if period is not None:
                return _watts(period, profile.unit, voltage_v, phases)
        return None

    chosen = top(TX) if transaction_id is not None else None
    if chosen is None:
        chosen = top(TX_DEFAULT)
    cap = top(MAX)
    if cap is not None:
        chosen = cap if chosen is None else min(chosen, cap)
    return chosen
