"""OCPP 1.6 ``MeterValue`` lists to core readings: units normalised, signed values kept raw.

Each ``sampledValue`` keeps its measurand (default ``Energy.Active.Import.Register``), phase,
location and context (``Sample.Periodic``, ``Transaction.Begin``, ...) as sent, its value in
the reported unit and in SI (``ocpp_gateway.units``). A ``SignedData`` value (OCMF, EDL) is
not a number: it is kept verbatim for the CDR's signed data and never billed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from cpms.charging import ENERGY_REGISTER, MeterValue, Sample
from ocpp_gateway.rpc import ErrorCode, RpcError
from ocpp_gateway.timestamps import parse_timestamp
from ocpp_gateway.units import default_unit, normalise

__all__ = ["read_meter_values"]

logger = logging.getLogger("ocpp_gateway.v16")


def _refuse(path: str, problem: str) -> RpcError:
    return RpcError(
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, f"{path}: {problem}", details={"path": path}
    )


def _sample(raw: dict[str, Any], path: str, *, lenient: bool, station: str) -> Sample | None:
    measurand = raw.get("measurand") or ENERGY_REGISTER
    common = {
        "phase": raw.get("phase"),
        "location": raw.get("location"),
        "context": raw.get("context"),
    }
    if raw.get("format") == "SignedData":
        return Sample(
            measurand,
            Decimal(0),
            Decimal(0),
            unit=raw.get("unit"),
            signed_data={"format": "SignedData", "value": raw["value"]},
            **common,
        )
    try:
        value = Decimal(raw["value"].strip())
        if not value.is_finite():
            raise InvalidOperation
    except (InvalidOperation, AttributeError):
        if lenient:
            logger.warning("station %s: %s: %r is not a number; ignored", station, path, raw)
            return None
        raise _refuse(f"{path}.value", f"{raw['value']!r} is not a decimal number") from None
    unit = raw.get("unit") or default_unit(measurand)
    normalised = normalise(value, unit)
    if normalised is None:  # only a lenient station gets here: strict ones fail the schema
        logger.warning("station %s: %s: unit %r unknown; kept as sent", station, path, unit)
        normalised = (value, unit)
    value_si, _ = normalised
    return Sample(measurand, value, value_si, unit=unit, **common)


def read_meter_values(
    raw_values: Sequence[dict[str, Any]], *, path: str, lenient: bool, station: str
) -> tuple[MeterValue, ...]:
    """Read a ``meterValue`` / ``transactionData`` list into core ``MeterValue``s."""
    readings: list[MeterValue] = []
    for index, raw in enumerate(raw_values):
        here = f"{path}[{index}]"
        station_time = parse_timestamp(raw["timestamp"], path=f"{here}.timestamp", lenient=lenient)
        samples = [
            sample
            for position, sampled in enumerate(raw["sampledValue"])
            if (
                sample := _sample(
                    sampled, f"{here}.sampledValue[{position}]", lenient=lenient, station=station
                )
            )
            is not None
        ]
        readings.append(MeterValue(station_time, tuple(samples)))
    return tuple(readings)
