"""Unit tests of ``ocpp_gateway.v201.meter_values``: 2.0.1 meter values to core readings.

Drives ``read_meter_values`` with payload dicts as a station sends them (numbers as JSON reads
them, so floats), no socket, no database. The 1.6 reader is the reference: the same reading in
either version must give the same ``Sample``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from cpms.charging import ENERGY_REGISTER, MeterValue, Sample
from ocpp_gateway.rpc import ErrorCode, RpcError
from ocpp_gateway.v16.meter_values import read_meter_values as read_v16
from ocpp_gateway.v201.meter_values import read_meter_values

AT = "2024-05-01T10:00:00Z"
SIGNED = {
    "signedMeterData": "T0NNRnx7IlJEIjpbeyJSViI6MTIuNSwiUlUiOiJrV2gifV19fA==",
    "signingMethod": "ECDSA-secp256r1-SHA256",
    "encodingMethod": "OCMF",
    "publicKey": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
}


def read(*sampled: dict[str, Any], at: str = AT, lenient: bool = False) -> tuple[MeterValue, ...]:
    """Read one meter value of ``sampled`` values, parsed from JSON text as the gateway does."""
    text = json.dumps([{"timestamp": at, "sampledValue": list(sampled)}])
    return read_meter_values(json.loads(text), path="meterValue", lenient=lenient, station="CS1")


def only(readings: tuple[MeterValue, ...]) -> Sample:
    """The single sample of a single reading."""
    [reading] = readings
    [sample] = reading.samples
    return sample


@pytest.mark.parametrize(
    ("value", "unit_of_measure", "value_as_reported", "unit", "value_wh"),
    [
        (12.5, {"unit": "kWh"}, "12.5", "kWh", "12500"),
        (12.5, {"unit": "Wh", "multiplier": 3}, "12500", "Wh", "12500"),
        (1.25, {"unit": "kWh", "multiplier": 1}, "12.5", "kWh", "12500"),
        (12500000, {"unit": "Wh", "multiplier": -3}, "12500", "Wh", "12500"),
        (12.5, {"multiplier": 3}, "12500", "Wh", "12500"),  # unit absent: Wh, the default
        (12.5, {"unit": "kWh", "multiplier": 0}, "12.5", "kWh", "12500"),
        (0.1, {"unit": "kWh"}, "0.1", "kWh", "100"),  # read through its text, not its float
        (7, None, "7", "Wh", "7"),
    ],
)
def test_energy_is_read_in_its_unit_times_its_multiplier_and_in_wh(
    value: float,
    unit_of_measure: dict[str, Any] | None,
    value_as_reported: str,
    unit: str,
    value_wh: str,
) -> None:
    sampled: dict[str, Any] = {"value": value}
    if unit_of_measure is not None:
        sampled["unitOfMeasure"] = unit_of_measure
    sample = only(read(sampled))
    assert sample.measurand == ENERGY_REGISTER
    assert (sample.value, sample.unit, sample.value_si) == (
        Decimal(value_as_reported),
        unit,
        Decimal(value_wh),
    )
    assert sample.signed_data is None


@pytest.mark.parametrize(
    ("measurand", "unit", "value_si"),
    [
        ("Voltage", "V", "230.5"),
        ("Current.Import", "A", "230.5"),
        ("Power.Active.Import", "W", "230.5"),
        ("SoC", "Percent", "230.5"),
        ("Frequency", "Hz", "230.5"),
        ("Energy.Reactive.Import.Register", "varh", "230.5"),
        ("Power.Factor", "", "230.5"),
    ],
)
def test_a_sample_without_a_unit_gets_its_measurands_usual_unit(
    measurand: str, unit: str, value_si: str
) -> None:
    sample = only(read({"value": 230.5, "measurand": measurand}))
    assert (sample.measurand, sample.unit, sample.value_si) == (measurand, unit, Decimal(value_si))


def test_per_phase_samples_keep_phase_location_and_context_in_order() -> None:
    [reading] = read(
        *(
            {
                "value": 1000 * number,
                "measurand": ENERGY_REGISTER,
                "phase": phase,
                "context": "Sample.Periodic",
                "location": "Outlet",
            }
            for number, phase in enumerate(["L1", "L2", "L3"], start=1)
        ),
        {"value": 16.1, "measurand": "Current.Import", "phase": "L1", "unitOfMeasure": {}},
        {"value": 240, "measurand": "Voltage", "phase": "L1-N", "location": "Inlet"},
    )
    assert reading.station_time == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert [(s.measurand, s.phase, s.location, s.value_si) for s in reading.samples] == [
        (ENERGY_REGISTER, "L1", "Outlet", Decimal(1000)),
        (ENERGY_REGISTER, "L2", "Outlet", Decimal(2000)),
        (ENERGY_REGISTER, "L3", "Outlet", Decimal(3000)),
        ("Current.Import", "L1", None, Decimal("16.1")),
        ("Voltage", "L1-N", "Inlet", Decimal(240)),
    ]
    assert {s.context for s in reading.samples[:3]} == {"Sample.Periodic"}
    assert reading.samples[3].context is None  # kept as sent: no default filled in


def test_a_signed_value_is_a_billable_reading_and_a_signed_one_beside_it() -> None:
    [reading] = read(
        {
            "value": 12.5,
            "context": "Transaction.Begin",
            "unitOfMeasure": {"unit": "kWh"},
            "signedMeterValue": SIGNED,
        },
        {"value": 12.6, "unitOfMeasure": {"unit": "kWh"}},
    )
    plain, signed, unsigned = reading.samples
    assert plain == Sample(
        ENERGY_REGISTER,
        Decimal("12.5"),
        Decimal(12500),
        unit="kWh",
        context="Transaction.Begin",
    )
    assert signed.signed_data == SIGNED
    assert (signed.measurand, signed.value_si, signed.context) == (
        ENERGY_REGISTER,
        Decimal(12500),
        "Transaction.Begin",
    )
    assert unsigned.signed_data is None
    assert unsigned.value_si == Decimal(12600)


@pytest.mark.parametrize("timestamp", ["yesterday", "2024-13-01T00:00:00Z", ""])
def test_an_unreadable_timestamp_is_refused_from_a_strict_station_and_dropped_for_a_lenient_one(
    timestamp: str,
) -> None:
    with pytest.raises(RpcError) as refused:
        read({"value": 1}, {"value": 2}, at=timestamp)
    assert refused.value.error_code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert refused.value.details == {"path": "meterValue[0].timestamp"}

    [reading] = read({"value": 1}, {"value": 2}, at=timestamp, lenient=True)
    assert reading.station_time is None  # the core then takes the receive time
    assert [s.value_si for s in reading.samples] == [Decimal(1), Decimal(2)]


def test_a_timestamp_with_an_offset_is_read_as_utc_and_each_reading_keeps_its_own() -> None:
    raw = [
        {"timestamp": "2024-05-01T12:00:00+02:00", "sampledValue": [{"value": 1}]},
        {"timestamp": "2024-05-01T10:15:00Z", "sampledValue": [{"value": 2}]},
    ]
    first, second = read_meter_values(raw, path="meterValue", lenient=False, station="CS1")
    assert first.station_time == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert second.station_time == datetime(2024, 5, 1, 10, 15, tzinfo=UTC)


@pytest.mark.parametrize("lenient", [False, True])
def test_an_unknown_unit_is_kept_as_sent_and_logged(
    lenient: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # 2.0.1's unit is free text (a "custom" unit is allowed), so even a strict station may send
    # one: it is stored as reported, with its value unconverted, as for a lenient 1.6 station.
    with caplog.at_level(logging.WARNING, logger="ocpp_gateway.v201"):
        sample = only(
            read(
                {
                    "value": 3.5,
                    "measurand": "Voltage",
                    "unitOfMeasure": {"unit": "mV", "multiplier": 1},
                },
                lenient=lenient,
            )
        )
    assert (sample.value, sample.unit, sample.value_si) == (Decimal(35), "mV", Decimal(35))
    assert "unit 'mV' unknown" in caplog.text
    assert "CS1" in caplog.text


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_a_value_that_is_not_a_finite_number_is_refused_strictly_and_dropped_leniently(
    text: str,
) -> None:
    # Python's JSON reader accepts these words, and they pass the schema's "type": "number".
    payload = f'[{{"timestamp": "{AT}", "sampledValue": [{{"value": {text}}}, {{"value": 5}}]}}]'
    with pytest.raises(RpcError) as refused:
        read_meter_values(json.loads(payload), path="meterValue", lenient=False, station="CS1")
    assert refused.value.error_code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert refused.value.details == {"path": "meterValue[0].sampledValue[0].value"}

    [reading] = read_meter_values(
        json.loads(payload), path="meterValue", lenient=True, station="CS1"
    )
    assert [s.value_si for s in reading.samples] == [Decimal(5)]


def test_a_multiplier_past_any_decimal_is_refused_not_a_crash() -> None:
    with pytest.raises(RpcError) as refused:
        read({"value": 1, "unitOfMeasure": {"unit": "Wh", "multiplier": 10**9}})
    assert refused.value.error_code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION


@pytest.mark.parametrize(
    ("v16", "v201"),
    [
        ({"value": "12.5", "unit": "kWh"}, {"value": 12.5, "unitOfMeasure": {"unit": "kWh"}}),
        ({"value": "1500"}, {"value": 1500}),
        (
            {"value": "16.2", "measurand": "Current.Import", "phase": "L2", "location": "Outlet"},
            {"value": 16.2, "measurand": "Current.Import", "phase": "L2", "location": "Outlet"},
        ),
        (
            {"value": "21", "measurand": "Power.Active.Import", "unit": "kW", "context": "Trigger"},
            {
                "value": 21,
                "measurand": "Power.Active.Import",
                "unitOfMeasure": {"unit": "kW"},
                "context": "Trigger",
            },
        ),
    ],
)
def test_the_same_reading_gives_the_same_sample_as_from_a_1_6_station(
    v16: dict[str, Any], v201: dict[str, Any]
) -> None:
    old = read_v16(
        [{"timestamp": AT, "sampledValue": [v16]}], path="meterValue", lenient=False, station="A"
    )
    assert read(v201) == old
