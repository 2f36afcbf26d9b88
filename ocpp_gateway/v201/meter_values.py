"""OCPP 2.0.1 ``MeterValueType`` lists to core readings: units normalised, signed values kept.

The 2.0.1 twin of ``ocpp_gateway.v16.meter_values``, with the same contract: each
``sampledValue`` keeps its measurand (default ``Energy.Active.Import.Register``), phase,
location and context as sent, and its value both in the reported unit and in SI
(``ocpp_gateway.units``). What 2.0.1 changes:

- ``value`` is a JSON number, not a decimal string. A float is read through its shortest text
  (``0.1`` stays ``0.1``, not ``0.1000000000000000055...``), and NaN or Infinity (which Python's
  JSON reader lets through) is refused like 1.6's unreadable text.
- ``unitOfMeasure`` is ``{unit?, multiplier?}``: ``unit`` is free text (the schema has no enum,
  and Part 2's appendix allows a custom unit), ``multiplier`` a power of ten. The ``Sample``
  carries the reading in the reported unit with the multiplier applied (``{value: 12.5,
  unitOfMeasure: {unit: "Wh", multiplier: 3}}`` is 12500 Wh), so value and unit always agree.
  A unit we do not know is kept as sent, as for a lenient 1.6 station, even for a strict
  station: no 2.0.1 schema refuses it, so refusing it would be ours alone.
- ``signedMeterValue`` accompanies a number (1.6's ``SignedData`` replaces it). A signed
  sampled value becomes two ``Sample``s: the plain reading, which the core bills, and the same
  reading with ``signed_data`` (the ``SignedMeterValueType`` dict as sent) for the CDR's signed
  data. One sample would not do: the core bills only samples without ``signed_data`` (1.6
  signed values carry no number), and a 2.0.1 meter that signs its Transaction.Begin and
  Transaction.End registers, as calibration law wants, would bill only its periodic readings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from cpms.charging import ENERGY_REGISTER, MeterValue, Sample
from ocpp_gateway.rpc import ErrorCode, RpcError
from ocpp_gateway.timestamps import parse_timestamp
from ocpp_gateway.units import default_unit, normalise

__all__ = ["read_meter_values"]

logger = logging.getLogger("ocpp_gateway.v201")


def _refuse(path: str, problem: str) -> RpcError:
    return RpcError(
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, f"{path}: {problem}", details={"path": path}
    )


def _number(raw: Any, multiplier: int) -> Decimal | None:
    """The decimal a JSON number times ten to ``multiplier`` stands for.

    None for NaN, Infinity, a non-number, or a multiplier too large for any decimal.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None  # bool is an int to Python, never a number to JSON Schema
    if isinstance(raw, float) and not math.isfinite(raw):
        return None
    # A float is read through its shortest text, the one that reads back as it: what was sent.
    number = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
    try:
        return number.scaleb(multiplier)
    except (InvalidOperation, TypeError):  # an exponent past Decimal's range; a bool multiplier
        return None


def _samples(raw: dict[str, Any], path: str, *, lenient: bool, station: str) -> tuple[Sample, ...]:
    """Read one ``SampledValueType``: one sample, two when signed, none when unreadable."""
    measurand = raw.get("measurand") or ENERGY_REGISTER
    measure = raw.get("unitOfMeasure") or {}
    unit = measure.get("unit") or default_unit(measurand)
    value = _number(raw.get("value"), measure.get("multiplier") or 0)
    if value is None:
        if lenient:
            logger.warning("station %s: %s: %r is not a number; ignored", station, path, raw)
            return ()
        raise _refuse(f"{path}.value", f"{raw.get('value')!r} is not a finite number")
    normalised = normalise(value, unit)
    if normalised is None:  # legal in 2.0.1 (a "custom" unit): kept as sent, as 1.6 lenient
        logger.warning("station %s: %s: unit %r unknown; kept as sent", station, path, unit)
        normalised = (value, unit)
    value_si, _ = normalised
    plain = Sample(
        measurand,
        value,
        value_si,
        unit=unit,
        phase=raw.get("phase"),
        location=raw.get("location"),
        context=raw.get("context"),
    )
    signed = raw.get("signedMeterValue")
    if signed is None:
        return (plain,)
    return plain, Sample(
        measurand,
        value,
        value_si,
        unit=unit,
        phase=plain.phase,
        location=plain.location,
        context=plain.context,
        signed_data=dict(signed),
    )


def read_meter_values(
    meter_values: Sequence[dict[str, Any]], *, path: str, lenient: bool, station: str
) -> tuple[MeterValue, ...]:
    """Read a 2.0.1 ``meterValue`` list into core ``MeterValue``s.

    ``path`` names the list in error messages (``"meterValue"``). A strict station's unreadable
    timestamp or value is a PropertyConstraintViolation; a lenient station's timestamp becomes
    None (the core uses the receive time) and its unreadable value is dropped and logged.
    """
    readings: list[MeterValue] = []
    for index, raw in enumerate(meter_values):
        here = f"{path}[{index}]"
        station_time = parse_timestamp(raw["timestamp"], path=f"{here}.timestamp", lenient=lenient)
        samples = [
            sample
            for position, sampled in enumerate(raw["sampledValue"])
            for sample in _samples(
                sampled, f"{here}.sampledValue[{position}]", lenient=lenient, station=station
            )
        ]
        readings.append(MeterValue(station_time, tuple(samples)))
    return tuple(readings)
