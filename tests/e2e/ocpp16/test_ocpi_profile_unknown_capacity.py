"""End to end: an EVSE whose power nobody described is never said to give 1 MW (OCPI 8).

``cpms.charging.max_power_w`` falls back to a 1 MW plausibility ceiling when an EVSE's
connector gives no power (voltage, amperage and power all unknown, 0). That ceiling is not a
capacity: the ActiveChargingProfile pushed after an accepted clear (CHECKLIST 8.2, "one
reflecting the EVSE's max capacity") and the one answering a GET the station has no
schedule for carry no charging period instead: "no limit we know of". The partner still
hears that its limit is gone. Path: an eMSP peer with a chargingprofiles SENDER interface,
a real node, a raw OCPP 1.6 station.
"""

from __future__ import annotations

import pytest
from e2e.ocpp16.node import Node
from e2e.ocpp16.test_ocpi_charging_profile_push import Smart, clear_limit, put_limit, tnm
from e2e.ocpp16.test_ocpi_commands import (
    STATION,
    answer_call,
    call_profiles,
    queued_result,
    started_session,
    wired_station,
)
from ocpi_models import check
from raw_station import STEP

from cpms import locations, remote_control

__all__ = ["tnm"]  # the fixture, used by name

NO_LIMIT = {"charging_rate_unit": "W", "charging_profile_period": []}


async def forget_power(node: Node) -> None:
    """Make the EVSE's connector give no power, as an operator's sparse description does."""
    [evse] = await node.evses(STATION)
    await locations.change_connector(
        node.runtime.uow(),
        evse.location_id,
        evse.uid,
        "1",
        {"max_voltage": 0, "max_amperage": 0, "max_electric_power": None},
    )


async def test_a_clear_and_a_get_with_unknown_power_carry_no_limit_instead_of_1_mw(
    open_node: Node, tnm: Smart, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_control, "PROFILE_REQUEST_INTERVAL", 0.0)
    async with wired_station(open_node) as wired:
        await forget_power(open_node)
        session = await started_session(open_node, tnm.emsp, wired)
        await put_limit(open_node, tnm, session)
        await answer_call(wired.station, "SetChargingProfile", {"status": "Accepted"})
        _, cleared_url = await clear_limit(open_node, tnm, session)
        await answer_call(wired.station, "ClearChargingProfile", {"status": "Accepted"})
        await tnm.peer.wait_for(
            lambda: len(tnm.peer.active_profiles.get(session.id, [])) == 2, timeout=STEP
        )
        get_url = tnm.peer.callback_url()
        await call_profiles(
            open_node, tnm.emsp, "GET", session.id, query=f"?duration=600&response_url={get_url}"
        )
        await answer_call(wired.station, "GetCompositeSchedule", {"status": "Accepted"})
        got = await queued_result(open_node, get_url)

    [evse] = await open_node.evses(STATION)
    assert evse.connectors[0].max_electric_power is None
    _, cleared = tnm.peer.active_profiles[session.id]
    check("ActiveChargingProfile", cleared)
    assert cleared["charging_profile"] == NO_LIMIT | {"duration": 3600}
    assert await queued_result(open_node, cleared_url) == {"result": "ACCEPTED"}
    check("ActiveChargingProfileResult", got)
    assert got["result"] == "ACCEPTED"
    assert got["profile"]["charging_profile"] == NO_LIMIT | {"duration": 600}
    assert tnm.peer.problems == []
