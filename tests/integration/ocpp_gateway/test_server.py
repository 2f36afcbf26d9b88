"""Integration tests of ocpp_gateway.server: a real OcppServer, real websockets clients.

Servers listen on 127.0.0.1 port 0. The core is faked by ``FakeCore``: admission over a dict
of passwords, an online flag per station, the reason of each disconnection and the profile
``on_connected`` hands back, which is all the gateway may rely on. Unless a test says otherwise
the server answers Heartbeat (valid as ``{}`` in both versions) and nothing else. Every wait is
bounded by ``TIMEOUT``.

Correlation of our own CALLs with the station's answers (one CALL in flight, late and unknown
replies) is covered in ``test_call_rules.py``; the silence watchdog and websocket pings in
``test_liveness.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from cpms.admission import Admission, Verdict
from ocpp_gateway.rpc import Call, CallResult, OcppVersion
from ocpp_gateway.server import (
    REPLACED_REASON,
    CallContext,
    Handler,
    OcppServer,
    StationNotConnected,
    StationProfile,
)

TIMEOUT = 2.0
"""Seconds; the longest any single step of these tests may wait."""

PASSWORDS: dict[str, str | None] = {"CP1": None, "CP2": "s3cret"}
"""Known stations: CP1 needs no password, CP2 needs "s3cret"."""


class FakeCore:
    """Stands in for the core: decides admission and tracks which stations are online."""

    def __init__(self, passwords: Mapping[str, str | None]) -> None:
        self.passwords = dict(passwords)
        self.admission_requests: list[tuple[str, str | None]] = []
        self.events: list[tuple[str, ...]] = []
        self.online: dict[str, bool] = {}
        self.disconnect_reasons: list[tuple[str, str]] = []
        self.profiles: dict[str, StationProfile] = {}
        self.admission_fails = False
        self.connect_fails = False
        self.disconnect_gate: asyncio.Event | None = None

    async def admit(self, station_id: str, password: str | None) -> Admission:
        self.admission_requests.append((station_id, password))
        if self.admission_fails:
            raise ConnectionError("database is down")
        if station_id not in self.passwords:
            return Admission(Verdict.UNKNOWN_STATION, station_id, reason="not created")
        expected = self.passwords[station_id]
        if expected is not None and password != expected:
            return Admission(Verdict.BAD_CREDENTIALS, station_id, reason="wrong password")
        return Admission(Verdict.ACCEPTED, station_id)

    async def on_connected(self, station_id: str, version: OcppVersion) -> StationProfile | None:
        if self.connect_fails:
            raise ConnectionError("database is down")
        self.events.append(("connected", station_id, str(version)))
        self.online[station_id] = True
        return self.profiles.get(station_id)

    async def on_disconnected(self, station_id: str, reason: str) -> None:
        self.events.append(("disconnecting", station_id))
        self.disconnect_reasons.append((station_id, reason))
        if self.disconnect_gate is not None:
            await self.disconnect_gate.wait()  # a slow database write
        self.online[station_id] = False
        self.events.append(("disconnected", station_id))

    def count(self, event: str) -> int:
        return sum(1 for recorded in self.events if recorded[0] == event)


async def answer_heartbeat(context: CallContext, call: Call) -> Mapping[str, Any]:
    return {"currentTime": context.received_at.isoformat()}


HEARTBEAT_ONLY: dict[OcppVersion, dict[str, Handler]] = {
    version: {"Heartbeat": answer_heartbeat} for version in OcppVersion
}
"""The handlers of the default server: a CALLRESULT proves the connection still works."""


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, for at most TIMEOUT."""
    async with asyncio.timeout(TIMEOUT):
        # Polling on purpose: conditions span the server and the fake core, no single event.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def basic_auth(station_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def connect_station(
    server: OcppServer,
    station_id: str,
    *,
    subprotocols: tuple[str, ...] = ("ocpp1.6",),
    password: str | None = None,
    path: str | None = None,
) -> connect:
    return connect(
        f"ws://127.0.0.1:{server.port}{path or '/ocpp/' + station_id}",
        subprotocols=[Subprotocol(name) for name in subprotocols],
        additional_headers=basic_auth(station_id, password) if password is not None else None,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
    )


async def receive_frame(station: ClientConnection) -> list[Any]:
    frame = json.loads(await asyncio.wait_for(station.recv(), TIMEOUT))
    assert isinstance(frame, list)
    return frame


