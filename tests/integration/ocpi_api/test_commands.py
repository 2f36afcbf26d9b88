"""OCPI commands and chargingprofiles receivers on a real node, without stations.

What is decided before any station is asked: our version details list both modules; bodies
that are not valid JSON are HTTP 400, and bodies missing or breaking a field are OCPI 2001,
storing nothing; an unknown command is 404; an unknown location is 2003 with REJECTED, an
unknown session UNKNOWN_SESSION (also for charging profiles), an unknown reservation is
ACCEPTED and answered UNKNOWN_RESERVATION at once (queued and delivered to the peer). Then
the core's bookkeeping: ``expire_commands`` answers TIMEOUT for PENDING commands past their
deadline, once, and ``finish_command`` does nothing for a command already settled.
Station round trips are in ``tests/e2e/ocpp16/test_ocpi_commands.py``.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from ocpi_models import check
from ocpi_peer import EmspPeer
from ocpi_support import cpo_url, register_directly
from sqlalchemy import select

from cpms.model import OcpiCommand, OcpiPush, Reservation, utcnow
from cpms.remote_control import expire_commands, finish_command
from cpms.runtime import Runtime

from support import EXAMPLES, TIME_UNIT

TOKEN = {
    **json.loads((EXAMPLES / "token_example_2_full_rfid.json").read_text()),
    "party_id": "EMS",  # the test peer's own party (DE/EMS)
}


@pytest.fixture
async def partner_id(runtime: Runtime, emsp_peer: EmspPeer) -> int:
    return await register_directly(runtime, emsp_peer)


async def post(
    runtime: Runtime, peer: EmspPeer, command: str, body: Any
) -> tuple[int, dict[str, Any]]:
    status, envelope, _ = await peer.call(
        "POST", cpo_url(runtime, f"commands/{command}"), body=body
    )
    return status, envelope


async def stored(runtime: Runtime) -> tuple[list[OcpiCommand], list[Reservation], list[OcpiPush]]:
    async with runtime.uow() as uow:
        return (
            list(await uow.session.scalars(select(OcpiCommand))),
            list(await uow.session.scalars(select(Reservation))),
            list(await uow.session.scalars(select(OcpiPush))),
        )


def start(peer: EmspPeer, **changes: Any) -> dict[str, Any]:
    body = {
        "response_url": peer.callback_url(),
        "token": TOKEN,
        "location_id": "LOC-1",
        "evse_uid": "EVSE-1",
        "connector_id": "1",
    }
    return {key: value for key, value in (body | changes).items() if value is not None}


async def test_version_details_list_commands_and_chargingprofiles_receivers(
    runtime: Runtime, emsp_peer: EmspPeer, partner_id: int
) -> None:
    _, envelope, _ = await emsp_peer.call("GET", cpo_url(runtime))
    endpoints = {(e["identifier"], e["role"]): e["url"] for e in envelope["data"]["endpoints"]}

    assert endpoints[("commands", "RECEIVER")] == cpo_url(runtime, "commands")
    assert endpoints[("chargingprofiles", "RECEIVER")] == cpo_url(runtime, "chargingprofiles")


# Bad input


def _bad_bodies(peer: EmspPeer) -> list[tuple[str, Any, str]]:
    url = peer.callback_url()
    reserve = {
        "response_url": url,
        "token": TOKEN,
        "expiry_date": "2030-01-01T00:00:00Z",
        "reservation_id": "R1",
        "location_id": "LOC-1",
    }
    return [
        ("START_SESSION", [start(peer)], "(body)"),
        ("START_SESSION", start(peer, response_url=None), "response_url"),
        ("START_SESSION", start(peer, response_url="ftp://x/y"), "response_url"),
        ("START_SESSION", start(peer, location_id=None), "location_id"),
        ("START_SESSION", start(peer, location_id="L" * 37), "location_id"),
        ("START_SESSION", start(peer, evse_uid=None), "evse_uid"),
        ("START_SESSION", start(peer, token=None), "token"),
        ("START_SESSION", start(peer, token={**TOKEN, "uid": None}), "token.uid"),
        ("START_SESSION", start(peer, token={**TOKEN, "type": "CARD"}), "token.type"),
        ("START_SESSION", start(peer, token={**TOKEN, "party_id": "EMSP"}), "token.party_id"),
        ("STOP_SESSION", {"response_url": url}, "session_id"),
        ("STOP_SESSION", {"response_url": url, "session_id": 42}, "session_id"),
        ("RESERVE_NOW", reserve | {"expiry_date": "2030-01-01T00:00:00+01:00"}, "expiry_date"),
        ("RESERVE_NOW", {k: v for k, v in reserve.items() if k != "expiry_date"}, "expiry_date"),
        ("RESERVE_NOW", {k: v for k, v in reserve.items() if k != "reservation_id"}, "reservation"),
        ("CANCEL_RESERVATION", {"response_url": url}, "reservation_id"),
        ("UNLOCK_CONNECTOR", start(peer, token=None, connector_id=None), "connector_id"),
    ]


async def test_bad_bodies_are_2001_and_store_nothing(
    runtime: Runtime, emsp_peer: EmspPeer, partner_id: int
) -> None:
    for command, body, field in _bad_bodies(emsp_peer):
        status, envelope = await post(runtime, emsp_peer, command, body)
        assert (status, envelope["status_code"]) == (200, 2001), (command, body, envelope)
        assert field in envelope["status_message"], (command, envelope)

    assert await stored(runtime) == ([], [], [])


async def test_a_body_that_is_not_json_is_400(
    runtime: Runtime, emsp_peer: EmspPeer, partner_id: int
) -> None:
    status, envelope, _ = await emsp_peer.call(
        "POST",
        cpo_url(runtime, "commands/START_SESSION"),
        body=None,
        headers={"Content-Type": "application/json"},
    )

    assert (status, envelope["status_code"]) == (400, 2001)


async def test_an_unknown_command_is_404(
    runtime: Runtime, emsp_peer: EmspPeer, partner_id: int
) -> None:
    status, envelope = await post(runtime, emsp_peer, "SELF_DESTRUCT", start(emsp_peer))

    assert (status, envelope["status_code"]) == (404, 2000)
    assert "START_SESSION" in envelope["status_message"]


# Refused or answered without a station


async def test_unknown_location_is_2003_with_a_rejected_command_response(
    runtime: Runtime, emsp_peer: EmspPeer, partner_id: int
) -> None:
    for command, body in (
        ("START_SESSION", start(emsp_peer, location_id="NOWHERE")),
        (
            "UNLOCK_CONNECTOR",
            start(emsp_peer, token=None, location_id="NOWHERE"),
        ),
    ):
        status, envelope = await post(runtime, emsp_peer, command, body)

        assert (status, envelope["status_code"]) == (200, 2003)
        check("CommandResponse", envelope["data"])
        assert envelope["data"]["result"] == "REJECTED"
        assert envelope["data"]["timeout"] == 60
    assert await stored(runtime) == ([], [], [])


async def test_stop_of_an_unknown_session_is_unknown_session(
    runtime: Runtime, emsp_peer: EmspPeer, partner_id: int
) -> None:
    body = {"response_url": emsp_peer.callback_url(), "session_id": str(uuid.uuid4())}
    status, envelope = await post(runtime, emsp_peer, "STOP_SESSION", body)

    assert (status, envelope["status_code"]) == (200, 1000)
    check("CommandResponse", envelope["data"])
    assert envelope["data"]["result"] == "UNKNOWN_SESSION"
    assert await stored(runtime) == ([], [], [])


async def test_cancel_of_an_unknown_reservation_is_answered_unknown_reservation_at_once(
    runtime: Runtime, emsp_peer: EmspPeer, partner_id: int
) -> None:
    url = emsp_peer.callback_url("cancel-1")
    status, envelope = await post(
        runtime,
        emsp_peer,
        "CANCEL_RESERVATION",
        {"response_url": url, "reservation_id": "NO-SUCH-RESERVATION"},
    )
    assert (status, envelope["status_code"]) == (200, 1000)
    assert envelope["data"] == {"result": "ACCEPTED", "timeout": 60}
    await emsp_peer.wait_for(lambda: emsp_peer.callbacks, timeout=5 * TIME_UNIT)

    [command], _, [push] = await stored(runtime)
    assert (command.command, command.state, command.result) == (
        "CANCEL_RESERVATION",
        "DONE",
        "UNKNOWN_RESERVATION",
    )
    assert push.object_key == f"command:{command.id}"
    [callback] = emsp_peer.callbacks
    assert callback.path == "/callbacks/cancel-1"
    check("CommandResult", callback.body)
    assert callback.body["result"] == "UNKNOWN_RESERVATION"
    assert emsp_peer.problems == []


# Charging profiles, refused before a station is asked


async def test_charging_profile_requests_with_bad_parameters_are_2001(
    runtime: Runtime, emsp_peer: EmspPeer, partner_id: int
) -> None:
    url = emsp_peer.callback_url()
    base = cpo_url(runtime, "chargingprofiles/S-1")
    profile = {
        "charging_rate_unit": "W",
        "charging_profile_period": [{"start_period": 0, "limit": 1}],
    }
    cases: list[tuple[str, str, Any, str]] = [
        ("GET", f"{base}?response_url={url}", None, "duration"),
        ("GET", f"{base}?duration=900", None, "response_url"),
        ("GET", f"{base}?duration=soon&response_url={url}", None, "duration"),
        ("GET", f"{base}?duration=0&response_url={url}", None, "duration"),
        ("DELETE", base, None, "response_url"),
        ("PUT", base, {"charging_profile": profile}, "response_url"),
        ("PUT", base, {"response_url": url}, "charging_profile"),
        (
            "PUT",
            base,
            {"response_url": url, "charging_profile": {**profile, "charging_rate_unit": "kW"}},
            "charging_rate_unit",
        ),
        (
            "PUT",
            base,
            {"response_url": url, "charging_profile": {**profile, "charging_profile_period": []}},
            "charging_profile_period",
        ),
        (
            "PUT",
            base,
            {
                "response_url": url,
                "charging_profile": {
                    **profile,
                    "charging_profile_period": [
                        {"start_period": 0, "limit": 11000},
                        {"start_period": 0, "limit": 7400},
                    ],
                },
            },
            "start_period",
        ),
        (
            "PUT",
            base,
            {
                "response_url": url,
                "charging_profile": {
                    **profile,
                    "charging_profile_period": [{"start_period": 0, "limit": -1}],
                },
            },
            "limit",
        ),
    ]
    for method, target, body, field in cases:
        status, envelope, _ = await emsp_peer.call(method, target, body=body)
        assert (status, envelope["status_code"]) == (200, 2001), (method, target, envelope)
        assert field in envelope["status_message"], (method, target, envelope)

    assert await stored(runtime) == ([], [], [])


async def test_charging_profiles_of_an_unknown_session_are_unknown_session(
    runtime: Runtime, emsp_peer: EmspPeer, partner_id: int
) -> None:
    url = emsp_peer.callback_url()
    base = cpo_url(runtime, "chargingprofiles/NO-SUCH-SESSION")
    profile = {
        "charging_rate_unit": "A",
        "charging_profile_period": [{"start_period": 0, "limit": 16}],
    }
    for method, target, body in (
        ("GET", f"{base}?duration=900&response_url={url}", None),
        ("PUT", base, {"response_url": url, "charging_profile": profile}),
        ("DELETE", f"{base}/?response_url={url}", None),
    ):
        status, envelope, _ = await emsp_peer.call(method, target, body=body)

        assert (status, envelope["status_code"]) == (200, 1000), envelope
        check("ChargingProfileResponse", envelope["data"])
        assert envelope["data"] == {"result": "UNKNOWN_SESSION", "timeout": 60}
    assert await stored(runtime) == ([], [], [])


# The core's bookkeeping


async def test_expire_commands_answers_timeout_once_for_pending_commands_past_their_deadline(
    runtime: Runtime, emsp_peer: EmspPeer, partner_id: int
) -> None:
    now = utcnow()
    rows = {
        name: OcpiCommand(
            id=str(uuid.uuid4()),
            partner_id=partner_id,
            command=command,
            response_url=emsp_peer.callback_url(name),
            request={},
            station_id=None,
            state="PENDING",
            deadline=now + deadline,
            created_at=now - timedelta(minutes=2),
        )
        for name, command, deadline in (
            ("overdue", "START_SESSION", timedelta(seconds=-1)),
            ("profile", "SET_CHARGING_PROFILE", timedelta(seconds=-1)),
            ("waiting", "UNLOCK_CONNECTOR", timedelta(minutes=1)),
        )
    }
    async with runtime.uow() as uow:
        uow.session.add_all(rows.values())
        await uow.commit()

    async with runtime.uow() as uow:
        first = await expire_commands(uow, now)
        await uow.commit()
    async with runtime.uow() as uow:
        second = await expire_commands(uow, now)
        late = await finish_command(uow, rows["overdue"].id, "ACCEPTED")
        await uow.commit()

    assert (first, second, late) == (2, 0, False)
    commands, _, pushes = await stored(runtime)
    states = {c.response_url.rsplit("/", 1)[1]: (c.state, c.result) for c in commands}
    assert states == {
        "overdue": ("TIMEOUT", "TIMEOUT"),
        "profile": ("TIMEOUT", "TIMEOUT"),
        "waiting": ("PENDING", None),
    }
    bodies = {p.payload["url"].rsplit("/", 1)[1]: p.payload["body"] for p in pushes}
    check("CommandResult", bodies["overdue"])
    assert bodies["overdue"]["result"] == "TIMEOUT"
    check("ChargingProfileResult", bodies["profile"])
    assert bodies["profile"] == {"result": "REJECTED"}  # its vocabulary has no TIMEOUT
    assert set(bodies) == {"overdue", "profile"}
