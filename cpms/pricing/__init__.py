"""Pricing: OCPI 2.2.1 tariffs applied to a session's usage, exactly. Pure: no I/O.

- ``tariff_plan``: an OCPI Tariff read with exact numbers; which tariff a session gets,
  and a switch to another from a moment on (a charging preference accepted mid-session).
- ``usage``: what is priced (meter points, span, time zone, reservation).
- ``periods``: the session cut into charging periods at every tariff-relevant change.
- ``engine``: periods priced into lines, step_size, min/max price, totals.
- ``money``: ``Price``, VAT, and the one rounding rule.
"""

from cpms.pricing.engine import CATEGORIES, Bill, Line, price
from cpms.pricing.money import Price, minor_unit, round_money
from cpms.pricing.periods import CHARGING, PARKING, RESERVATION, Period, charging_periods
from cpms.pricing.tariff_plan import TariffPlan, TariffSwitch, select_tariff, wanted_tariff_types
from cpms.pricing.usage import MeterPoint, ReservationSpan, Usage

__all__ = [
    "CATEGORIES",
    "CHARGING",
    "PARKING",
    "RESERVATION",
    "Bill",
    "Line",
    "MeterPoint",
    "Period",
    "Price",
    "ReservationSpan",
    "TariffPlan",
    "TariffSwitch",
    "Usage",
    "charging_periods",
    "minor_unit",
    "price",
    "round_money",
    "select_tariff",
    "wanted_tariff_types",
]