async def start_server(core: FakeCore, **options: Any) -> OcppServer:
    options.setdefault("handlers", HEARTBEAT_ONLY)
    server = OcppServer(
        host="127.0.0.1",
        port=0,
        admit=core.admit,
        on_connected=core.on_connected,
        on_disconnected=core.on_disconnected,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        **options,
    )
    await server.start()
    return server


@pytest.fixture
def core() -> FakeCore:
    return FakeCore(PASSWORDS)


@pytest.fixture
async def server(core: FakeCore) -> AsyncIterator[OcppServer]:
    server = await start_server(core)
    try:
        yield server
    finally:
        async with asyncio.timeout(TIMEOUT):
            await server.stop()


# Handshake


async def test_the_server_listens_on_the_port_it_was_given_by_the_system(
    server: OcppServer,
) -> None:
    assert server.listening
    assert server.port != 0


@pytest.mark.parametrize(
    ("offered", "negotiated"),
    [
        (("ocpp1.6",), "ocpp1.6"),
        (("ocpp2.0.1",), "ocpp2.0.1"),
        (("ocpp1.6", "ocpp2.0.1"), "ocpp2.0.1"),
    ],
)
async def test_a_known_station_is_accepted_with_the_negotiated_subprotocol(
    server: OcppServer, core: FakeCore, offered: tuple[str, ...], negotiated: str
) -> None:
    async with connect_station(server, "CP1", subprotocols=offered) as station:
        assert station.subprotocol == negotiated
        await eventually(lambda: server.stations() == ["CP1"])
        await eventually(lambda: ("connected", "CP1", negotiated) in core.events)
        assert core.online == {"CP1": True}


