"""Meter value units: what stations write, and the SI unit and factor we store.

OCPP 1.6 ``UnitOfMeasure`` (and 2.0.1's ``unitOfMeasure.unit`` with its ``multiplier``)
mixes prefixes and spellings (``kWh``, ``Celcius``). Everything stored is normalised: energy
in Wh, power in W, current in A, voltage in V (DESIGN, Time and units). A station that names
no unit gets its measurand's usual one (the 1.6 default, Wh, is wrong for a voltage).
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["default_unit", "normalise"]

# reported unit -> (stored unit, factor)
_UNITS: dict[str, tuple[str, Decimal]] = {
    "Wh": ("Wh", Decimal(1)),
    "kWh": ("Wh", Decimal(1000)),
    "varh": ("varh", Decimal(1)),
    "kvarh": ("varh", Decimal(1000)),
    "W": ("W", Decimal(1)),
    "kW": ("W", Decimal(1000)),
    "VA": ("VA", Decimal(1)),
    "kVA": ("VA", Decimal(1000)),
    "var": ("var", Decimal(1)),
    "kvar": ("var", Decimal(1000)),
    "A": ("A", Decimal(1)),
    "V": ("V", Decimal(1)),
    "K": ("K", Decimal(1)),
    "Celsius": ("Celsius", Decimal(1)),
    "Celcius": ("Celsius", Decimal(1)),  # OCPP 1.6's own misspelling
    "Fahrenheit": ("Fahrenheit", Decimal(1)),
    "Percent": ("Percent", Decimal(1)),
    "Hz": ("Hz", Decimal(1)),
}

_BY_MEASURAND_PREFIX = (
    ("Energy.Reactive", "varh"),
    ("Energy", "Wh"),
    ("Power.Active", "W"),
    ("Power.Offered", "W"),
    ("Power.Reactive", "var"),
    ("Power.Factor", ""),
    ("Current", "A"),
    ("Voltage", "V"),
    ("Frequency", "Hz"),
    ("SoC", "Percent"),
    ("Temperature", "Celsius"),
)


def default_unit(measurand: str) -> str:
    """The unit a sample of ``measurand`` is in when the station names none."""
    for prefix, unit in _BY_MEASURAND_PREFIX:
        if measurand.startswith(prefix):
            return unit
    return "Wh"


def normalise(value: Decimal, unit: str, multiplier: int = 0) -> tuple[Decimal, str] | None:
    """Return ``value`` in its stored unit and that unit, or None for a unit we do not know.

    ``multiplier`` is OCPP 2.0.1's power-of-ten (``kWh`` may also arrive as Wh with 3).
    """
    if unit == "":
        return value.scaleb(multiplier), ""
    known = _UNITS.get(unit)
    if known is None:
        return None
    stored, factor = known
    return (value * factor).scaleb(multiplier), stored
