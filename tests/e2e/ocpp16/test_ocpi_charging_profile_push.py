"""End to end: TOO_OFTEN and the ActiveChargingProfile push, an eMSP and a raw 1.6 station.

Path under test: an eMSP peer that offers the chargingprofiles SENDER interface
(``tests/ocpi_profile_peer.py``) calls ``/ocpi/2.2.1/chargingprofiles/{session_id}`` on a
real node -> ``cpms.remote_control`` (the ``RequestPacer`` of the OCPI application) -> a raw
OCPP 1.6 station -> its answer -> the result, and, when a limit was set or cleared, the
session's ActiveChargingProfile queued (``queue_callback`` with PUT) -> the pusher -> ``PUT
{SENDER}/{session_id}`` at the peer (checked with ocpi-types).

CHECKLIST 8.1: a second request for the same session within ``PROFILE_REQUEST_INTERVAL`` is
TOO_OFTEN (status 1000, ``timeout`` the seconds to wait) and reaches no station; once the
interval passed it is served again. CHECKLIST 8.2: an accepted set is pushed as the profile
now in force, an accepted clear as the EVSE's full power; only to a partner that has set a
limit on the session successfully (a GET, a clear, a refused set push nothing); a push to a
partner that is down waits and arrives when it is back; the session ending pushes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from e2e.ocpp16.node import Node, iso, parse_iso
from e2e.ocpp16.test_ocpi_commands import (
    STATION,
    Emsp,
    answer_call,
    call_profiles,
    nothing_arrives,
    queued_result,
    started_session,
    wired_station,
)
from ocpi_models import check
from ocpi_profile_peer import PROFILES_PATH, ProfilesPeer
from ocpi_support import register_directly
from raw_station import STEP

from cpms import remote_control
from cpms.charging import max_power_w
from cpms.model import OcpiCommand, OcpiPush, Session, utcnow

PROFILE = {
    "charging_rate_unit": "W",
    "min_charging_rate": 1400.0,
    "charging_profile_period": [
        {"start_period": 0, "limit": 11000.0},
        {"start_period": 1800, "limit": 7400.5},
    ],
}


@dataclass
class Smart:
    """A registered eMSP with a chargingprofiles SENDER interface."""

    peer: ProfilesPeer
    partner_id: int

    @property
    def emsp(self) -> Emsp:
        return Emsp(self.peer, self.partner_id)


@asynccontextmanager
async def smart_emsp(node: Node, party_id: str = "TNM") -> AsyncIterator[Smart]:
    async with ProfilesPeer(country_code="DE", party_id=party_id, name=party_id) as peer:
        yield Smart(peer, await register_directly(node.runtime, peer, name=party_id))


@pytest.fixture
async def tnm(open_node: Node) -> AsyncIterator[Smart]:
    async with smart_emsp(open_node) as smart:
        yield smart


async def put_limit(node: Node, smart: Smart, session: Session) -> dict[str, Any]:
    """PUT ``PROFILE`` on the session; returns the ChargingProfileResponse."""
    body = {"charging_profile": PROFILE, "response_url": smart.peer.callback_url()}
    return await call_profiles(node, smart.emsp, "PUT", session.id, body=body)


async def clear_limit(node: Node, smart: Smart, session: Session) -> tuple[dict[str, Any], str]:
    url = smart.peer.callback_url()
    answer = await call_profiles(
        node, smart.emsp, "DELETE", session.id, query=f"?response_url={url}"
    )
    return answer, url


async def active_profile_pushes(node: Node) -> list[OcpiPush]:
    return await node.rows(
        OcpiPush, OcpiPush.object_key.like("active_profile:%"), order_by=OcpiPush.id
    )


def seconds_ago(text: str) -> float:
    return (utcnow() - parse_iso(text)).total_seconds()


# TOO_OFTEN (CHECKLIST 8.1)


async def test_a_second_request_within_the_interval_is_too_often_and_reaches_no_station(
    open_node: Node, tnm: Smart, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with wired_station(open_node) as wired:
        session = await started_session(open_node, tnm.emsp, wired)
        assert (await put_limit(open_node, tnm, session))["result"] == "ACCEPTED"
        await answer_call(wired.station, "SetChargingProfile", {"status": "Accepted"})

        # At once, every kind of request for the same session: TOO_OFTEN, nothing sent.
        url = tnm.peer.callback_url()
        refused = [
            await call_profiles(
                open_node, tnm.emsp, "GET", session.id, query=f"?duration=900&response_url={url}"
            ),
            (await clear_limit(open_node, tnm, session))[0],
            await put_limit(open_node, tnm, session),
        ]
        _, envelope, _ = await tnm.peer.call(
            "DELETE",
            f"{open_node.runtime.base_url()}/ocpi/2.2.1/chargingprofiles/{session.id.upper()}"
            f"?response_url={url}",
        )
        refused.append(envelope["data"])
        await nothing_arrives(wired.station)

        # The interval is the module's constant: shortened, the next request is served.
        monkeypatch.setattr(remote_control, "PROFILE_REQUEST_INTERVAL", 0.2)
        await asyncio.sleep(0.3)
        served, served_url = await clear_limit(open_node, tnm, session)
        await answer_call(wired.station, "ClearChargingProfile", {"status": "Accepted"})
        assert await queued_result(open_node, served_url) == {"result": "ACCEPTED"}

    assert envelope["status_code"] == 1000
    assert "ask again in" in envelope["status_message"]
    for answer in refused:
        check("ChargingProfileResponse", answer)
        assert answer == {"result": "TOO_OFTEN", "timeout": 5}  # the default: 5 s
    assert served == {"result": "ACCEPTED", "timeout": 60}
    commands = await open_node.rows(OcpiCommand, order_by=OcpiCommand.created_at)
    assert [c.command for c in commands] == [
        "START_SESSION",
        "SET_CHARGING_PROFILE",
        "CLEAR_CHARGING_PROFILE",
    ]


async def test_requests_that_reach_no_station_do_not_count(open_node: Node, tnm: Smart) -> None:
    """Refused requests cost the station nothing: the next good one is served at once."""
    async with wired_station(open_node) as wired, smart_emsp(open_node, "OTH") as other:
        session = await started_session(open_node, tnm.emsp, wired)
        foreign = await call_profiles(
            open_node,
            other.emsp,
            "DELETE",
            session.id,
            query=f"?response_url={other.peer.callback_url()}",
        )
        unknown = await call_profiles(
            open_node,
            tnm.emsp,
            "DELETE",
            "NO-SUCH-SESSION",
            query=f"?response_url={tnm.peer.callback_url()}",
        )
        answer = await put_limit(open_node, tnm, session)
        await answer_call(wired.station, "SetChargingProfile", {"status": "Accepted"})

    assert (foreign["result"], unknown["result"]) == ("REJECTED", "UNKNOWN_SESSION")
    assert answer["result"] == "ACCEPTED"


# The ActiveChargingProfile push (CHECKLIST 8.2)


async def test_an_accepted_limit_and_its_clear_are_pushed_to_the_partner_that_set_it(
    open_node: Node, tnm: Smart, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_control, "PROFILE_REQUEST_INTERVAL", 0.0)
    async with wired_station(open_node) as wired:
        session = await started_session(open_node, tnm.emsp, wired)
        await put_limit(open_node, tnm, session)
        await answer_call(wired.station, "SetChargingProfile", {"status": "Accepted"})
        await tnm.peer.wait_for(lambda: tnm.peer.active_profiles, timeout=STEP)
        _, cleared_url = await clear_limit(open_node, tnm, session)
        await answer_call(wired.station, "ClearChargingProfile", {"status": "Accepted"})
        await tnm.peer.wait_for(
            lambda: len(tnm.peer.active_profiles.get(session.id, [])) == 2, timeout=STEP
        )

        # The session ends: nothing more to say about its limits.
        await wired.station.result(
            "StopTransaction",
            {
                "transactionId": int(session.transaction_id or ""),
                "meterStop": 2000,
                "timestamp": iso(utcnow()),
                "reason": "Local",
            },
        )
        # Whatever the end queues is queued with it: no profile push among it.
        assert len(await active_profile_pushes(open_node)) == 2

    set_push, clear_push = tnm.peer.active_profiles[session.id]
    [evse] = await open_node.evses(STATION)
    for body in (set_push, clear_push):
        check("ActiveChargingProfile", body)
        assert 0 <= seconds_ago(body["start_date_time"]) < STEP
    # The limit now in force, counted from when it was calculated (the session began at
    # most a few seconds before): the first period runs, the second is that much nearer.
    profile = set_push["charging_profile"]
    elapsed = 1800 - profile["charging_profile_period"][1]["start_period"]
    assert 0 <= elapsed < STEP
    assert profile == {
        "charging_rate_unit": "W",
        "min_charging_rate": 1400.0,
        "charging_profile_period": [
            {"start_period": 0, "limit": 11000.0},
            {"start_period": 1800 - elapsed, "limit": 7400.5},
        ],
    }
    # No limit any more: the EVSE's full power, for the next hour.
    assert clear_push["charging_profile"] == {
        "charging_rate_unit": "W",
        "duration": 3600,
        "charging_profile_period": [{"start_period": 0, "limit": float(max_power_w(evse))}],
    }
    puts = tnm.peer.profile_puts()
    assert [p.path for p in puts] == [f"{PROFILES_PATH}/{session.id}"] * 2
    assert all(p.token in tnm.peer.accepted_tokens for p in puts)  # our token for them
    assert await queued_result(open_node, cleared_url) == {"result": "ACCEPTED"}
    assert len(await active_profile_pushes(open_node)) == 2
    assert tnm.peer.problems == []


async def test_no_active_profile_goes_to_a_partner_that_never_set_one(
    open_node: Node, tnm: Smart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SHALL NOT otherwise (CHECKLIST 8.2): reads, clears and refused sets push nothing."""
    monkeypatch.setattr(remote_control, "PROFILE_REQUEST_INTERVAL", 0.0)
    async with wired_station(open_node) as wired:
        session = await started_session(open_node, tnm.emsp, wired)
        get_url = tnm.peer.callback_url()
        await call_profiles(
            open_node, tnm.emsp, "GET", session.id, query=f"?duration=600&response_url={get_url}"
        )
        await answer_call(wired.station, "GetCompositeSchedule", {"status": "Accepted"})
        _, first_clear = await clear_limit(open_node, tnm, session)
        await answer_call(wired.station, "ClearChargingProfile", {"status": "Accepted"})
        await put_limit(open_node, tnm, session)
        await answer_call(wired.station, "SetChargingProfile", {"status": "Rejected"})
        _, second_clear = await clear_limit(open_node, tnm, session)
        await answer_call(wired.station, "ClearChargingProfile", {"status": "Accepted"})
        # Each result is queued in the same transaction as a push would be.
        for url in (get_url, first_clear, second_clear):
            assert (await queued_result(open_node, url))["result"] == "ACCEPTED"

    assert await active_profile_pushes(open_node) == []
    assert tnm.peer.profile_puts() == []


