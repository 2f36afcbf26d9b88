"""End to end, OCPP 1.6: a session driven over a real websocket yields the CDR pricing predicts.

A real node (``cpms.runtime.Runtime``) on SQLite (and PostgreSQL when the conftest has it),
an official OCPI example tariff imported and put on the station's connector through the core's
own services, then raw StartTransaction / MeterValues / StopTransaction frames with station
timestamps of yesterday. Each CDR is checked three ways: against a bill priced independently
(``cpms.pricing.price`` on a ``Usage`` built from the frames we sent, not from the rows the
node wrote), against a figure worked out by hand in the test, and by where its charging
periods start. Covered: the TIME/PARKING_TIME tariff 13 (charging -> parking, step_size on
parking only), the current- and time-restricted tariff 4 (phases summed, the 18:00 end of
weekday parking in Europe/Amsterdam), a replayed stop (one CDR, same answer), a stuck session
closed by rule at its last reading and later corrected by the station's own stop (credit CDR
``<id>-C`` and a new CDR), signed OCMF readings carried into the CDR's ``signed_data``, and
half-cent ties rounded from the exact amount (once, half away from zero).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from e2e.ocpp16.node import Node, NodeStarter, iso, parse_iso
from raw_station import STEP, RawStation

from cpms.admission import AdmissionPolicy
from cpms.locations import assign_tariffs
from cpms.model import Cdr, Session, utcnow
from cpms.pricing import Bill, MeterPoint, TariffPlan, Usage, price
from cpms.tariffs import import_tariffs

from support import EXAMPLES, TIME_UNIT

CARD = "CARD-BILL"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
"""The default location's time zone (``Settings.default_location_time_zone``)."""
TARIFF_13 = "tariff_13_simple_3hour_5parking.json"
TARIFF_4 = "tariff_4_complex.json"
PHASES = ("L1", "L2", "L3")
OCMF_BEGIN = (
    'OCMF|{"FV":"1.0","GI":"ABL SBC-301","GS":"808829900001","PG":"T1","RD":[{"TM":'
    '"2024-05-01T08:00:00,000+0000 S","TX":"B","RV":10.0,"RI":"1-b:1.8.0","RU":"kWh",'
    '"ST":"G"}]}|{"SA":"ECDSA-secp256r1-SHA256","SD":"3045022100B0B0B0"}'
)
OCMF_END = (
    'OCMF|{"FV":"1.0","GI":"ABL SBC-301","GS":"808829900001","PG":"T2","RD":[{"TM":'
    '"2024-05-01T09:00:00,000+0000 S","TX":"E","RV":17.5,"RI":"1-b:1.8.0","RU":"kWh",'
    '"ST":"G"}]}|{"SA":"ECDSA-secp256r1-SHA256","SD":"3045022100E0E0E0"}'
)
"""Signed readings as an Eichrecht station sends them (text, not base64)."""


# Moments: station clocks of yesterday are believable (after 2000, not ahead of ours) ------


def yesterday_utc(hours: float = 0) -> datetime:
    """Yesterday at 08:00 UTC plus ``hours``, in whole seconds."""
    day = utcnow().date() - timedelta(days=1)
    return datetime.combine(day, time(8), UTC) + timedelta(seconds=round(hours * 3600))


def last_weekday() -> date:
    """The latest Monday-to-Friday before today in Amsterdam (never a daylight-saving day)."""
    day = datetime.now(AMSTERDAM).date() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def amsterdam(day: date, hour: int, minute: int = 0) -> datetime:
    """That wall-clock time in Amsterdam, in UTC."""
    return datetime.combine(day, time(hour, minute), AMSTERDAM).astimezone(UTC)


# What the station sends, and the same readings as the pricing engine's input -------------


@dataclass(frozen=True)
class Reading:
    """One meter value a station sends: the register, and optionally current per phase."""

    at: datetime
    register_wh: int
    phase_current_a: int | None = None

    def sampled_values(self) -> list[dict[str, str]]:
        values = [{"value": str(self.register_wh), "unit": "Wh", "context": "Sample.Periodic"}]
        if self.phase_current_a is not None:
            values += [
                {
                    "value": str(self.phase_current_a),
                    "measurand": "Current.Import",
                    "phase": phase,
                    "unit": "A",
                    "context": "Sample.Periodic",
                }
                for phase in PHASES
            ]
        return values


