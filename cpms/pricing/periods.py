"""Cut a session into charging periods: a new one at every tariff-relevant change.

The session's meter timeline is first cut into *segments* at every instant where a
restriction of the tariff could change its answer:

- the readings themselves (average power, and so current and charging/parking, is known
  per interval between two readings: energy is spread evenly over it);
- every local midnight and every ``start_time``/``end_time`` of the tariff, in the
  Location's time zone (both sides of a daylight-saving fold);
- ``session start + min_duration`` / ``+ max_duration``;
- the instant the cumulative energy reaches a ``min_kwh``/``max_kwh`` bound, interpolated
  inside its interval and rounded up to the microsecond, so the bound is reached *at* the
  new segment's start (``min_kwh`` inclusive, ``max_kwh`` exclusive).

Each segment is then judged at its start: per dimension, the first element (tariff order)
that has a component of that dimension and whose restrictions all hold is active. An
interval is *parking* when the vehicle draws (on average) less than ``CHARGING_ABOVE_W``:
OCPI 2.2.1 errata defines parking time as time the vehicle is not requesting power.
Consecutive segments with the same kind and the same active elements merge into one period,
so periods change exactly where something that is priced changes.

A session may change tariff mid-way (``TariffSwitch``: a charging preference accepted while
it runs). Each switch is one more cut, every segment is judged with the tariff in force at
its start, and a period never spans two tariffs: ``Period.tariff`` says which one it is
priced with. The reservation before a session is priced with the tariff it started with.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_CEILING, Decimal, localcontext
from zoneinfo import ZoneInfo

from cpms.pricing.tariff_plan import (
    PriceComponent,
    Restrictions,
    TariffElement,
    TariffPlan,
    TariffSwitch,
)
from cpms.pricing.usage import Usage, in_time_order

__all__ = [
    "CHARGING",
    "CHARGING_ABOVE_W",
    "PARKING",
    "PRECISION",
    "RESERVATION",
    "Period",
    "charging_periods",
    "holds",
    "seconds_between",
]

CHARGING = "CHARGING"
PARKING = "PARKING"
RESERVATION = "RESERVATION"

CHARGING_ABOVE_W = Decimal(10)
"""Average power (W) at or above which the vehicle is taken to be drawing power."""

_DIMENSIONS = {
    CHARGING: ("ENERGY", "TIME", "FLAT"),
    PARKING: ("ENERGY", "PARKING_TIME", "FLAT"),
    RESERVATION: ("TIME", "FLAT"),
}
_MICROSECOND = Decimal("0.000001")
_ENERGY_QUANTUM = Decimal("1e-12")
"""Interpolated energies are kept to a picowatt-hour, so sums of periods stay exact."""
PRECISION = 50
"""Decimal digits pricing works with: sums of exact inputs never round."""


def seconds_between(start: datetime, end: datetime) -> Decimal:
    """Exact seconds from ``start`` to ``end`` (microsecond resolution)."""
    delta = end - start
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) * _MICROSECOND


def _after(start: datetime, seconds: Decimal) -> datetime:
    micros = (seconds / _MICROSECOND).to_integral_value(rounding=ROUND_CEILING)
    return start + timedelta(microseconds=int(micros))


@dataclass(slots=True)
class Period:
    """A stretch of a session with one kind and one set of active price components."""

    start: datetime
    end: datetime
    kind: str
    """CHARGING, PARKING or RESERVATION."""
    phase_start: datetime
    """Start of the session (or reservation) this period belongs to."""
    energy_wh: Decimal
    seconds: Decimal
    active: dict[str, tuple[TariffElement, PriceComponent]]
    """Per dimension (ENERGY, TIME, PARKING_TIME, FLAT), the element and component in force."""
    min_power_kw: Decimal | None = None
    max_power_kw: Decimal | None = None
    min_current_a: Decimal | None = None
    max_current_a: Decimal | None = None
    energy_before_wh: Decimal = field(default=Decimal(0))
    tariff: TariffPlan | None = None
    """The tariff this period is priced with (the session's, or the one switched to)."""

    @property
    def hours(self) -> Decimal:
        """Duration in hours (exact to the microsecond)."""
        return self.seconds / 3600

    def signature(self) -> tuple[object, ...]:
        """What must stay equal for two neighbouring stretches to be one period."""
        return (
            self.kind,
            self.tariff.id if self.tariff is not None else None,
            tuple(
                (dimension, element.index)
                for dimension, (element, _) in sorted(self.active.items())
                if dimension != "FLAT"
            ),
        )


@dataclass(frozen=True, slots=True)
class _Interval:
    start: datetime
    end: datetime
    energy_start_wh: Decimal
    energy_end_wh: Decimal
    power_w: Decimal
    current_a: Decimal | None


def _intervals(usage: Usage) -> list[_Interval]:
    """The meter timeline as intervals between readings, clipped to the session."""
    times = [usage.start]
    energies = [Decimal(0)]
    currents: list[Decimal | None] = [None]
    for point in in_time_order(usage.points):
        at = min(max(point.at, usage.start), usage.end)
        if at == times[-1]:
            energies[-1] = max(energies[-1], point.energy_wh)
            currents[-1] = point.current_a if point.current_a is not None else currents[-1]
            continue
        times.append(at)
        energies.append(point.energy_wh)
        currents.append(point.current_a)
    if times[-1] < usage.end:
        times.append(usage.end)
        energies.append(energies[-1])
        currents.append(None)
    intervals = []
    for i in range(1, len(times)):
        seconds = seconds_between(times[i - 1], times[i])
        energy = energies[i] - energies[i - 1]
        power = energy * 3600 / seconds
        current = currents[i]
        if current is None and usage.voltage_v:
            current = power / usage.voltage_v
        intervals.append(
            _Interval(times[i - 1], times[i], energies[i - 1], energies[i], power, current)
        )
    return intervals


def _local_days(start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[datetime]:
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    while day <= last:
        yield datetime(day.year, day.month, day.day)
        day += timedelta(days=1)


def _clock_boundaries(
    start: datetime, end: datetime, zone: ZoneInfo, clocks: Iterable[time]
) -> set[datetime]:
    moments = set()
    clocks = {time(0, 0), *clocks}
    for day in _local_days(start, end, zone):
        for clock in clocks:
            for fold in (0, 1):
                local = day.replace(hour=clock.hour, minute=clock.minute, tzinfo=zone, fold=fold)
                moments.add(local.astimezone(UTC))
    return moments


def _boundaries(
    phase_start: datetime,
    start: datetime,
    end: datetime,
    elements: Iterable[TariffElement],
    zone: ZoneInfo,
    intervals: list[_Interval],
) -> list[datetime]:
    clocks: set[time] = set()
    moments: set[datetime] = {start, end}
    for element in elements:
        r = element.restrictions
        clocks.update(c for c in (r.start_time, r.end_time) if c is not None)
        for seconds in (r.min_duration, r.max_duration):
            if seconds is not None:
                moments.add(phase_start + timedelta(seconds=seconds))
        for kwh in (r.min_kwh, r.max_kwh):
            if kwh is None:
                continue
            threshold = kwh * 1000
            for interval in intervals:
                if interval.energy_end_wh == threshold > interval.energy_start_wh:
                    moments.add(interval.end)  # reached exactly at a reading
                elif interval.energy_start_wh < threshold < interval.energy_end_wh:
                    share = (threshold - interval.energy_start_wh) / (
                        interval.energy_end_wh - interval.energy_start_wh
                    )
                    span = seconds_between(interval.start, interval.end)
                    moments.add(_after(interval.start, share * span))
    moments.update(_clock_boundaries(start, end, zone, clocks))
    # A reading matters only where the judgement could change: charging vs parking, or a
    # power or current bound crossed. Readings inside one band need no cut (energy is still
    # interpolated from every reading), which keeps long sessions cheap to price.
    power_bounds = sorted(
        {b for e in elements for b in (e.restrictions.min_power, e.restrictions.max_power) if b}
    )
    current_bounds = sorted(
        {b for e in elements for b in (e.restrictions.min_current, e.restrictions.max_current) if b}
    )
    previous: tuple[object, ...] | None = None
    for interval in intervals:
        band = _band(interval, power_bounds, current_bounds)
        if band != previous:
            moments.add(interval.start)
            previous = band
    return sorted(m for m in moments if start <= m <= end)


def _band(
    interval: _Interval, power_bounds: list[Decimal], current_bounds: list[Decimal]
) -> tuple[object, ...]:
    """What restrictions can see of an interval: kind, and its side of every bound."""
    power_kw = interval.power_w / 1000
    current = interval.current_a
    return (
        interval.power_w >= CHARGING_ABOVE_W,
        tuple(power_kw >= bound for bound in power_bounds),
        current is None,
        tuple(current is not None and current >= bound for bound in current_bounds),
    )


def _window_holds(r: Restrictions, clock_seconds: Decimal) -> bool:
    if r.start_time is None and r.end_time is None:
        return True
    begin = 0 if r.start_time is None else r.start_time.hour * 3600 + r.start_time.minute * 60
    finish = 86400 if r.end_time is None else r.end_time.hour * 3600 + r.end_time.minute * 60
    if finish == 0:
        finish = 86400  # "00:00" as an end time is the end of the day
    if begin < finish:
        return begin <= clock_seconds < finish
    if begin > finish:  # wraps past midnight
        return clock_seconds >= begin or clock_seconds < finish
    return True  # start == end: the whole day


def holds(
    r: Restrictions,
    local: datetime,
    elapsed_seconds: Decimal,
    kwh: Decimal,
    power_kw: Decimal,
    current_a: Decimal | None,
) -> bool:
    """True if every restriction that is set holds at this moment (OCPI: they are AND-ed)."""
    clock = (
        Decimal(local.hour * 3600 + local.minute * 60 + local.second)
        + Decimal(local.microsecond) * _MICROSECOND
    )
    date = local.date().isoformat()
    checks = (
        _window_holds(r, clock),
        r.start_date is None or date >= r.start_date,
        r.end_date is None or date < r.end_date,
        r.min_kwh is None or kwh >= r.min_kwh,
        r.max_kwh is None or kwh < r.max_kwh,
        r.min_power is None or power_kw >= r.min_power,
        r.max_power is None or power_kw < r.max_power,
        r.min_current is None or (current_a is not None and current_a >= r.min_current),
        r.max_current is None or (current_a is not None and current_a < r.max_current),
        r.min_duration is None or elapsed_seconds >= r.min_duration,
        r.max_duration is None or elapsed_seconds < r.max_duration,
        r.day_of_week is None or local.weekday() in r.day_of_week,
    )
    return all(checks)


def _candidates(plan: TariffPlan | None, kind: str, expired: bool) -> list[TariffElement]:
    if plan is None:
        return []
    if kind != RESERVATION:
        return [e for e in plan.elements if e.restrictions.reservation is None]
    used = [e for e in plan.elements if e.restrictions.reservation == "RESERVATION"]
    if not expired:
        return used
    expires = [e for e in plan.elements if e.restrictions.reservation == "RESERVATION_EXPIRES"]
    return expires + used  # RESERVATION_EXPIRES wins where both price a dimension


def _plan_at(
    plan: TariffPlan | None, switches: Sequence[TariffSwitch], moment: datetime
) -> TariffPlan | None:
    """The tariff in force at ``moment``: the last switch at or before it, else ``plan``."""
    for switch in switches:  # in time order
        if switch.at <= moment:
            plan = switch.plan
    return plan


def _phase(
    plan: TariffPlan | None,
    usage: Usage,
    phase_start: datetime,
    end: datetime,
    intervals: list[_Interval],
    *,
    reservation: bool,
    switches: Sequence[TariffSwitch] = (),
) -> list[Period]:
    zone = ZoneInfo(usage.time_zone)
    kinds = (RESERVATION,) if reservation else (CHARGING, PARKING)
    expired = usage.reservation is not None and usage.reservation.expired
    plans = {id(p): p for p in (plan, *(s.plan for s in switches))}
    elements = {
        (key, kind): _candidates(p, kind, expired) for key, p in plans.items() for kind in kinds
    }
    all_elements = [e for candidates in elements.values() for e in candidates]
    moments = _boundaries(phase_start, phase_start, end, all_elements, zone, intervals)
    cuts = {s.at for s in switches if phase_start < s.at < end} - set(moments)
    moments = sorted([*moments, *cuts])
    energy_at = _energies_at(intervals, moments)
    periods: list[Period] = []
    index = 0
    for a, b in itertools.pairwise(moments):
        while index + 1 < len(intervals) and intervals[index].end <= a:
            index += 1
        interval = intervals[index] if intervals else None
        power_w = interval.power_w if interval else Decimal(0)
        current = interval.current_a if interval else None
        drawing = power_w >= CHARGING_ABOVE_W
        kind = RESERVATION if reservation else CHARGING if drawing else PARKING
        energy_before = energy_at[a]
        active: dict[str, tuple[TariffElement, PriceComponent]] = {}
        local = a.astimezone(zone)
        elapsed = seconds_between(phase_start, a)
        tariff = _plan_at(plan, switches, a)
        for element in elements[id(tariff), kind]:
            if not holds(
                element.restrictions, local, elapsed, energy_before / 1000, power_w / 1000, current
            ):
                continue
            for dimension in _DIMENSIONS[kind]:
                component = element.component(dimension)
                if component is not None and dimension not in active:
                    active[dimension] = (element, component)
        segment = Period(
            start=a,
            end=b,
            kind=kind,
            phase_start=phase_start,
            energy_wh=energy_at[b] - energy_before,
            seconds=seconds_between(a, b),
            active=active,
            energy_before_wh=energy_before,
            tariff=tariff,
        )
        # Every reading inside the segment shares its band; they still count for min/max.
        inside = index
        while inside < len(intervals) and intervals[inside].start < b:
            _measure(segment, intervals[inside].power_w / 1000, intervals[inside].current_a)
            inside += 1
        if periods and periods[-1].signature() == segment.signature():
            _merge(periods[-1], segment)
        else:
            periods.append(segment)
    return periods


def _energies_at(intervals: list[_Interval], moments: list[datetime]) -> dict[datetime, Decimal]:
    """Cumulative energy at each (sorted) moment, spread evenly inside each interval."""
    energies: dict[datetime, Decimal] = {}
    index = 0
    for moment in moments:
        while index + 1 < len(intervals) and intervals[index].end < moment:
            index += 1
        if not intervals:
            energies[moment] = Decimal(0)
            continue
        interval = intervals[index]
        if moment >= interval.end:
            energies[moment] = interval.energy_end_wh
        elif moment <= interval.start:
            energies[moment] = interval.energy_start_wh
        else:
            share = seconds_between(interval.start, moment) / seconds_between(
                interval.start, interval.end
            )
            delta = interval.energy_end_wh - interval.energy_start_wh
            energy = (interval.energy_start_wh + delta * share).quantize(_ENERGY_QUANTUM)
            # Readings finer than the quantum: never step outside the interval's own range.
            energies[moment] = min(max(energy, interval.energy_start_wh), interval.energy_end_wh)
    return energies


def _measure(period: Period, power_kw: Decimal, current: Decimal | None) -> None:
    period.min_power_kw = _lower(period.min_power_kw, power_kw)
    period.max_power_kw = _upper(period.max_power_kw, power_kw)
    if current is not None:
        period.min_current_a = _lower(period.min_current_a, current)
        period.max_current_a = _upper(period.max_current_a, current)


def _lower(a: Decimal | None, b: Decimal) -> Decimal:
    return b if a is None else min(a, b)


def _upper(a: Decimal | None, b: Decimal) -> Decimal:
    return b if a is None else max(a, b)


def _merge(period: Period, segment: Period) -> None:
    period.end = segment.end
    period.energy_wh += segment.energy_wh
    period.seconds += segment.seconds
    for dimension, chosen in segment.active.items():
        period.active.setdefault(dimension, chosen)  # only FLAT can differ; the first counts
    for name in ("min_power_kw", "min_current_a"):
        value = getattr(segment, name)
        if value is not None:
            setattr(period, name, _lower(getattr(period, name), value))
    for name in ("max_power_kw", "max_current_a"):
        value = getattr(segment, name)
        if value is not None:
            setattr(period, name, _upper(getattr(period, name), value))


def charging_periods(
    plan: TariffPlan | None, usage: Usage, switches: Sequence[TariffSwitch] = ()
) -> list[Period]:
    """Cut ``usage`` into periods under ``plan`` (``None``: no tariff, periods by kind only).

    A reservation before the session gives RESERVATION periods first. The periods tile
    [reservation start or session start, session end] with no gap and no overlap; a session
    of zero length has no periods. ``switches`` change the tariff from their moment on.
    """
    with localcontext(prec=PRECISION):
        return _charging_periods(plan, usage, sorted(switches, key=lambda s: s.at))


def _charging_periods(
    plan: TariffPlan | None, usage: Usage, switches: Sequence[TariffSwitch]
) -> list[Period]:
    periods: list[Period] = []
    if usage.reservation is not None and usage.reservation.start < usage.reservation.end:
        periods += _phase(
            plan,
            usage,
            usage.reservation.start,
            usage.reservation.end,
            [],
            reservation=True,
        )
    if usage.start < usage.end:
        periods += _phase(
            plan,
            usage,
            usage.start,
            usage.end,
            _intervals(usage),
            reservation=False,
            switches=switches,
        )
    return periods
