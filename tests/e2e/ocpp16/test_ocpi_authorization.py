"""End to end, OCPP 1.6 + OCPI: a raw station presents tokens an eMSP pushed or never pushed.

A real node, a real eMSP peer registered with it (tokens pushed through our OCPI Tokens
receiver, real-time ``authorize`` answered by the peer), and a raw OCPP 1.6 station. Covered:
a whitelist-ALWAYS token accepted without asking; a NEVER token asked with LocationReferences,
its ``authorization_reference`` carried to the session and the CDR with auth method
AUTH_REQUEST, asked once for Authorize, StartTransaction and StopTransaction together; an
unknown uid the eMSP does not know refused; ALLOWED_OFFLINE accepted and NEVER refused while
the eMSP is down; each AllowedType answer mapped to its 1.6 status as the gateway maps it; a
token of an eMSP's START_SESSION not asked again, its session marked COMMAND.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from e2e.ocpp16.node import Node, iso
from ocpi_peer import EmspPeer
from ocpi_support import cpo_url, register_directly
from raw_station import RawStation

from cpms.model import Cdr, OcpiCommand, Session, utcnow

LOCATION = "DEFAULT"
"""Where the open node puts the stations that connect (settings' default location)."""


def emsp_token(uid: str, whitelist: str, **extra: Any) -> dict[str, Any]:
    """An OCPI Token of the peer (DE/EMS)."""
    return {
        "country_code": "DE",
        "party_id": "EMS",
        "uid": uid,
        "type": "RFID",
        "contract_id": f"DE-EMS-{uid}",
        "issuer": "Test eMSP",
        "valid": True,
        "whitelist": whitelist,
        "last_updated": "2024-01-01T00:00:00Z",
        **extra,
    }


def allowed_info(token: dict[str, Any], allowed: str = "ALLOWED", **extra: Any) -> dict:
    """An OCPI AuthorizationInfo."""
    return {"allowed": allowed, "token": token, **extra}


async def push_token(node: Node, peer: EmspPeer, token: dict[str, Any]) -> None:
    """PUT ``token`` to the node's Tokens receiver as the peer."""
    url = cpo_url(
        node.runtime, f"tokens/{token['country_code']}/{token['party_id']}/{token['uid']}"
    )
    status, envelope, _ = await peer.call("PUT", url, body=token)
    assert (status, envelope["status_code"]) == (201, 1000), envelope


async def registered(node: Node, peer: EmspPeer) -> int:
    return await register_directly(node.runtime, peer)


def asked(peer: EmspPeer, uid: str) -> list[Any]:
    """The peer's authorize requests for ``uid``."""
    return peer.received("POST", f"/tokens/{uid}/authorize")


def authorize_problems(peer: EmspPeer) -> list[str]:
    return [problem for problem in peer.problems if "/authorize" in problem]


async def start(station: RawStation, uid: str, at: datetime) -> dict[str, Any]:
    return await station.result(
        "StartTransaction",
        {"connectorId": 1, "idTag": uid, "meterStart": 1000, "timestamp": iso(at)},
    )


async def stop(station: RawStation, transaction_id: int, uid: str, at: datetime) -> dict:
    return await station.result(
        "StopTransaction",
        {"transactionId": transaction_id, "idTag": uid, "meterStop": 4000, "timestamp": iso(at)},
    )


def moments() -> tuple[datetime, datetime]:
    begin = utcnow().replace(microsecond=0) - timedelta(minutes=30)
    return begin, begin + timedelta(minutes=20)


async def test_an_always_token_is_accepted_without_asking_its_emsp(
    open_node: Node, emsp_peer: EmspPeer
) -> None:
    partner_id = await registered(open_node, emsp_peer)
    await push_token(open_node, emsp_peer, emsp_token("EMSP-ALWAYS", "ALWAYS", group_id="FLEET"))
    begin, _ = moments()
    async with open_node.connect("OA-1") as station:
        await station.boot()
        answer = await station.result("Authorize", {"idTag": "EMSP-ALWAYS"})
        assert answer == {"idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET"}}
        started = await start(station, "EMSP-ALWAYS", begin)
    assert started["idTagInfo"]["status"] == "Accepted"
    session = await open_node.session(started["transactionId"])
    assert session.auth_method == "WHITELIST"
    assert session.authorization_reference is None
    assert session.partner_id == partner_id
    assert session.cdr_token["party_id"] == "EMS"
    assert emsp_peer.received("POST", "authorize") == []