def example(name: str) -> dict[str, Any]:
    """An official OCPI 2.2.1 example document, as published."""
    document: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return document


def predicted_bill(
    tariff: Mapping[str, Any],
    *,
    start: datetime,
    meter_start: int,
    readings: Sequence[Reading],
    end: datetime,
    meter_stop: int,
    voltage_v: Decimal | None,
) -> Bill:
    """Price what we sent, without the node: billed energy is each register minus the start."""
    points = [MeterPoint(start, Decimal(0))]
    for reading in readings:
        current = None if reading.phase_current_a is None else Decimal(reading.phase_current_a * 3)
        points.append(MeterPoint(reading.at, Decimal(reading.register_wh - meter_start), current))
    points.append(MeterPoint(end, Decimal(meter_stop - meter_start)))
    usage = Usage(
        start=start, end=end, points=points, time_zone="Europe/Amsterdam", voltage_v=voltage_v
    )
    return price(TariffPlan.from_ocpi(tariff), usage)


def money(excl_vat: str, incl_vat: str) -> dict[str, float]:
    """An OCPI Price as a CDR carries it."""
    return {"excl_vat": float(excl_vat), "incl_vat": float(incl_vat)}


# Driving a station ---------------------------------------------------------------------------


async def priced_connector(node: Node, station: RawStation, tariff: Mapping[str, Any]) -> None:
    """Boot, report connector 1 (so its EVSE exists), import ``tariff`` and assign it there."""
    await node.create_token(CARD)
    await station.boot()
    await station.result(
        "StatusNotification", {"connectorId": 1, "status": "Available", "errorCode": "NoError"}
    )
    evse = await node.evse(station.station_id, 1)
    await import_tariffs(node.runtime.uow(), [tariff])
    await assign_tariffs(node.runtime.uow(), evse.location_id, evse.uid, "1", [tariff["id"]])


async def connector_voltage(node: Node, station_id: str) -> Decimal:
    (evse,) = await node.evses(station_id)
    return Decimal(evse.connectors[0].max_voltage)


async def start(station: RawStation, at: datetime, meter_start: int) -> int:
    answer = await station.result(
        "StartTransaction",
        {"connectorId": 1, "idTag": CARD, "meterStart": meter_start, "timestamp": iso(at)},
    )
    assert answer["idTagInfo"]["status"] == "Accepted"
    return int(answer["transactionId"])


async def send(station: RawStation, transaction_id: int, reading: Reading) -> None:
    payload = {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [{"timestamp": iso(reading.at), "sampledValue": reading.sampled_values()}],
    }
    assert await station.result("MeterValues", payload) == {}


def stop_payload(
    transaction_id: int, at: datetime, meter_stop: int, **extra: Any
) -> dict[str, Any]:
    return {
        "transactionId": transaction_id,
        "idTag": CARD,
        "meterStop": meter_stop,
        "timestamp": iso(at),
        "reason": "EVDisconnected",
        **extra,
    }


async def cdrs_of(node: Node, session: Session) -> list[Cdr]:
    return await node.rows(Cdr, Cdr.session_id == session.id, order_by=Cdr.id)


def period_starts(cdr: Cdr) -> list[datetime]:
    return [parse_iso(p["start_date_time"]) for p in cdr.document["charging_periods"]]


def dimensions(cdr: Cdr, index: int) -> dict[str, float]:
    period = cdr.document["charging_periods"][index]
    return {d["type"]: d["volume"] for d in period["dimensions"]}


# 1. Tariff 13: TIME 3.00/h (VAT 10 %, step 60 s), PARKING_TIME 5.00/h (VAT 20 %, step 300 s)


@dataclass(frozen=True)
class Tariff13Session:
    node: Node
    session: Session
    cdr: Cdr
    predicted: Bill
    charging_until: datetime


