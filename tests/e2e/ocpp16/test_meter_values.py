"""End to end, OCPP 1.6: MeterValues through a real running node, down to the billed energy.

Raw OCPP-J frames over a real websocket to a ``cpms.runtime.Runtime``; each test checks the
stored ``MeterSample`` rows and the session's ``energy_wh`` and flags. Covered (FIELD-NOTES 10):
units normalised to SI (kWh -> Wh, kW -> W) with the reported value kept, per-phase registers
kept per phase and summed when no total register is sent, the total register preferred when it
is, contexts kept as sent, signed readings kept raw and never billed, a register going
backwards and an absurd jump (910 kWh in two minutes on a 22 kW EVSE) flagged and not billed,
with later steps billed from the new reading; readings for a transaction nobody issued.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from e2e.ocpp16.node import Node, iso
from raw_station import RawStation

from cpms.model import MeterSample, Session, utcnow

CARD = "CARD-MV"
REGISTER = "Energy.Active.Import.Register"
OCMF = (
    'OCMF|{"FV":"1.0","GI":"ABL SBC-301","GS":"808829900001","PG":"T12","RD":[{"TM":'
    '"2024-05-01T10:05:00,000+0000 S","TX":"B","RV":1.2,"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}]}'
    '|{"SA":"ECDSA-secp256r1-SHA256","SD":"3045022100A1B2C3"}'
)
"""A signed reading as an Eichrecht station sends it: not a number."""

Clock = Callable[..., datetime]


@pytest.fixture
def when() -> Clock:
    """Moments of one test, from a start an hour ago, in whole seconds (exact in OCPP)."""
    start = utcnow().replace(microsecond=0) - timedelta(hours=1)

    def moment(minutes: float = 0) -> datetime:
        return start + timedelta(minutes=minutes)

    return moment


def sampled(value: str, **fields: str) -> dict[str, str]:
    """One sampledValue."""
    return {"value": value, **fields}


async def charging(node: Node, station: RawStation, at: datetime, meter_start: int) -> int:
    """Boot, start a transaction on connector 1 at ``at``; return its id."""
    await node.create_token(CARD)
    await station.boot()
    answer = await station.result(
        "StartTransaction",
        {"connectorId": 1, "idTag": CARD, "meterStart": meter_start, "timestamp": iso(at)},
    )
    return int(answer["transactionId"])


async def meter_values(
    station: RawStation, transaction_id: int | None, at: datetime, *values: dict[str, str]
) -> None:
    """Send one MeterValues with one meterValue of ``values`` on connector 1."""
    payload: dict[str, Any] = {
        "connectorId": 1,
        "meterValue": [{"timestamp": iso(at), "sampledValue": list(values)}],
    }
    if transaction_id is not None:
        payload["transactionId"] = transaction_id
    assert await station.result("MeterValues", payload) == {}


async def samples_at(node: Node, session: Session, at: datetime) -> list[MeterSample]:
    return await node.samples(MeterSample.session_id == session.id, MeterSample.sampled_at == at)


async def test_kwh_is_normalised_to_wh_and_the_reported_value_kept(
    open_node: Node, when: Clock
) -> None:
    async with open_node.connect("MV-K") as station:
        tx = await charging(open_node, station, when(), 1000)
        await meter_values(station, tx, when(5), sampled("1.234", unit="kWh"))
    session = await open_node.session(tx)
    (sample,) = await samples_at(open_node, session, when(5))
    assert (sample.measurand, sample.unit) == (REGISTER, "kWh")
    assert sample.value == Decimal("1.234")
    assert sample.value_si == Decimal(1234)
    assert session.energy_wh == Decimal(234)
    assert session.last_meter_wh == Decimal(1234)


async def test_power_in_w_and_kw_is_stored_in_w(open_node: Node, when: Clock) -> None:
    async with open_node.connect("MV-P") as station:
        tx = await charging(open_node, station, when(), 0)
        await meter_values(
            station,
            tx,
            when(1),
            sampled("7.4", measurand="Power.Active.Import", unit="kW"),
            sampled("7350", measurand="Power.Active.Import", unit="W", phase="L1"),
            sampled("16", measurand="Current.Import", unit="A", phase="L1"),
        )
    session = await open_node.session(tx)
    kept = {
        (s.measurand, s.unit, s.phase, s.value, s.value_si)
        for s in await samples_at(open_node, session, when(1))
    }
    assert kept == {
        ("Power.Active.Import", "kW", None, Decimal("7.4"), Decimal(7400)),
        ("Power.Active.Import", "W", "L1", Decimal(7350), Decimal(7350)),
        ("Current.Import", "A", "L1", Decimal(16), Decimal(16)),
    }
    assert session.energy_wh == Decimal(0)  # power is not energy


async def test_per_phase_registers_are_kept_and_summed_without_a_total(
    open_node: Node, when: Clock
) -> None:
    async with open_node.connect("MV-3P") as station:
        tx = await charging(open_node, station, when(), 3000)
        await meter_values(
            station,
            tx,
            when(10),
            *(sampled("1100", phase=phase, unit="Wh") for phase in ("L1", "L2", "L3")),
        )
    session = await open_node.session(tx)
    stored = await samples_at(open_node, session, when(10))
    assert sorted((s.phase, s.value_si) for s in stored) == [
        ("L1", Decimal(1100)),
        ("L2", Decimal(1100)),
        ("L3", Decimal(1100)),
    ]
    assert session.energy_wh == Decimal(300)


async def test_the_total_register_is_preferred_over_the_phases(
    open_node: Node, when: Clock
) -> None:
    async with open_node.connect("MV-T") as station:
        tx = await charging(open_node, station, when(), 3000)
        # Phases first, the total last: the order of the list must not matter.
        await meter_values(
            station,
            tx,
            when(10),
            *(sampled("2000", phase=phase) for phase in ("L1", "L2", "L3")),
            sampled("3600"),
        )
    session = await open_node.session(tx)
    assert session.energy_wh == Decimal(600)  # 3600 - 3000, not 6000 - 3000
    assert len(await samples_at(open_node, session, when(10))) == 4


async def test_contexts_are_kept_as_sent(open_node: Node, when: Clock) -> None:
    async with open_node.connect("MV-C") as station:
        tx = await charging(open_node, station, when(), 100)
        await meter_values(station, tx, when(0.5), sampled("100", context="Transaction.Begin"))
        await meter_values(station, tx, when(5), sampled("400", context="Sample.Periodic"))
        await meter_values(station, tx, when(15), sampled("900", context="Sample.Clock"))
    session = await open_node.session(tx)
    received = [
        (s.sampled_at, s.context)
        for s in await open_node.samples(MeterSample.session_id == session.id)
    ]
    assert (when(0.5), "Transaction.Begin") in received
    assert (when(5), "Sample.Periodic") in received
    assert (when(15), "Sample.Clock") in received
    assert session.energy_wh == Decimal(800)


async def test_a_signed_reading_is_kept_raw_and_not_billed(open_node: Node, when: Clock) -> None:
    async with open_node.connect("MV-S") as station:
        tx = await charging(open_node, station, when(), 1000)
        await meter_values(
            station,
            tx,
            when(5),
            sampled("1200"),
            sampled(OCMF, format="SignedData", context="Sample.Periodic"),
        )
    session = await open_node.session(tx)
    signed = [s for s in await samples_at(open_node, session, when(5)) if s.signed_data]
    assert len(signed) == 1
    assert signed[0].signed_data == {"format": "SignedData", "value": OCMF}
    assert signed[0].context == "Sample.Periodic"
    assert session.energy_wh == Decimal(200)
    assert session.flags == []


async def test_a_meter_value_with_only_a_signed_reading_bills_nothing(
    open_node: Node, when: Clock
) -> None:
    async with open_node.connect("MV-S1") as station:
        tx = await charging(open_node, station, when(), 1000)
        await meter_values(station, tx, when(5), sampled("1200"))
        await meter_values(station, tx, when(6), sampled(OCMF, format="SignedData"))
        await meter_values(station, tx, when(10), sampled("1400"))
    session = await open_node.session(tx)
    # Read as a 0 Wh register, it would flag meter_backwards and bill 1600 (1400 from 0).
    assert session.energy_wh == Decimal(400)
    assert session.flags == []


async def test_a_signed_reading_listed_first_does_not_hide_the_plain_register(
    open_node: Node, when: Clock
) -> None:
    # A signed sample names the energy register too (1.6's default measurand) but is no number.
    async with open_node.connect("MV-S2") as station:
        tx = await charging(open_node, station, when(), 1000)
        await meter_values(
            station, tx, when(5), sampled(OCMF, format="SignedData"), sampled("1200")
        )
    session = await open_node.session(tx)
    assert session.energy_wh == Decimal(200)
    assert session.flags == []


async def test_a_register_going_backwards_is_flagged_and_not_billed(
    open_node: Node, when: Clock
) -> None:
    async with open_node.connect("MV-B") as station:
        tx = await charging(open_node, station, when(), 5000)
        await meter_values(station, tx, when(5), sampled("5200"))
        await meter_values(station, tx, when(10), sampled("5100"))
    session = await open_node.session(tx)
    (backwards,) = await samples_at(open_node, session, when(10))
    assert backwards.flags == ["meter_backwards"]
    (fine,) = await samples_at(open_node, session, when(5))
    assert fine.flags is None
    assert "meter_backwards" in session.flags
    assert session.energy_wh == Decimal(200)


async def test_an_absurd_jump_is_flagged_not_billed_and_later_steps_count_from_it(
    open_node: Node, when: Clock
) -> None:
    # FIELD-NOTES 10: Transaction.Begin = 0 after an offline start, then the real odometer.
    async with open_node.connect("MV-J") as station:
        tx = await charging(open_node, station, when(), 0)
        await station.result(
            "StatusNotification", {"connectorId": 1, "status": "Charging", "errorCode": "NoError"}
        )
        await meter_values(station, tx, when(2), sampled("910000"))
        jumped = await open_node.session(tx)
        await meter_values(station, tx, when(7), sampled("910500"))
        await station.result(
            "StopTransaction", {"transactionId": tx, "meterStop": 910600, "timestamp": iso(when(9))}
        )
    evse = (await open_node.evses("MV-J"))[0]
    assert evse.connectors[0].max_electric_power == 22080  # the auto-created 22 kW EVSE
    assert jumped.energy_wh == Decimal(0)
    (jump,) = await samples_at(open_node, jumped, when(2))
    assert jump.flags == ["meter_jump"]
    session = await open_node.session(tx)
    assert "meter_jump" in session.flags
    assert session.energy_wh == Decimal(600)  # 500 + 100, never the 910 kWh odometer


async def test_meter_values_outside_a_transaction_are_kept_without_a_session(
    open_node: Node, when: Clock
) -> None:
    async with open_node.connect("MV-N") as station:
        await station.boot()
        await meter_values(station, None, when(), sampled("230", measurand="Voltage", phase="L1"))
    (sample,) = await open_node.samples(MeterSample.station_id == "MV-N")
    assert sample.session_id is None
    assert (sample.measurand, sample.unit, sample.value_si) == ("Voltage", "V", Decimal(230))
    assert await open_node.events("MV-N", "unknown_transaction") == []


async def test_meter_values_of_an_unknown_transaction_are_kept_unbilled_and_logged(
    open_node: Node, when: Clock
) -> None:
    async with open_node.connect("MV-U") as station:
        await station.boot()
        await meter_values(station, 424242, when(), sampled("5000"))
    (sample,) = await open_node.samples(MeterSample.station_id == "MV-U")
    assert sample.session_id is None
    (logged,) = await open_node.events("MV-U", "unknown_transaction")
    assert logged.details == {"transaction_id": "424242"}