async def test_a_never_token_is_asked_with_the_location_and_its_reference_reaches_the_cdr(
    open_node: Node, emsp_peer: EmspPeer
) -> None:
    partner_id = await registered(open_node, emsp_peer)
    token = emsp_token("EMSP-NEVER", "NEVER")
    await push_token(open_node, emsp_peer, token)
    emsp_peer.authorize_answers["EMSP-NEVER"] = allowed_info(token, authorization_reference="REF1")
    begin, end = moments()
    async with open_node.connect("OA-2") as station:
        await station.boot()
        started = await start(station, "EMSP-NEVER", begin)
        assert started["idTagInfo"] == {"status": "Accepted"}
        stopped = await stop(station, started["transactionId"], "EMSP-NEVER", end)
        assert stopped == {"idTagInfo": {"status": "Accepted"}}

    # Asked once: the StopTransaction's idTag used the answer the start got.
    [request] = asked(emsp_peer, "EMSP-NEVER")
    assert request.body == {"location_id": LOCATION}
    assert request.query == {"type": "RFID"}
    assert authorize_problems(emsp_peer) == []

    session = await open_node.session(started["transactionId"])
    assert session.status == "COMPLETED"
    assert (session.auth_method, session.authorization_reference) == ("AUTH_REQUEST", "REF1")
    assert session.partner_id == partner_id
    [cdr] = await open_node.rows(Cdr, Cdr.session_id == session.id)
    assert cdr.document["auth_method"] == "AUTH_REQUEST"
    assert cdr.document["authorization_reference"] == "REF1"
    assert cdr.document["cdr_token"]["contract_id"] == "DE-EMS-EMSP-NEVER"


async def test_authorize_then_start_asks_the_emsp_once(
    open_node: Node, emsp_peer: EmspPeer
) -> None:
    await registered(open_node, emsp_peer)
    token = emsp_token("EMSP-TWICE", "NEVER")
    await push_token(open_node, emsp_peer, token)
    emsp_peer.authorize_answers["EMSP-TWICE"] = allowed_info(token, authorization_reference="REF2")
    begin, _ = moments()
    async with open_node.connect("OA-3") as station:
        await station.boot()
        authorized = await station.result("Authorize", {"idTag": "EMSP-TWICE"})
        assert authorized == {"idTagInfo": {"status": "Accepted"}}
        started = await start(station, "EMSP-TWICE", begin)
    assert started["idTagInfo"] == {"status": "Accepted"}
    assert len(asked(emsp_peer, "EMSP-TWICE")) == 1
    session = await open_node.session(started["transactionId"])
    assert (session.auth_method, session.authorization_reference) == ("AUTH_REQUEST", "REF2")


async def test_an_authorize_sends_location_references(open_node: Node, emsp_peer: EmspPeer) -> None:
    await registered(open_node, emsp_peer)
    token = emsp_token("EMSP-WHERE", "NEVER")
    await push_token(open_node, emsp_peer, token)
    emsp_peer.authorize_answers["EMSP-WHERE"] = allowed_info(token)
    async with open_node.connect("OA-4") as station:
        await station.boot()
        await station.result("Authorize", {"idTag": "EMSP-WHERE"})
    [request] = asked(emsp_peer, "EMSP-WHERE")
    assert request.body == {"location_id": LOCATION}


async def test_an_unknown_uid_the_emsp_does_not_know_is_invalid(
    open_node: Node, emsp_peer: EmspPeer
) -> None:
    await registered(open_node, emsp_peer)  # answers HTTP 404 for uids it has no answer for
    begin, _ = moments()
    async with open_node.connect("OA-5") as station:
        await station.boot()
        answer = await station.result("Authorize", {"idTag": "NOBODY-KNOWS"})
        started = await start(station, "NOBODY-KNOWS", begin)
    assert answer == {"idTagInfo": {"status": "Invalid"}}
    assert started["idTagInfo"] == {"status": "Invalid"}
    assert len(asked(emsp_peer, "NOBODY-KNOWS")) == 2  # refusals are not remembered
    session = await open_node.session(started["transactionId"])
    assert session.status == "INVALID"