async def tariff_13_session(node: Node) -> Tariff13Session:
    """Charge 2 h 30 min 30 s, park 47 min, stop: one CDR under tariff 13."""
    tariff = example(TARIFF_13)
    t0, meter_start = yesterday_utc(), 10_000
    readings = [
        Reading(yesterday_utc(1), 17_000),
        # The last rise of the register: charging ends here, parking starts.
        Reading(yesterday_utc(2.5) + timedelta(seconds=30), 27_500),
        Reading(yesterday_utc(3), 27_500),
    ]
    end, meter_stop = yesterday_utc(3) + timedelta(minutes=17, seconds=30), 27_500
    async with node.connect("BILL-13") as station:
        await priced_connector(node, station, tariff)
        tx = await start(station, t0, meter_start)
        for reading in readings:
            await send(station, tx, reading)
        answer = await station.result("StopTransaction", stop_payload(tx, end, meter_stop))
    assert answer == {"idTagInfo": {"status": "Accepted"}}
    session = await node.session(tx)
    (cdr,) = await cdrs_of(node, session)
    predicted = predicted_bill(
        tariff,
        start=t0,
        meter_start=meter_start,
        readings=readings,
        end=end,
        meter_stop=meter_stop,
        voltage_v=await connector_voltage(node, "BILL-13"),
    )
    return Tariff13Session(node, session, cdr, predicted, readings[1].at)


async def test_tariff_13_charging_then_parking_costs_what_pricing_and_hand_say(
    open_node: Node,
) -> None:
    run = await tariff_13_session(open_node)
    session, cdr = run.session, run.cdr
    assert session.status == "COMPLETED"
    assert session.tariff_id == "21"
    assert cdr.credit is False
    assert cdr.document["id"] == cdr.id
    assert cdr.document["tariffs"][0]["id"] == "21"

    # The node's figure equals the one priced from the frames we sent.
    assert cdr.document["total_cost"] == run.predicted.total_cost.to_ocpi()
    assert (cdr.total_cost_excl_vat, cdr.total_cost_incl_vat) == (
        run.predicted.total_cost.excl_vat,
        run.predicted.total_cost.incl_vat,
    )
    # By hand. Charging 08:00:00 -> 10:30:30 = 9030 s; parking 10:30:30 -> 11:17:30 = 2820 s.
    # step_size applies once to the time group, set by the last period billing time (parking,
    # 300 s): parking 2820 s -> 3000 s; charging before parking is not rounded.
    #   TIME     9030/3600 h x 3.00 = 7.525        excl; x 1.10 = 8.2775 incl
    #   PARKING  3000/3600 h x 5.00 = 4.1666...    excl; x 1.20 = 5.00   incl
    #   total    11.691666... -> 11.69 excl;  13.2775 -> 13.28 incl (rounded once, half up)
    assert cdr.document["total_cost"] == money("11.69", "13.28")
    assert (cdr.total_cost_excl_vat, cdr.total_cost_incl_vat) == (
        Decimal("11.69"),
        Decimal("13.28"),
    )
    assert cdr.document["total_energy"] == 17.5
    assert cdr.document["total_time"] == round((9030 + 2820) / 3600, 6)
    assert cdr.document["total_parking_time"] == round(2820 / 3600, 6)

    # Charging -> parking exactly at the last rise of the register.
    assert period_starts(cdr) == [yesterday_utc(), run.charging_until]
    charging, parking = dimensions(cdr, 0), dimensions(cdr, 1)
    assert charging == {"ENERGY": 17.5, "TIME": round(9030 / 3600, 6)}
    assert parking == {"PARKING_TIME": round(2820 / 3600, 6)}


async def test_tariff_13_category_costs_are_rounded_from_exact_amounts(open_node: Node) -> None:
    cdr = (await tariff_13_session(open_node)).cdr
    # By hand: TIME 9030 s x 3.00/h = 27090/3600 = 7.525 exactly (x 1.10 = 8.2775); a tie,
    # rounded half away from zero: 7.53 / 8.28. PARKING 3000 s x 5.00/h = 4.1666.. -> 4.17 / 5.00.
    assert cdr.document["total_parking_cost"] == money("4.17", "5.00")
    assert cdr.document["total_time_cost"] == money("7.53", "8.28")


