"""End to end: TOO_OFTEN and the ActiveChargingProfile push with a raw OCPP 2.0.1 station.

The 2.0.1 mirror of ``tests/e2e/ocpp16/test_ocpi_charging_profile_push.py``: an eMSP with a
chargingprofiles SENDER interface (``tests/ocpi_profile_peer.py``) starts a session by
command on a 2.0.1 station, sets a limit (SetChargingProfile accepted), is refused TOO_OFTEN
when it asks again at once (nothing reaches the station), then clears it
(ClearChargingProfile accepted) once the interval passed. Each accepted change arrives as a
PUT of the ActiveChargingProfile on its SENDER interface: the limit in force, then the
EVSE's full power.
"""

from __future__ import annotations

import pytest
from e2e.ocpp16.node import Node, NodeStarter
from e2e.ocpp201.test_ocpi_commands import RFID, transaction_started, wired_station
from ocpi_models import check
from ocpi_profile_peer import ProfilesPeer
from ocpi_support import cpo_url, register_directly
from raw_station import STEP, RawStation

from cpms import remote_control
from cpms.admission import AdmissionPolicy
from cpms.charging import max_power_w

STATION = "OCPI-V201-PROFILES"
PROFILE = {
    "charging_rate_unit": "A",
    "charging_profile_period": [{"start_period": 0, "limit": 16.0}],
}


async def profiles(
    node: Node, peer: ProfilesPeer, method: str, session_id: str, **request: object
) -> tuple[dict[str, object], str]:
    """Call chargingprofiles as the eMSP; the ChargingProfileResponse and the response_url."""
    url = peer.callback_url()
    query, body = f"?response_url={url}", None
    if method == "PUT":
        query, body = "", {"charging_profile": request["profile"], "response_url": url}
    _, envelope, _ = await peer.call(
        method, cpo_url(node.runtime, f"chargingprofiles/{session_id}") + query, body=body
    )
    assert envelope["status_code"] == 1000, envelope
    check("ChargingProfileResponse", envelope["data"])
    return envelope["data"], url


async def answer(station: RawStation, action: str, status: str) -> dict[str, object]:
    call = await station.next_call()
    assert call[2] == action, call
    await station.reply(call[1], {"status": status})
    return dict(call[3])


async def test_a_2_0_1_limit_is_paced_and_its_changes_are_pushed(
    start_node: NodeStarter, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await start_node(station_admission=AdmissionPolicy.OPEN)
    async with (
        ProfilesPeer(country_code="DE", party_id="TNM", name="TNM") as peer,
        node.connect(STATION, version="ocpp2.0.1") as station,
    ):
        await register_directly(node.runtime, peer, name="TNM")
        wired = await wired_station(node, station)
        start = {
            "response_url": peer.callback_url(),
            "token": RFID,
            "location_id": wired.location_id,
            "evse_uid": wired.evse_uid,
            "connector_id": "1",
        }
        _, envelope, _ = await peer.call(
            "POST", cpo_url(node.runtime, "commands/START_SESSION"), body=start
        )
        assert envelope["data"]["result"] == "ACCEPTED"
        sent = await answer(station, "RequestStartTransaction", "Accepted")
        session = await transaction_started(node, station, sent)

        set_answer, _ = await profiles(node, peer, "PUT", session.id, profile=PROFILE)
        await answer(station, "SetChargingProfile", "Accepted")
        too_often, _ = await profiles(node, peer, "DELETE", session.id)
        await peer.wait_for(lambda: peer.active_profiles, timeout=STEP)

        # The interval shortened for the rest: the clear is served.
        monkeypatch.setattr(remote_control, "PROFILE_REQUEST_INTERVAL", 0.0)
        cleared, _ = await profiles(node, peer, "DELETE", session.id)
        await answer(station, "ClearChargingProfile", "Accepted")
        await peer.wait_for(lambda: len(peer.active_profiles[session.id]) == 2, timeout=STEP)

    assert set_answer["result"] == "ACCEPTED"
    assert too_often == {"result": "TOO_OFTEN", "timeout": 5}
    assert cleared["result"] == "ACCEPTED"
    limited, full = peer.active_profiles[session.id]
    for body in (limited, full):
        check("ActiveChargingProfile", body)
    assert limited["charging_profile"] == PROFILE
    [evse] = await node.evses(STATION)
    assert full["charging_profile"] == {
        "charging_rate_unit": "W",
        "duration": 3600,
        "charging_profile_period": [{"start_period": 0, "limit": float(max_power_w(evse))}],
    }
    assert peer.problems == []
