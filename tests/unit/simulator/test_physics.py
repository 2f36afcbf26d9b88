"""The simulator's physics (``simulator.physics``): power caps, the taper, and the energy balance.

``charge_power`` is capped by the connector (its current, on the phases both sides have), by the
EV (on-board charger on AC, battery on DC, less above 80 % state of charge) and by a charging
profile's limit; ``advance`` never puts more into the battery than fits, and the state of charge
follows the energy exactly. Property tests check the balance over random charging sessions.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.physics import (
    EV_MODELS,
    TAPER_FLOOR,
    TAPER_FROM_SOC,
    EvModel,
    Vehicle,
    advance,
    charge_power,
)
from simulator.templates import ConnectorSpec

AC_22 = ConnectorSpec("IEC_62196_T2", "SOCKET", "AC_3_PHASE", 22_000, 230)
AC_11 = ConnectorSpec("IEC_62196_T2", "SOCKET", "AC_3_PHASE", 11_000, 230)
AC_7_1PH = ConnectorSpec("IEC_62196_T2", "SOCKET", "AC_1_PHASE", 7_400, 230)
DC_150 = ConnectorSpec("IEC_62196_T2_COMBO", "CABLE", "DC", 150_000, 400)
DC_50 = ConnectorSpec("CHADEMO", "CABLE", "DC", 50_000, 400)

MODELS = {model.name: model for model in EV_MODELS}
CITY = MODELS["city"]  # 7.4 kW on one phase, 50 kW DC
COMPACT = MODELS["compact"]  # 11 kW on three phases, 120 kW DC
SUV = MODELS["suv"]  # 22 kW on three phases, 250 kW DC


def ev(model: EvModel, soc: float = 30.0) -> Vehicle:
    return Vehicle(model, soc)


# Caps


def test_no_vehicle_no_flow() -> None:
    flow = charge_power(AC_22, None, None)
    assert flow.power_w == 0
    assert flow.current_a == 0
    assert flow.phases == 3
    assert charge_power(DC_150, None, 1000.0).power_w == 0


def test_three_phase_ev_on_three_phase_socket_gets_the_socket() -> None:
    flow = charge_power(AC_22, ev(SUV), None)
    assert flow.power_w == pytest.approx(22_000)
    assert flow.phases == 3
    assert flow.current_a == pytest.approx(AC_22.max_current_a)
    assert flow.voltage_v == 230


def test_socket_caps_an_ev_that_could_take_more() -> None:
    flow = charge_power(AC_11, ev(SUV), None)
    assert flow.power_w == pytest.approx(11_000)
    assert flow.current_a == pytest.approx(AC_11.max_current_a)


def test_on_board_charger_caps_on_ac() -> None:
    flow = charge_power(AC_22, ev(COMPACT), None)
    assert flow.power_w == pytest.approx(COMPACT.max_ac_w)
    assert flow.phases == 3
    assert flow.current_a == pytest.approx(COMPACT.max_ac_w / (230 * 3))


def test_one_phase_ev_on_three_phase_socket_draws_one_phase_at_the_socket_current() -> None:
    # The socket's per-phase current on the one phase the EV uses: 230 V x 31.9 A, not 22 kW.
    flow = charge_power(AC_22, ev(CITY), None)
    assert flow.phases == 1
    assert flow.current_a == pytest.approx(AC_22.max_current_a)
    assert flow.power_w == pytest.approx(230 * AC_22.max_current_a)
    assert flow.power_w < CITY.max_ac_w


def test_three_phase_ev_on_one_phase_socket_draws_one_phase() -> None:
    flow = charge_power(AC_7_1PH, ev(SUV), None)
    assert flow.phases == 1
    assert flow.power_w == pytest.approx(7_400)
    assert flow.current_a == pytest.approx(7_400 / 230)


def test_dc_is_capped_by_connector_and_battery() -> None:
    assert charge_power(DC_150, ev(SUV), None).power_w == pytest.approx(150_000)
    assert charge_power(DC_150, ev(CITY), None).power_w == pytest.approx(CITY.max_dc_w)
    assert charge_power(DC_50, ev(SUV), None).power_w == pytest.approx(50_000)
    flow = charge_power(DC_150, ev(COMPACT), None)
    assert flow.phases == 0
    assert flow.current_a == pytest.approx(COMPACT.max_dc_w / 400)


@pytest.mark.parametrize("connector", [AC_22, DC_150], ids=["ac", "dc"])
def test_profile_limit_caps_and_never_raises(connector: ConnectorSpec) -> None:
    free = charge_power(connector, ev(SUV), None).power_w
    assert charge_power(connector, ev(SUV), 4_000).power_w == pytest.approx(4_000)
    assert charge_power(connector, ev(SUV), free * 10).power_w == pytest.approx(free)
    assert charge_power(connector, ev(SUV), 0).power_w == 0
    assert charge_power(connector, ev(SUV), -50).power_w == 0


def test_limited_current_follows_the_limited_power() -> None:
    flow = charge_power(AC_22, ev(SUV), 6_900)
    assert flow.current_a == pytest.approx(6_900 / (230 * 3))


# The taper


def test_full_acceptance_up_to_80_percent_then_less_and_less() -> None:
    assert ev(SUV, 10).acceptance_w(dc=True) == SUV.max_dc_w
    assert ev(SUV, TAPER_FROM_SOC).acceptance_w(dc=True) == SUV.max_dc_w
    above = [ev(SUV, soc).acceptance_w(dc=True) for soc in (81, 85, 90, 95, 99.9)]
    assert above == sorted(above, reverse=True)
    assert len(set(above)) == len(above)
    assert above[0] < SUV.max_dc_w
    assert ev(SUV, 90).acceptance_w(dc=True) == pytest.approx(
        SUV.max_dc_w * (1 - 0.5 * (1 - TAPER_FLOOR))
    )
    assert ev(SUV, 99.999).acceptance_w(dc=False) == pytest.approx(
        SUV.max_ac_w * TAPER_FLOOR, rel=1e-3
    )


def test_a_full_battery_takes_nothing() -> None:
    full = ev(SUV, 100)
    assert full.full
    assert full.acceptance_w(dc=True) == 0
    assert charge_power(DC_150, full, None).power_w == 0
    assert advance(full, 50_000, 60) == 0
    assert full.soc == 100


def test_taper_reaches_dc_power_above_80_percent() -> None:
    assert charge_power(DC_150, ev(SUV, 70), None).power_w == pytest.approx(150_000)
    assert charge_power(DC_150, ev(SUV, 95), None).power_w < 150_000


# The energy balance


def test_advance_puts_power_times_time_into_the_battery() -> None:
    vehicle = ev(SUV, 30)
    energy = advance(vehicle, 11_000, 3600)
    assert energy == pytest.approx(11_000)
    assert vehicle.soc == pytest.approx(30 + 11_000 / SUV.capacity_wh * 100)


def test_advance_never_exceeds_the_room_in_the_battery() -> None:
    vehicle = ev(CITY, 99)
    energy = advance(vehicle, 50_000, 3600)
    assert energy == pytest.approx(0.01 * CITY.capacity_wh)
    assert vehicle.soc == 100
    assert vehicle.full


@pytest.mark.parametrize(("power", "seconds"), [(0, 60), (-1000, 60), (1000, 0), (1000, -5)])
def test_no_power_or_no_time_moves_nothing(power: float, seconds: float) -> None:
    vehicle = ev(SUV, 40)
    assert advance(vehicle, power, seconds) == 0
    assert vehicle.soc == 40


@given(
    model=st.sampled_from(EV_MODELS),
    soc=st.floats(min_value=0, max_value=100),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=400_000), st.floats(min_value=0, max_value=7200)
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_soc_follows_the_energy_and_energy_only_grows(
    model: EvModel, soc: float, steps: list[tuple[float, float]]
) -> None:
    vehicle = Vehicle(model, soc)
    total = 0.0
    for power, seconds in steps:
        room = (100 - vehicle.soc) / 100 * model.capacity_wh
        before = vehicle.soc
        energy = advance(vehicle, power, seconds)
        assert 0 <= energy <= room + 1e-6
        assert energy <= power * seconds / 3600 + 1e-6
        assert vehicle.soc >= before
        assert vehicle.soc <= 100
        assert (vehicle.soc - before) * model.capacity_wh / 100 == pytest.approx(energy, abs=1e-6)
        total += energy
    assert (vehicle.soc - soc) * model.capacity_wh / 100 == pytest.approx(total, abs=1e-5)


@given(
    connector=st.sampled_from([AC_22, AC_11, AC_7_1PH, DC_150, DC_50]),
    model=st.sampled_from(EV_MODELS),
    soc=st.floats(min_value=0, max_value=100),
    limit=st.none() | st.floats(min_value=-1000, max_value=500_000),
)
def test_power_respects_every_cap_and_matches_its_current(
    connector: ConnectorSpec, model: EvModel, soc: float, limit: float | None
) -> None:
    vehicle = Vehicle(model, soc)
    flow = charge_power(connector, vehicle, limit)
    assert 0 <= flow.power_w <= connector.max_power_w + 1e-6
    assert flow.power_w <= vehicle.acceptance_w(connector.is_dc) + 1e-6
    if limit is not None:
        assert flow.power_w <= max(limit, 0) + 1e-6
    lines = max(flow.phases, 1)
    assert flow.current_a * connector.voltage_v * lines == pytest.approx(flow.power_w)
    assert flow.current_a <= connector.max_current_a + 1e-6
    if not connector.is_dc:
        assert flow.phases == min(connector.phases, model.ac_phases)