async def test_a_charging_only_total_is_rounded_from_its_exact_amount(open_node: Node) -> None:
    tariff = example(TARIFF_13)
    t0, meter_start = yesterday_utc(), 10_000
    readings = [Reading(yesterday_utc(1), 17_000)]
    end, meter_stop = yesterday_utc(2.5) + timedelta(seconds=30), 27_500
    async with open_node.connect("BILL-TIE") as station:
        await priced_connector(open_node, station, tariff)
        tx = await start(station, t0, meter_start)
        for reading in readings:
            await send(station, tx, reading)
        await station.result("StopTransaction", stop_payload(tx, end, meter_stop))
    (cdr,) = await cdrs_of(open_node, await open_node.session(tx))
    predicted = predicted_bill(
        tariff,
        start=t0,
        meter_start=meter_start,
        readings=readings,
        end=end,
        meter_stop=meter_stop,
        voltage_v=await connector_voltage(open_node, "BILL-TIE"),
    )
    assert cdr.document["total_cost"] == predicted.total_cost.to_ocpi()
    assert period_starts(cdr) == [t0]
    # By hand: charging all along, 9030 s; TIME's step of 60 s (the last time component)
    # rounds it up to 9060 s = 151 min. 151/60 h x 3.00 = 7.55 excl; x 1.10 = 8.305 incl,
    # a tie rounded half away from zero: 8.31.
    assert cdr.document["total_time_cost"] == money("7.55", "8.31")
    assert cdr.document["total_cost"] == money("7.55", "8.31")


# 1. Tariff 4: FLAT 2.50; TIME by summed current and weekday; weekday parking 09:00-18:00 ------


async def test_tariff_4_current_and_time_of_day_restrictions_switch_at_the_right_instants(
    open_node: Node,
) -> None:
    tariff = example(TARIFF_4)
    day = last_weekday()
    t0, meter_start = amsterdam(day, 15), 5_000
    readings = [
        # 16 A on each of three phases: 48 A summed, >= 32 A -> element 3, TIME 2.00/h.
        Reading(amsterdam(day, 16), 16_000, phase_current_a=16),
        # 10 A x 3 = 30 A, < 32 A -> element 2, TIME 1.00/h; the register's last rise.
        Reading(amsterdam(day, 17, 7), 23_000, phase_current_a=10),
        Reading(amsterdam(day, 17, 30), 23_000, phase_current_a=0),
    ]
    end, meter_stop = amsterdam(day, 18, 40), 23_000
    async with open_node.connect("BILL-4") as station:
        await priced_connector(open_node, station, tariff)
        tx = await start(station, t0, meter_start)
        for reading in readings:
            await send(station, tx, reading)
        answer = await station.result("StopTransaction", stop_payload(tx, end, meter_stop))
    assert answer == {"idTagInfo": {"status": "Accepted"}}
    session = await open_node.session(tx)
    assert session.time_zone == "Europe/Amsterdam"
    assert session.tariff_id == "14"
    (cdr,) = await cdrs_of(open_node, session)

    predicted = predicted_bill(
        tariff,
        start=t0,
        meter_start=meter_start,
        readings=readings,
        end=end,
        meter_stop=meter_stop,
        voltage_v=await connector_voltage(open_node, "BILL-4"),
    )
    assert cdr.document["total_cost"] == predicted.total_cost.to_ocpi()
    # By hand, on a weekday (local time; a reading's current describes the interval it ends,
    # as its energy does):
    #   FLAT (element 1), once                      2.50        excl; x 1.15 = 2.875   incl
    #   15:00-16:00 charging, 48 A: TIME 1 h x 2.00 = 2.00      excl; x 1.20 = 2.40    incl
    #   16:00-17:07 charging, 30 A: TIME 67/60 h x 1.00 = 1.11666.. ; x 1.20 = 1.34    incl
    #   17:07-18:00 parking, weekday 09-18: 53 min, rounded up by step 300 s to 55 min
    #               (the last paid time component): 55/60 h x 5.00 = 4.58333.. ; x 1.10 =
    #               5.041666.. incl
    #   18:00-18:40 parking outside every PARKING_TIME element: free
    #   total excl 2.50 + 2.00 + 1.11666.. + 4.58333.. = 10.20
    #   total incl 2.875 + 2.40 + 1.34 + 5.041666.. = 11.656666.. -> 11.66
    assert cdr.document["total_cost"] == money("10.20", "11.66")
    assert cdr.document["total_fixed_cost"] == money("2.50", "2.88")
    assert cdr.document["total_time_cost"] == money("3.12", "3.74")
    assert cdr.document["total_parking_cost"] == money("4.58", "5.04")
    assert cdr.document["total_energy"] == 18.0
    assert cdr.document["total_parking_time"] == round(93 / 60, 6)

    # New periods where the summed current crosses 32 A, where the register stops rising,
    # and at 18:00 Amsterdam time (whatever UTC offset that day had).
    assert period_starts(cdr) == [
        t0,
        amsterdam(day, 16),
        amsterdam(day, 17, 7),
        amsterdam(day, 18),
    ]
    first, second, paid, free = (dimensions(cdr, i) for i in range(4))
    assert (first["TIME"], first["MAX_CURRENT"]) == (1.0, 48.0)
    assert (second["TIME"], second["MAX_CURRENT"]) == (round(67 / 60, 6), 30.0)
    assert "TIME" not in paid
    assert paid["PARKING_TIME"] == round(53 / 60, 6)
    assert free["PARKING_TIME"] == round(40 / 60, 6)