async def test_a_station_offering_no_supported_subprotocol_is_refused_with_400(
    server: OcppServer, core: FakeCore
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect_station(server, "CP1", subprotocols=("ocpp2.1",)):
            pass
    assert refused.value.response.status_code == 400
    assert b"ocpp2.0.1" in refused.value.response.body
    assert core.admission_requests == []


async def test_an_unknown_station_is_refused_with_404(server: OcppServer, core: FakeCore) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect_station(server, "NOBODY"):
            pass
    assert refused.value.response.status_code == 404
    assert core.admission_requests == [("NOBODY", None)]
    assert server.stations() == []


async def test_a_path_outside_ocpp_is_refused_with_404_without_asking_the_core(
    server: OcppServer, core: FakeCore
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect_station(server, "CP1", path="/CP1"):
            pass
    assert refused.value.response.status_code == 404
    assert core.admission_requests == []


@pytest.mark.parametrize("password", ["wrong", None], ids=["wrong password", "no password"])
async def test_a_station_without_its_password_is_refused_with_401_and_a_basic_challenge(
    server: OcppServer, password: str | None
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect_station(server, "CP2", password=password):
            pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"] == 'Basic realm="cpms"'
    assert server.stations() == []


async def test_a_station_with_its_password_is_accepted(server: OcppServer, core: FakeCore) -> None:
    async with connect_station(server, "CP2", password="s3cret") as station:
        assert station.subprotocol == "ocpp1.6"
        await eventually(lambda: server.stations() == ["CP2"])
    assert core.admission_requests == [("CP2", "s3cret")]


async def test_a_failing_admission_answers_503_and_the_server_keeps_serving(
    server: OcppServer, core: FakeCore
) -> None:
    core.admission_fails = True
    with pytest.raises(InvalidStatus) as refused:
        async with connect_station(server, "CP1"):
            pass
    assert refused.value.response.status_code == 503

    core.admission_fails = False
    async with connect_station(server, "CP1") as station:
        assert station.subprotocol == "ocpp1.6"


# What the gateway knows about a connection


async def test_the_profile_from_on_connected_is_the_state_handlers_see_and_update(
    core: FakeCore,
) -> None:
    seen: list[tuple[str | None, bool]] = []

    async def record_and_accept(context: CallContext, call: Call) -> Mapping[str, Any]:
        seen.append((context.state.boot_status, context.state.lenient))
        context.state.boot_status = "Accepted"
        return {"currentTime": context.received_at.isoformat()}

    core.profiles["CP1"] = StationProfile(boot_status="Pending", lenient=True)
    server = await start_server(core, handlers={OcppVersion.V201: {"Heartbeat": record_and_accept}})
    try:
        for attempt in ("first", "second"):
            async with connect_station(server, "CP1", subprotocols=("ocpp2.0.1",)) as station:
                assert server.version_of("CP1") is OcppVersion.V201
                await station.send(json.dumps([2, attempt, "Heartbeat", {}]))
                assert (await receive_frame(station))[:2] == [3, attempt]
                state = server.connection_state("CP1")
                assert state is not None
                assert (state.boot_status, state.lenient) == ("Accepted", True)
            await eventually(lambda: server.connection_state("CP1") is None)
            assert server.version_of("CP1") is None
        # Each connection starts from the profile, not from what the previous one learnt.
        assert seen == [("Pending", True), ("Pending", True)]
    finally:
        await server.stop()


async def test_a_station_without_profile_starts_strict_and_not_booted(
    server: OcppServer,
) -> None:
    async with connect_station(server, "CP1") as station:
        await station.send('[2,"hb","Heartbeat",{}]')
        assert (await receive_frame(station))[:2] == [3, "hb"]
        state = server.connection_state("CP1")
        assert state is not None
        assert (state.boot_status, state.lenient, state.tolerated) == (None, False, set())
        assert server.version_of("CP1") is OcppVersion.V16
    assert server.connection_state("NOBODY") is None


# Frames


VALID_BOOTS = {
    "ocpp1.6": {"chargePointVendor": "V", "chargePointModel": "M"},
    "ocpp2.0.1": {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}},
}


@pytest.mark.parametrize("subprotocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_an_action_ocpp_defines_but_nobody_handles_is_answered_not_supported(
    server: OcppServer, subprotocol: str
) -> None:
    async with connect_station(server, "CP1", subprotocols=(subprotocol,)) as station:
        await station.send(json.dumps([2, "boot-1", "BootNotification", VALID_BOOTS[subprotocol]]))
        assert await receive_frame(station) == [
            4,
            "boot-1",
            "NotSupported",
            "BootNotification is not something a station sends to this server",
            {},
        ]


@pytest.mark.parametrize("subprotocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_an_action_ocpp_does_not_define_is_answered_not_implemented(
    server: OcppServer, subprotocol: str
) -> None:
    async with connect_station(server, "CP1", subprotocols=(subprotocol,)) as station:
        await station.send('[2,"moon-1","FlyToTheMoon",{}]')
        assert await receive_frame(station) == [
            4,
            "moon-1",
            "NotImplemented",
            "unknown action FlyToTheMoon",
            {},
        ]


async def test_a_registered_handler_answers_its_action_for_its_version_only(
    core: FakeCore,
) -> None:
    async def answer_heartbeat(context: CallContext, call: Call) -> Mapping[str, Any]:
        return {"currentTime": context.received_at.isoformat(), "station": context.station_id}

    handlers: dict[OcppVersion, dict[str, Handler]] = {
        OcppVersion.V201: {"Heartbeat": answer_heartbeat}
    }
    server = await start_server(core, handlers=handlers)
    try:
        async with connect_station(server, "CP1", subprotocols=("ocpp2.0.1",)) as station:
            await station.send('[2,"hb-1","Heartbeat",{}]')
            type_id, unique_id, payload = await receive_frame(station)
            assert (type_id, unique_id, payload["station"]) == (3, "hb-1", "CP1")
        async with connect_station(server, "CP1", subprotocols=("ocpp1.6",)) as station:
            await station.send('[2,"hb-2","Heartbeat",{}]')
            assert (await receive_frame(station))[:3] == [4, "hb-2", "NotSupported"]
    finally:
        await server.stop()


async def test_a_handler_answer_json_cannot_carry_gets_internal_error_and_later_calls_work(
    core: FakeCore,
) -> None:
    async def answer_with_a_set(context: CallContext, call: Call) -> Mapping[str, Any]:
        return {"ids": {1, 2}}

    server = await start_server(core, handlers={OcppVersion.V16: {"Heartbeat": answer_with_a_set}})
    try:
        async with connect_station(server, "CP1") as station:
            await station.send('[2,"hb-1","Heartbeat",{}]')
            assert (await receive_frame(station))[:3] == [4, "hb-1", "InternalError"]
            await station.send('[2,"hb-2","Heartbeat",{}]')
            assert (await receive_frame(station))[:3] == [4, "hb-2", "InternalError"]
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("subprotocol", "text", "expected"),
    [
        ("ocpp1.6", "not json", [4, "-1", "FormationViolation"]),
        ("ocpp2.0.1", "not json", [4, "-1", "RpcFrameworkError"]),
        ("ocpp1.6", '[2,"m-1","Heartbeat"]', [4, "m-1", "ProtocolError"]),
        ("ocpp2.0.1", '[9,"m-2","Heartbeat",{}]', [4, "m-2", "MessageTypeNotSupported"]),
        ("ocpp2.0.1", '[2,"m-3","Heartbeat",[]]', [4, "m-3", "FormatViolation"]),
    ],
)
async def test_a_malformed_frame_gets_a_callerror_and_the_connection_stays_open(
    server: OcppServer, subprotocol: str, text: str, expected: list[Any]
) -> None:
    async with connect_station(server, "CP1", subprotocols=(subprotocol,)) as station:
        await station.send(text)
        assert (await receive_frame(station))[:3] == expected
        await station.send('[2,"after","Heartbeat",{}]')
        assert (await receive_frame(station))[:2] == [3, "after"]
        assert server.stations() == ["CP1"]


async def test_an_unknown_message_type_is_ignored_in_ocpp16(server: OcppServer) -> None:
    async with connect_station(server, "CP1", subprotocols=("ocpp1.6",)) as station:
        await station.send('[9,"m-1","Heartbeat",{}]')
        await station.send('[2,"after","Heartbeat",{}]')
        # The first frame to come back answers the second message: the first got no reply.
        assert (await receive_frame(station))[:2] == [3, "after"]


async def test_a_binary_frame_holding_a_call_is_tolerated_and_answered(server: OcppServer) -> None:
    async with connect_station(server, "CP1") as station:
        await station.send(b'[2,"bin-1","Heartbeat",{}]')
        assert (await receive_frame(station))[:2] == [3, "bin-1"]


async def test_an_oversized_message_closes_only_that_connection_with_1009(core: FakeCore) -> None:
    server = await start_server(core, max_message_size=1024)
    try:
        async with connect_station(server, "CP1") as station:
            big = '{"vendorId":"V","data":"' + "x" * 2048 + '"}'
            await station.send('[2,"big","DataTransfer",' + big + "]")
            await asyncio.wait_for(station.wait_closed(), TIMEOUT)
            assert station.close_code == 1009
        await eventually(lambda: core.online == {"CP1": False})
        async with connect_station(server, "CP1") as station:
            await station.send('[2,"small","Heartbeat",{}]')
            assert (await receive_frame(station))[:2] == [3, "small"]
    finally:
        await server.stop()


# One connection per station


async def test_a_second_connection_replaces_the_first_without_marking_the_station_offline(
    server: OcppServer, core: FakeCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ocpp_gateway")
    async with connect_station(server, "CP1") as first:
        await eventually(lambda: core.count("connected") == 1)
        async with connect_station(server, "CP1", subprotocols=("ocpp2.0.1",)) as second:
            await asyncio.wait_for(first.wait_closed(), TIMEOUT)
            assert (first.close_code, first.close_reason) == (1000, REPLACED_REASON)
            # The old connection's handler has finished once it says so in the log.
            await eventually(lambda: "replaced connection closed" in caplog.text)

            assert server.stations() == ["CP1"]
            assert server.connection_count == 1
            assert core.count("connected") == 2
            assert core.count("disconnecting") == 0
            assert core.online == {"CP1": True}

            await second.send('[2,"still-here","Heartbeat",{}]')
            assert (await receive_frame(second))[:2] == [3, "still-here"]
    await eventually(lambda: core.online == {"CP1": False})
    assert core.disconnect_reasons == [("CP1", "connection closed (1000)")]


async def test_a_slow_offline_of_the_old_connection_cannot_overtake_the_new_online(
    server: OcppServer, core: FakeCore
) -> None:
    core.disconnect_gate = asyncio.Event()
    async with connect_station(server, "CP1"):
        await eventually(lambda: core.online == {"CP1": True})
    await eventually(lambda: core.count("disconnecting") == 1)  # now stuck on the gate

    async with connect_station(server, "CP1") as second:
        # The new connection is open but must not report "online" before "offline" is done.
        await asyncio.sleep(0.1)
        assert core.count("connected") == 1

        core.disconnect_gate.set()
        await eventually(lambda: core.count("connected") == 2)
        assert [event[0] for event in core.events] == [
            "connected",
            "disconnecting",
            "disconnected",
            "connected",
        ]
        assert core.online == {"CP1": True}
        assert server.stations() == ["CP1"]
        await second.send('[2,"x","Heartbeat",{}]')
        assert (await receive_frame(second))[:2] == [3, "x"]


async def test_a_station_that_disconnects_is_reported_offline_and_unregistered(
    server: OcppServer, core: FakeCore
) -> None:
    async with connect_station(server, "CP1"):
        await eventually(lambda: server.stations() == ["CP1"])
    await eventually(lambda: core.online == {"CP1": False})
    assert server.stations() == []
    assert server.connection_count == 0


async def leave_normally(station: ClientConnection) -> None:
    await station.close()


async def leave_with_a_reason(station: ClientConnection) -> None:
    await station.close(4000, "maintenance")


async def drop_the_tcp_connection(station: ClientConnection) -> None:
    station.transport.abort()


@pytest.mark.parametrize(
    ("leave", "reason"),
    [
        (leave_normally, "connection closed (1000)"),
        (leave_with_a_reason, "connection closed (4000 maintenance)"),
        (drop_the_tcp_connection, "connection lost"),
    ],
    ids=["close", "close with a reason", "TCP dropped"],
)
async def test_on_disconnected_is_told_why_the_station_left(
    server: OcppServer,
    core: FakeCore,
    leave: Callable[[ClientConnection], Any],
    reason: str,
) -> None:
    async with connect_station(server, "CP1") as station:
        await eventually(lambda: core.online == {"CP1": True})
        await leave(station)
        await eventually(lambda: core.online == {"CP1": False})
    assert core.disconnect_reasons == [("CP1", reason)]
    assert server.connection_state("CP1") is None


async def test_a_failing_on_connected_closes_the_connection_with_1011_for_a_retry(
    server: OcppServer, core: FakeCore
) -> None:
    core.connect_fails = True
    async with connect_station(server, "CP1") as station:
        await asyncio.wait_for(station.wait_closed(), TIMEOUT)
        assert (station.close_code, station.close_reason) == (
            1011,
            "could not record the connection",
        )
    core.connect_fails = False
    async with connect_station(server, "CP1") as station:
        await station.send('[2,"back","Heartbeat",{}]')
        assert (await receive_frame(station))[:2] == [3, "back"]


async def test_stop_closes_stations_with_1001_and_stops_listening(core: FakeCore) -> None:
    server = await start_server(core)
    async with connect_station(server, "CP1") as station:
        await eventually(lambda: server.stations() == ["CP1"])
        async with asyncio.timeout(TIMEOUT):
            await server.stop()
        await asyncio.wait_for(station.wait_closed(), TIMEOUT)
        assert station.close_code == 1001
    assert not server.listening
    assert core.online == {"CP1": False}
    assert core.disconnect_reasons == [("CP1", "connection closed (1001 server shutting down)")]
    assert server.stations() == []


# Calling stations


async def test_a_call_to_a_station_returns_the_station_response(server: OcppServer) -> None:
    async with connect_station(server, "CP1") as station:
        await eventually(lambda: server.stations() == ["CP1"])
        calling = asyncio.create_task(
            server.call("CP1", "Reset", {"type": "Hard"}, timeout=TIMEOUT)
        )
        type_id, unique_id, action, payload = await receive_frame(station)
        assert (type_id, action, payload) == (2, "Reset", {"type": "Hard"})
        await station.send(json.dumps([3, unique_id, {"status": "Accepted"}]))
        assert await calling == CallResult(unique_id, {"status": "Accepted"})


async def test_calling_a_station_that_is_not_connected_raises(server: OcppServer) -> None:
    with pytest.raises(StationNotConnected):
        await server.call("CP1", "Reset", {"type": "Hard"}, timeout=TIMEOUT)


async def test_a_call_in_flight_fails_when_the_station_disconnects(server: OcppServer) -> None:
    async with connect_station(server, "CP1") as station:
        await eventually(lambda: server.stations() == ["CP1"])
        calling = asyncio.create_task(
            server.call("CP1", "Reset", {"type": "Hard"}, timeout=TIMEOUT)
        )
        await receive_frame(station)
    with pytest.raises(StationNotConnected):
        await calling