async def test_while_the_emsp_is_down_allowed_offline_is_accepted_and_never_is_not(
    open_node: Node, emsp_peer: EmspPeer
) -> None:
    await registered(open_node, emsp_peer)
    await push_token(open_node, emsp_peer, emsp_token("EMSP-OFFLINE", "ALLOWED_OFFLINE"))
    await push_token(open_node, emsp_peer, emsp_token("EMSP-ONLINE", "NEVER"))
    await push_token(
        open_node, emsp_peer, emsp_token("EMSP-STOLEN", "ALLOWED_OFFLINE", valid=False)
    )
    emsp_peer.down = True
    async with open_node.connect("OA-6") as station:
        await station.boot()
        offline = await station.result("Authorize", {"idTag": "EMSP-OFFLINE"})
        online = await station.result("Authorize", {"idTag": "EMSP-ONLINE"})
        stolen = await station.result("Authorize", {"idTag": "EMSP-STOLEN"})
    assert offline == {"idTagInfo": {"status": "Accepted"}}
    assert online == {"idTagInfo": {"status": "Invalid"}}
    assert stolen == {"idTagInfo": {"status": "Blocked"}}


@pytest.mark.parametrize(
    ("allowed", "status"),
    [
        ("BLOCKED", "Blocked"),
        ("EXPIRED", "Expired"),
        ("NO_CREDIT", "Blocked"),  # as ocpp_gateway/v16/handlers.py maps it
        ("NOT_ALLOWED", "Invalid"),
    ],
)
async def test_an_emsp_refusal_reaches_the_station_as_its_1_6_status(
    open_node: Node, emsp_peer: EmspPeer, allowed: str, status: str
) -> None:
    await registered(open_node, emsp_peer)
    token = emsp_token("EMSP-REFUSED", "ALLOWED_OFFLINE")
    await push_token(open_node, emsp_peer, token)
    emsp_peer.authorize_answers["EMSP-REFUSED"] = allowed_info(token, allowed)
    begin, _ = moments()
    async with open_node.connect("OA-7") as station:
        await station.boot()
        answer = await station.result("Authorize", {"idTag": "EMSP-REFUSED"})
        started = await start(station, "EMSP-REFUSED", begin)
    assert answer == {"idTagInfo": {"status": status}}
    assert started["idTagInfo"] == {"status": status}
    session = await open_node.session(started["transactionId"])
    assert session.status == "INVALID"
    assert authorize_problems(emsp_peer) == []


async def test_a_token_of_a_start_session_command_is_not_asked_again(
    open_node: Node, emsp_peer: EmspPeer
) -> None:
    partner_id = await registered(open_node, emsp_peer)
    # An APP_USER token the eMSP never pushed, sent with its START_SESSION command; the row
    # is what the commands module keeps of it.
    app_token = emsp_token("APP-USER-9", "NEVER", type="APP_USER", contract_id="DE-EMS-APP9")
    async with open_node.runtime.uow() as uow:
        uow.session.add(
            OcpiCommand(
                id="cmd-1",
                partner_id=partner_id,
                command="START_SESSION",
                response_url=emsp_peer.callback_url("cmd-1"),
                request={
                    "response_url": emsp_peer.callback_url("cmd-1"),
                    "token": app_token,
                    "location_id": LOCATION,
                    "authorization_reference": "CMD-REF",
                },
                id_tag="APP-USER-9",
                state="DONE",
                result="ACCEPTED",
                deadline=utcnow() + timedelta(seconds=30),
            )
        )
        await uow.commit()
    begin, _ = moments()
    async with open_node.connect("OA-8") as station:
        await station.boot()
        answer = await station.result("Authorize", {"idTag": "APP-USER-9"})
        started = await start(station, "APP-USER-9", begin)
    assert answer == {"idTagInfo": {"status": "Accepted"}}
    assert started["idTagInfo"] == {"status": "Accepted"}
    assert emsp_peer.received("POST", "authorize") == []
    session: Session = await open_node.session(started["transactionId"])
    assert (session.auth_method, session.authorization_reference) == ("COMMAND", "CMD-REF")
    assert session.partner_id == partner_id
    assert session.cdr_token == {
        "country_code": "DE",
        "party_id": "EMS",
        "uid": "APP-USER-9",
        "type": "APP_USER",
        "contract_id": "DE-EMS-APP9",
    }