# 2. A replayed stop -------------------------------------------------------------------------


async def test_a_stop_replayed_after_reconnect_gives_one_cdr_and_the_same_answer(
    open_node: Node,
) -> None:
    tariff = example(TARIFF_13)
    t0, end = yesterday_utc(), yesterday_utc(1)
    stop = stop_payload(0, end, 17_000)
    async with open_node.connect("BILL-R") as station:
        await priced_connector(open_node, station, tariff)
        tx = await start(station, t0, 10_000)
        stop["transactionId"] = tx
        first = await station.call("StopTransaction", stop, unique_id="stop-1")
    session = await open_node.session(tx)
    (cdr,) = await cdrs_of(open_node, session)
    # The station reboots and replays the stop from its queue, new message id (FIELD-NOTES 8).
    async with open_node.connect("BILL-R") as station:
        await station.boot()
        replayed = await station.call("StopTransaction", stop, unique_id="stop-2")
    assert first == [3, "stop-1", {"idTagInfo": {"status": "Accepted"}}]
    assert replayed == [3, "stop-2", first[2]]
    (still,) = await cdrs_of(open_node, await open_node.session(tx))
    assert still.id == cdr.id
    assert still.document == cdr.document
    # 1 h charging x 3.00 = 3.00 excl, x 1.10 = 3.30 incl.
    assert cdr.document["total_cost"] == money("3.00", "3.30")


# 3. A stuck session, closed by rule, then corrected by the station's own stop -------------

STUCK_AFTER = 2.0 * TIME_UNIT
"""Seconds without news before the node closes a session (the default is two days)."""


@pytest.fixture
async def stuck_node(start_node: NodeStarter) -> Node:
    """Open admission; sessions silent for ``STUCK_AFTER`` are closed by the sweep.

    The heartbeat interval stays at the conftest's 247 s, so a quiet station is not
    disconnected for silence while the test waits.
    """
    return await start_node(station_admission=AdmissionPolicy.OPEN, stuck_session_after=STUCK_AFTER)


