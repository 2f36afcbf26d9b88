"""Money: exact amounts, the VAT rule, and the one place prices are rounded.

Every amount is a ``Decimal``. Pricing multiplies and adds exact values and rounds **once**:
each figure that leaves the engine (a CDR's ``total_cost``, ``total_energy_cost``, ..., a
session's running ``total_cost``) is rounded from its exact sum to the currency's minor unit
(ISO 4217: two decimals for EUR, none for JPY, three for KWD), half away from zero. Lines of
an explanation show the exact amounts, so a reader can see where rounding happened.
OCPI leaves price rounding to contracts and law; this is the rule we state and keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = ["ZERO", "Price", "decimal_of", "minor_unit", "round_money"]

ZERO = Decimal(0)

# ISO 4217 currencies whose minor unit is not 1/100.
_MINOR_UNITS = {
    "BHD": 3, "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3,
    "JPY": 0, "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0,
    "TND": 3, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip


def minor_unit(currency: str) -> int:
    """Return how many decimals ``currency`` is billed in (ISO 4217; 2 unless listed)."""
    return _MINOR_UNITS.get(currency.upper(), 2)


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round an exact amount to ``currency``'s minor unit, half away from zero."""
    return amount.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_UP)


def decimal_of(value: Any) -> Decimal:
    """Read a JSON number as the decimal it was written as (never via binary float maths)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{value!r} is not a number")
    return Decimal(str(value))  # str(0.1) == "0.1": the shortest repr is the JSON text


@dataclass(frozen=True, slots=True)
class Price:
    """An OCPI Price: an amount excluding VAT and including it."""

    excl_vat: Decimal = ZERO
    incl_vat: Decimal = ZERO

    def __add__(self, other: Price) -> Price:
        return Price(self.excl_vat + other.excl_vat, self.incl_vat + other.incl_vat)

    def __neg__(self) -> Price:
        return Price(-self.excl_vat, -self.incl_vat)

    @classmethod
    def of(cls, excl_vat: Decimal, vat_percent: Decimal | None) -> Price:
        """Price ``excl_vat`` with a VAT rate in percent; ``None`` means no VAT applies."""
        if vat_percent is None:
            return cls(excl_vat, excl_vat)
        return cls(excl_vat, excl_vat * (1 + vat_percent / 100))

    def rounded(self, currency: str) -> Price:
        """Both amounts rounded to ``currency``'s minor unit (the one rounding step)."""
        return Price(round_money(self.excl_vat, currency), round_money(self.incl_vat, currency))

    def to_ocpi(self) -> dict[str, float]:
        """As an OCPI Price object. JSON has no decimals; a rounded amount keeps its text."""
        return {"excl_vat": float(self.excl_vat), "incl_vat": float(self.incl_vat)}