async def test_the_push_waits_for_a_partner_that_is_down(open_node: Node, tnm: Smart) -> None:
    async with wired_station(open_node) as wired:
        session = await started_session(open_node, tnm.emsp, wired)

        async def pending() -> list[OcpiPush]:
            return await open_node.rows(OcpiPush, OcpiPush.done_at.is_(None))

        await open_node.eventually(pending, lambda pushes: not pushes)  # the peer is up to date
        tnm.peer.down = True
        await put_limit(open_node, tnm, session)
        await answer_call(wired.station, "SetChargingProfile", {"status": "Accepted"})

        # Queued with the result; the pusher finds the partner down and backs off.
        [waiting] = await open_node.eventually(
            lambda: active_profile_pushes(open_node), lambda pushes: len(pushes) > 0
        )
        assert waiting.done_at is None

        async def failed() -> list[OcpiPush]:
            return await open_node.rows(OcpiPush, OcpiPush.attempts > 0)

        await open_node.eventually(failed, lambda pushes: len(pushes) > 0)
        assert tnm.peer.profile_puts() == []
        tnm.peer.down = False
        await tnm.peer.wait_for(lambda: tnm.peer.active_profiles, timeout=2 * STEP)

    [push] = await open_node.eventually(
        lambda: active_profile_pushes(open_node), lambda pushes: pushes[0].done_at is not None
    )
    assert push.payload["method"] == "PUT"
    assert push.payload["url"] == f"{tnm.peer.profiles_url}/{session.id}"
    assert push.outcome == "SENT"
    [body] = tnm.peer.active_profiles[session.id]
    check("ActiveChargingProfile", body)
    assert tnm.peer.problems == []


