"""What the pricing engine prices: a session's meter timeline, its span, and its place.

The core turns a session's accepted meter readings into ``MeterPoint``s (cumulative billed
energy, never decreasing) and hands them over with the session's start and end, the
Location's time zone and the connector's voltage. The engine needs nothing else, so it can
price a session that is still running (end = the newest reading) the same way as one that
has finished, and a test can price a scenario without any database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

__all__ = ["MeterPoint", "ReservationSpan", "Usage", "in_time_order"]


@dataclass(frozen=True, slots=True)
class MeterPoint:
    """A reading: the energy billed since the session started, at a moment."""

    at: datetime
    energy_wh: Decimal
    """Cumulative billed energy in Wh (0 at the session start); never decreases."""
    current_a: Decimal | None = None
    """Measured current summed over phases (A), if the station reported it."""


@dataclass(frozen=True, slots=True)
class ReservationSpan:
    """The reservation that preceded a session (or expired without one)."""

    start: datetime
    end: datetime
    """When charging started, or when the reservation expired or was cancelled."""
    expired: bool = False
    """True when it ended unused: RESERVATION_EXPIRES elements apply."""


@dataclass(frozen=True, slots=True)
class Usage:
    """A session to price: from ``start`` to ``end``, with its meter points in between."""

    start: datetime
    end: datetime
    points: Sequence[MeterPoint] = field(default=())
    time_zone: str = "UTC"
    """The Location's IANA time zone: every time-of-day, date and weekday rule uses it."""
    voltage_v: Decimal | None = None
    """Connector voltage (line to neutral for AC) to estimate current from power."""
    reservation: ReservationSpan | None = None

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment.tzinfo is None:
                raise ValueError(f"naive datetime {moment!r}: usage times must be aware")
        if self.end < self.start:
            raise ValueError(f"session ends ({self.end}) before it starts ({self.start})")
        previous = Decimal(0)
        for point in in_time_order(self.points):
            if point.energy_wh < previous:
                raise ValueError(
                    f"billed energy went down at {point.at}: {point.energy_wh} < {previous} Wh"
                )
            previous = point.energy_wh


def in_time_order(points: Sequence[MeterPoint]) -> list[MeterPoint]:
    """Points by time; at one instant by energy, then current: never by list order."""
    return sorted(
        points,
        key=lambda p: (p.at, p.energy_wh, p.current_a is not None, p.current_a or Decimal(0)),
    )