async def test_a_stuck_session_is_closed_by_rule_and_corrected_by_a_late_stop(
    stuck_node: Node,
) -> None:
    node = stuck_node
    tariff = example(TARIFF_13)
    t0, last, late_end = yesterday_utc(), yesterday_utc(1), yesterday_utc(2)
    async with node.connect("BILL-STUCK") as station:
        await priced_connector(node, station, tariff)
        tx = await start(station, t0, 10_000)
        await send(station, tx, Reading(last, 17_000))
        # The station stays connected and heartbeats: that is no news about the session.
        async with asyncio.timeout(STUCK_AFTER + 2 * STEP):
            while True:
                assert (await station.result("Heartbeat", {}))["currentTime"]
                session = await node.session(tx)
                if session.end_date_time is not None:
                    break
                await asyncio.sleep(0.1)
    assert session.end_date_time == last  # the last trusted reading, not when we gave up
    assert "closed_by_rule" in session.flags
    assert session.stop_reason == "ClosedByRule"
    assert session.status == "COMPLETED"
    (closed,) = await cdrs_of(node, session)
    assert closed.document["remark"].startswith("closed by the CPMS: no news from the station")
    assert parse_iso(closed.document["end_date_time"]) == last
    assert closed.document["total_energy"] == 7.0
    # 1 h charging x 3.00 = 3.00 excl, x 1.10 = 3.30 incl.
    assert closed.document["total_cost"] == money("3.00", "3.30")

    # The station comes back and sends the stop it had queued, with a higher register.
    async with node.connect("BILL-STUCK") as station:
        await station.boot()
        answer = await station.result("StopTransaction", stop_payload(tx, late_end, 24_000))
    assert answer == {"idTagInfo": {"status": "Accepted"}}

    session = await node.session(tx)
    cdrs = {cdr.id: cdr for cdr in await cdrs_of(node, session)}
    assert set(cdrs) >= {closed.id, f"{closed.id}-C"}
    assert len(cdrs) == 3
    credit = cdrs[f"{closed.id}-C"]
    assert credit.credit is True
    assert credit.credit_reference_id == closed.id
    assert credit.document["credit"] is True
    assert credit.document["credit_reference_id"] == closed.id
    assert credit.document["total_cost"] == money("-3.00", "-3.30")
    (new,) = [cdr for cdr in cdrs.values() if cdr.id not in (closed.id, credit.id)]
    assert new.credit is False
    assert session.cdr_id == new.id
    assert session.end_date_time == late_end
    assert new.document["total_energy"] == 14.0
    predicted = predicted_bill(
        tariff,
        start=t0,
        meter_start=10_000,
        readings=[Reading(last, 17_000)],
        end=late_end,
        meter_stop=24_000,
        voltage_v=await connector_voltage(node, "BILL-STUCK"),
    )
    assert new.document["total_cost"] == predicted.total_cost.to_ocpi()
    # 2 h charging x 3.00 = 6.00 excl, x 1.10 = 6.60 incl.
    assert new.document["total_cost"] == money("6.00", "6.60")


# 4. Signed meter values into the CDR ----------------------------------------------------------


async def test_signed_readings_at_begin_and_end_are_the_cdrs_signed_data(open_node: Node) -> None:
    t0, end = yesterday_utc(), yesterday_utc(1)
    async with open_node.connect("BILL-SIGNED") as station:
        await priced_connector(open_node, station, example(TARIFF_13))
        tx = await start(station, t0, 10_000)
        begin = [
            {"value": "10000", "unit": "Wh", "context": "Transaction.Begin"},
            {"value": OCMF_BEGIN, "format": "SignedData", "context": "Transaction.Begin"},
        ]
        payload = {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [{"timestamp": iso(t0), "sampledValue": begin}],
        }
        assert await station.result("MeterValues", payload) == {}
        finish = [
            {"value": "17500", "unit": "Wh", "context": "Transaction.End"},
            {"value": OCMF_END, "format": "SignedData", "context": "Transaction.End"},
        ]
        await station.result(
            "StopTransaction",
            stop_payload(
                tx, end, 17_500, transactionData=[{"timestamp": iso(end), "sampledValue": finish}]
            ),
        )
    session = await open_node.session(tx)
    (cdr,) = await cdrs_of(open_node, session)
    assert cdr.document["signed_data"] == {
        "encoding_method": "OCMF",
        "signed_values": [
            {
                "nature": "Start",
                "plain_data": OCMF_BEGIN,
                "signed_data": base64.b64encode(OCMF_BEGIN.encode()).decode(),
            },
            {
                "nature": "End",
                "plain_data": OCMF_END,
                "signed_data": base64.b64encode(OCMF_END.encode()).decode(),
            },
        ],
    }
    # The signed values are not numbers: billed energy comes from the plain registers only.
    assert cdr.document["total_energy"] == 7.5