async def test_a_late_start_keeps_its_own_start_and_an_ended_limit_is_full_power(
    open_node: Node, tnm: Smart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A limit with a start_date_time counts from it: later, as is; over, the EVSE's power."""
    monkeypatch.setattr(remote_control, "PROFILE_REQUEST_INTERVAL", 0.0)
    later = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    earlier = (utcnow() - timedelta(hours=1)).replace(microsecond=0)
    async with wired_station(open_node) as wired:
        session = await started_session(open_node, tnm.emsp, wired)
        for start in (later, earlier):
            profile = {**PROFILE, "start_date_time": iso(start), "duration": 600}
            body = {"charging_profile": profile, "response_url": tnm.peer.callback_url()}
            await call_profiles(open_node, tnm.emsp, "PUT", session.id, body=body)
            await answer_call(wired.station, "SetChargingProfile", {"status": "Accepted"})
        await tnm.peer.wait_for(
            lambda: len(tnm.peer.active_profiles.get(session.id, [])) == 2, timeout=STEP
        )

    upcoming, over = tnm.peer.active_profiles[session.id]
    check("ActiveChargingProfile", upcoming)
    assert parse_iso(upcoming["start_date_time"]) == later
    assert upcoming["charging_profile"] == {
        "charging_rate_unit": "W",
        "duration": 600,
        "min_charging_rate": 1400.0,
        "charging_profile_period": PROFILE["charging_profile_period"],
    }
    check("ActiveChargingProfile", over)
    assert over["charging_profile"]["duration"] == 3600
    assert len(over["charging_profile"]["charging_profile_period"]) == 1
