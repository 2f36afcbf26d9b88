"""Integration tests of the OCPP-J call rules a real OcppServer enforces (FIELD-NOTES 12, 13).

A real server on 127.0.0.1 port 0 and ``raw_station`` clients that write and read plain JSON
frames. Covers:

- one outstanding CALL per direction: our second CALL to a station is written only after the
  first is answered, while the station's own CALLs are answered meanwhile;
- correlation by message id: a late reply after a timeout is dropped and never answers the next
  CALL; a reply with an unknown id is dropped without an answer;
- a handler never calls its own station (``CallFromHandler``), but may schedule a call or call
  another station;
- schema checks of incoming CALLs: the CALLERROR each version prescribes for bad input, the
  connection staying open, and per-station leniency reported once per connection.

An oversized frame closing the connection with 1009 is covered in ``test_server.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from raw_station import STEP, RawStation, raw_station

from cpms.admission import Admission, Verdict
from ocpp_gateway.rpc import Call, CallError, CallResult, OcppVersion
from ocpp_gateway.server import (
    CallContext,
    CallFromHandler,
    Handler,
    OcppServer,
    StationProfile,
)
from ocpp_gateway.validation import Violation

from support import TIME_UNIT

SHORT = 0.2 * TIME_UNIT
"""A CALL deadline meant to expire: the raw station does not answer in time on purpose."""

V16 = "ocpp1.6"
V201 = "ocpp2.0.1"

BOOTS: dict[str, dict[str, Any]] = {
    V16: {"chargePointVendor": "Vendor", "chargePointModel": "Model"},
    V201: {"reason": "PowerUp", "chargingStation": {"vendorName": "Vendor", "model": "Model"}},
}
LONG_SERIAL = "S" * 26
"""One character over the 25 both versions allow for a station's serial number."""
LONG_SERIAL_BOOTS: dict[str, tuple[dict[str, Any], str]] = {
    V16: (BOOTS[V16] | {"chargePointSerialNumber": LONG_SERIAL}, "chargePointSerialNumber"),
    V201: (
        {
            "reason": "PowerUp",
            "chargingStation": {"vendorName": "V", "model": "M", "serialNumber": LONG_SERIAL},
        },
        "chargingStation.serialNumber",
    ),
}
AUTHORIZE: dict[str, dict[str, Any]] = {
    V16: {"idTag": "TAG1"},
    V201: {"idToken": {"idToken": "TAG1", "type": "ISO14443"}},
}


class Core:
    """Stands in for the core: admits every station, hands out profiles, keeps what it hears."""

    def __init__(self) -> None:
        self.profiles: dict[str, StationProfile] = {}
        self.tolerated: list[tuple[str, str, list[Violation]]] = []
        self.disconnects: list[tuple[str, str]] = []

    async def admit(self, station_id: str, password: str | None) -> Admission:
        return Admission(Verdict.ACCEPTED, station_id)

    async def on_connected(self, station_id: str, version: OcppVersion) -> StationProfile | None:
        return self.profiles.get(station_id)

    async def on_disconnected(self, station_id: str, reason: str) -> None:
        self.disconnects.append((station_id, reason))

    async def on_tolerated(self, station_id: str, action: str, found: list[Violation]) -> None:
        self.tolerated.append((station_id, action, found))


class Answers:
    """Plain handlers that remember every CALL they were given."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, str, dict[str, Any]]] = []
        """(station id, action, payload) per CALL that reached a handler."""

    def _seen(self, context: CallContext, call: Call) -> None:
        self.handled.append((context.station_id, call.action, call.payload))

    async def heartbeat(self, context: CallContext, call: Call) -> Mapping[str, Any]:
        self._seen(context, call)
        return {"currentTime": context.received_at.isoformat()}

    async def boot(self, context: CallContext, call: Call) -> Mapping[str, Any]:
        self._seen(context, call)
        return {
            "status": "Accepted",
            "currentTime": context.received_at.isoformat(),
            "interval": 60,
        }

    async def authorize_16(self, context: CallContext, call: Call) -> Mapping[str, Any]:
        self._seen(context, call)
        return {"idTagInfo": {"status": "Accepted"}}

    async def authorize_201(self, context: CallContext, call: Call) -> Mapping[str, Any]:
        self._seen(context, call)
        return {"idTokenInfo": {"status": "Accepted"}}

    def table(self) -> dict[OcppVersion, dict[str, Handler]]:
        common: dict[str, Handler] = {"Heartbeat": self.heartbeat, "BootNotification": self.boot}
        return {
            OcppVersion.V16: common | {"Authorize": self.authorize_16},
            OcppVersion.V201: common | {"Authorize": self.authorize_201},
        }

    def actions(self) -> list[str]:
        return [action for _, action, _ in self.handled]


@asynccontextmanager
async def running(
    core: Core, handlers: Mapping[OcppVersion, Mapping[str, Handler]]
) -> AsyncIterator[OcppServer]:
    server = OcppServer(
        host="127.0.0.1",
        port=0,
        admit=core.admit,
        on_connected=core.on_connected,
        on_disconnected=core.on_disconnected,
        on_tolerated=core.on_tolerated,
        handlers=handlers,
        open_timeout=STEP,
        close_timeout=STEP,
    )
    await server.start()
    try:
        yield server
    finally:
        async with asyncio.timeout(STEP):
            await server.stop()


@pytest.fixture
def core() -> Core:
    return Core()


@pytest.fixture
def answers() -> Answers:
    return Answers()


@pytest.fixture
async def server(core: Core, answers: Answers) -> AsyncIterator[OcppServer]:
    async with running(core, answers.table()) as server:
        yield server


async def answered_heartbeat(station: RawStation) -> None:
    """A round trip: the server has read everything sent before, and sent what it meant to."""
    frame = await station.call("Heartbeat", {})
    assert frame[0] == 3, frame


# One outstanding CALL per direction


async def test_a_second_call_is_sent_only_after_the_first_is_answered(server: OcppServer) -> None:
    async with raw_station(server.port, "CP1") as station:
        await answered_heartbeat(station)  # registered
        first = asyncio.create_task(server.call("CP1", "Reset", {"type": "Hard"}, timeout=STEP))
        second = asyncio.create_task(server.call("CP1", "Reset", {"type": "Soft"}, timeout=STEP))
        sent_first = await station.next_call()
        assert sent_first[2:] == ["Reset", {"type": "Hard"}]

        # Our CALL in flight does not hold up the station's own CALL (one per direction), and
        # by the time that answer arrives the second task has long asked to send: nothing came.
        await answered_heartbeat(station)
        assert station.incoming_calls.empty()
        assert not second.done()

        await station.reply(sent_first[1], {"status": "Accepted"})
        sent_second = await station.next_call()
        assert sent_second[2:] == ["Reset", {"type": "Soft"}]
        assert await first == CallResult(sent_first[1], {"status": "Accepted"})

        await station.reply(sent_second[1], {"status": "Rejected"})
        assert await second == CallResult(sent_second[1], {"status": "Rejected"})
        assert sent_first[1] != sent_second[1]


async def test_a_call_that_times_out_waiting_for_its_turn_is_never_sent(
    server: OcppServer,
) -> None:
    async with raw_station(server.port, "CP1") as station:
        await answered_heartbeat(station)
        first = asyncio.create_task(server.call("CP1", "Reset", {"type": "Hard"}, timeout=STEP))
        sent_first = await station.next_call()
        with pytest.raises(TimeoutError):
            await server.call("CP1", "Reset", {"type": "Soft"}, timeout=SHORT)

        await station.reply(sent_first[1], {"status": "Accepted"})
        assert (await first).payload == {"status": "Accepted"}
        await answered_heartbeat(station)
        assert station.incoming_calls.empty()


async def test_a_callerror_from_the_station_is_returned_to_the_caller(
    server: OcppServer,
) -> None:
    async with raw_station(server.port, "CP1") as station:
        await answered_heartbeat(station)
        calling = asyncio.create_task(server.call("CP1", "Reset", {"type": "Hard"}, timeout=STEP))
        unique_id = (await station.next_call())[1]
        await station.send_text(json.dumps([4, unique_id, "NotSupported", "no resets", {}]))
        assert await calling == CallError(unique_id, "NotSupported", "no resets", {})


# Correlation by message id


@pytest.mark.parametrize(
    "late_reply",
    [
        [3, "{id}", {"status": "Rejected"}],
        [4, "{id}", "InternalError", "late", {}],
    ],
    ids=["CALLRESULT", "CALLERROR"],
)
@pytest.mark.parametrize("when", ["before the next call", "during the next call"])
async def test_a_late_reply_is_dropped_and_the_next_call_gets_its_own_answer(
    server: OcppServer, caplog: pytest.LogCaptureFixture, late_reply: list[Any], when: str
) -> None:
    caplog.set_level(logging.WARNING, logger="ocpp_gateway")
    async with raw_station(server.port, "CP1") as station:
        await answered_heartbeat(station)
        with pytest.raises(TimeoutError):
            await server.call("CP1", "Reset", {"type": "Hard"}, timeout=SHORT)
        expired_id = (await station.next_call())[1]
        late = json.dumps([expired_id if part == "{id}" else part for part in late_reply])

        if when == "before the next call":
            await station.send_text(late)
            await answered_heartbeat(station)
        calling = asyncio.create_task(server.call("CP1", "Reset", {"type": "Soft"}, timeout=STEP))
        current = await station.next_call()
        assert current[1] != expired_id
        if when == "during the next call":
            await station.send_text(late)
        await station.reply(current[1], {"status": "Accepted"})

        assert await calling == CallResult(current[1], {"status": "Accepted"})
        assert f"late response to {expired_id} dropped" in caplog.text


@pytest.mark.parametrize("in_flight", [True, False], ids=["call in flight", "no call"])
async def test_a_reply_with_an_unknown_id_is_dropped_without_an_answer(
    server: OcppServer, caplog: pytest.LogCaptureFixture, in_flight: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="ocpp_gateway")
    async with raw_station(server.port, "CP1") as station:
        await answered_heartbeat(station)
        calling = None
        if in_flight:
            calling = asyncio.create_task(
                server.call("CP1", "Reset", {"type": "Hard"}, timeout=STEP)
            )
            in_flight_id = (await station.next_call())[1]

        await station.send_text(json.dumps([3, "no-such-call", {"status": "Rejected"}]))
        await station.send_text('[2,"hb-after","Heartbeat",{}]')
        # The first frame back answers the Heartbeat: the stray reply got no CALLERROR.
        assert (await station.receive())[:2] == [3, "hb-after"]
        assert "response to unknown call no-such-call dropped" in caplog.text

        if calling is not None:
            assert not calling.done()
            await station.reply(in_flight_id, {"status": "Accepted"})
            assert await calling == CallResult(in_flight_id, {"status": "Accepted"})


# Never call the station from inside its own CALL's handler


class CallingHandlers:
    """Handlers that call stations from inside a handler, in the ways a developer might."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.server: OcppServer | None = None
        self.raised: list[BaseException] = []
        self.scheduled: list[asyncio.Task[CallResult | CallError]] = []

    def _server(self) -> OcppServer:
        assert self.server is not None, "set .server before stations connect"
        return self.server

    async def call_own_station(self, context: CallContext, call: Call) -> Mapping[str, Any]:
        try:
            await self._server().call(context.station_id, "Reset", {"type": "Soft"}, timeout=STEP)
        except Exception as error:
            self.raised.append(error)
            raise
        return {"currentTime": context.received_at.isoformat()}

    async def call_own_station_through_gather(
        self, context: CallContext, call: Call
    ) -> Mapping[str, Any]:
        server = self._server()
        try:
            await asyncio.gather(
                server.call(context.station_id, "Reset", {"type": "Soft"}, timeout=SHORT)
            )
        except Exception as error:
            self.raised.append(error)
            raise
        return {}

    async def schedule_a_call(self, context: CallContext, call: Call) -> Mapping[str, Any]:
        server = self._server()
        self.scheduled.append(
            asyncio.create_task(
                server.call(context.station_id, "Reset", {"type": "Soft"}, timeout=STEP)
            )
        )
        return {"idTagInfo": {"status": "Accepted"}}

    async def call_another_station(self, context: CallContext, call: Call) -> Mapping[str, Any]:
        other = call.payload["data"]
        result = await self._server().call(other, "Reset", {"type": "Soft"}, timeout=STEP)
        assert isinstance(result, CallResult)
        return {"status": "Accepted", "data": result.payload["status"]}

    def table(self) -> dict[OcppVersion, dict[str, Handler]]:
        return {
            OcppVersion.V16: {
                "BootNotification": self.answers.boot,
                "Heartbeat": self.call_own_station,
                "StatusNotification": self.call_own_station_through_gather,
                "Authorize": self.schedule_a_call,
                "DataTransfer": self.call_another_station,
            }
        }


@pytest.fixture
async def calling(core: Core, answers: Answers) -> AsyncIterator[CallingHandlers]:
    handlers = CallingHandlers(answers)
    async with running(core, handlers.table()) as server:
        handlers.server = server
        yield handlers


async def test_a_handler_calling_its_own_station_gets_call_from_handler_and_nothing_is_sent(
    calling: CallingHandlers,
) -> None:
    server = calling._server()
    async with raw_station(server.port, "CP1") as station:
        await station.boot()
        frame = await station.call("Heartbeat", {}, unique_id="hb-1")
        assert frame == [4, "hb-1", "InternalError", "internal error", {}]
        assert [type(error) for error in calling.raised] == [CallFromHandler]

        await station.boot()  # a round trip: anything sent before its answer is queued
        assert station.incoming_calls.empty()

        # The connection still works both ways.
        outside = asyncio.create_task(server.call("CP1", "Reset", {"type": "Hard"}, timeout=STEP))
        reset = await station.next_call()
        assert reset[2:] == ["Reset", {"type": "Hard"}]
        await station.reply(reset[1], {"status": "Accepted"})
        assert (await outside).payload == {"status": "Accepted"}
        assert server.stations() == ["CP1"]


async def test_a_handler_calling_its_own_station_through_gather_is_refused_too(
    calling: CallingHandlers,
) -> None:
    server = calling._server()
    async with raw_station(server.port, "CP1") as station:
        await station.boot()
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        await station.send_text(json.dumps([2, "sn-1", "StatusNotification", status]))
        assert (await station.receive())[:3] == [4, "sn-1", "InternalError"]
        assert [type(error) for error in calling.raised] == [CallFromHandler]


async def test_a_handler_may_schedule_a_call_to_its_station_after_its_answer(
    calling: CallingHandlers,
) -> None:
    server = calling._server()
    async with raw_station(server.port, "CP1") as station:
        await station.boot()
        answer = await station.call("Authorize", {"idTag": "TAG1"}, unique_id="auth-1")
        assert answer == [3, "auth-1", {"idTagInfo": {"status": "Accepted"}}]
        reset = await station.next_call()
        assert reset[2:] == ["Reset", {"type": "Soft"}]
        await station.reply(reset[1], {"status": "Accepted"})
        (scheduled,) = calling.scheduled
        result = await asyncio.wait_for(scheduled, STEP)
        assert result == CallResult(reset[1], {"status": "Accepted"})
        assert calling.raised == []


async def test_a_handler_may_call_another_station(calling: CallingHandlers) -> None:
    server = calling._server()
    async with raw_station(server.port, "CP1") as one, raw_station(server.port, "CP2") as two:
        await one.boot()
        await two.boot()
        asking = asyncio.create_task(
            one.call("DataTransfer", {"vendorId": "V", "data": "CP2"}, unique_id="dt-1")
        )
        reset = await two.next_call()
        await two.reply(reset[1], {"status": "Accepted"})
        assert await asking == [3, "dt-1", {"status": "Accepted", "data": "Accepted"}]
        assert calling.raised == []


# Bad input: the CALLERROR each version prescribes, and the connection stays open


@pytest.mark.parametrize(
    ("version", "text", "expected"),
    [
        (V16, "not json", [4, "-1", "FormationViolation"]),
        (V201, "not json", [4, "-1", "RpcFrameworkError"]),
        (V16, '{"action": "Heartbeat"}', [4, "-1", "FormationViolation"]),
        (V201, '{"action": "Heartbeat"}', [4, "-1", "RpcFrameworkError"]),
        (V16, "[]", [4, "-1", "FormationViolation"]),
        (V201, '"Heartbeat"', [4, "-1", "RpcFrameworkError"]),
        (V16, '[2,"u-1","FlyToTheMoon",{}]', [4, "u-1", "NotImplemented"]),
        (V201, '[2,"u-1","FlyToTheMoon",{}]', [4, "u-1", "NotImplemented"]),
        (V16, '[2,"u-2","Reset",{"type":"Hard"}]', [4, "u-2", "NotSupported"]),
        (V201, '[2,"u-2","Reset",{"type":"Immediate"}]', [4, "u-2", "NotSupported"]),
    ],
    ids=[
        "1.6 not JSON",
        "2.0.1 not JSON",
        "1.6 an object",
        "2.0.1 an object",
        "1.6 an empty array",
        "2.0.1 a string",
        "1.6 unknown action",
        "2.0.1 unknown action",
        "1.6 a CSMS-only action",
        "2.0.1 a CSMS-only action",
    ],
)
async def test_bad_input_gets_its_callerror_and_the_connection_stays_open(
    server: OcppServer, answers: Answers, version: str, text: str, expected: list[Any]
) -> None:
    async with raw_station(server.port, "CP1", version=version) as station:
        await station.send_text(text)
        assert (await station.receive())[:3] == expected
        assert (await station.call("Authorize", AUTHORIZE[version]))[0] == 3
        assert server.stations() == ["CP1"]
        assert answers.actions() == ["Authorize"]


@pytest.mark.parametrize(
    ("version", "payload", "code", "path", "rule"),
    [
        (V16, {}, "OccurenceConstraintViolation", "idTag", "required"),
        (V201, {}, "OccurrenceConstraintViolation", "idToken", "required"),
        (V16, {"idTag": 42}, "TypeConstraintViolation", "idTag", "type"),
        (V201, {"idToken": "TAG1"}, "TypeConstraintViolation", "idToken", "type"),
        (
            V16,
            AUTHORIZE[V16] | {"colour": "red"},
            "FormationViolation",
            "colour",
            "additionalProperties",
        ),
        (
            V201,
            AUTHORIZE[V201] | {"colour": "red"},
            "FormatViolation",
            "colour",
            "additionalProperties",
        ),
        (V16, {"idTag": "T" * 21}, "PropertyConstraintViolation", "idTag", "maxLength"),
        (
            V201,
            {"idToken": {"idToken": "TAG1", "type": "Fingerprint"}},
            "PropertyConstraintViolation",
            "idToken.type",
            "enum",
        ),
    ],
    ids=[
        "1.6 missing field",
        "2.0.1 missing field",
        "1.6 wrong type",
        "2.0.1 wrong type",
        "1.6 extra property",
        "2.0.1 extra property",
        "1.6 too long",
        "2.0.1 unknown enum value",
    ],
)
async def test_a_call_breaking_its_schema_is_refused_before_its_handler(
    server: OcppServer,
    answers: Answers,
    version: str,
    payload: dict[str, Any],
    code: str,
    path: str,
    rule: str,
) -> None:
    async with raw_station(server.port, "CP1", version=version) as station:
        frame = await station.call("Authorize", payload, unique_id="bad-1")
        assert frame[:3] == [4, "bad-1", code]
        assert frame[4] == {"path": path, "rule": rule}
        assert len(frame[3]) <= 255
        assert answers.handled == []
        assert (await station.call("Authorize", AUTHORIZE[version]))[0] == 3
        assert server.stations() == ["CP1"]


# Leniency (FIELD-NOTES 12)


@pytest.mark.parametrize("version", [V16, V201])
async def test_a_lenient_station_has_an_over_long_serial_tolerated_and_reported_once(
    server: OcppServer, core: Core, answers: Answers, version: str
) -> None:
    core.profiles["LAX"] = StationProfile(lenient=True)
    boot, path = LONG_SERIAL_BOOTS[version]
    async with raw_station(server.port, "LAX", version=version) as station:
        for _ in range(2):
            assert (await station.result("BootNotification", boot))["status"] == "Accepted"
    assert answers.handled == [("LAX", "BootNotification", boot)] * 2
    assert len(core.tolerated) == 1
    station_id, action, found = core.tolerated[0]
    assert (station_id, action) == ("LAX", "BootNotification")
    assert [(v.path, v.rule) for v in found] == [(path, "maxLength")]

    # Once per connection: a new connection reports it again.
    async with raw_station(server.port, "LAX", version=version) as station:
        assert (await station.result("BootNotification", boot))["status"] == "Accepted"
    assert len(core.tolerated) == 2


@pytest.mark.parametrize("version", [V16, V201])
async def test_a_strict_station_gets_property_constraint_violation_for_an_over_long_serial(
    server: OcppServer, core: Core, answers: Answers, version: str
) -> None:
    boot, path = LONG_SERIAL_BOOTS[version]
    async with raw_station(server.port, "STRICT", version=version) as station:
        frame = await station.call("BootNotification", boot, unique_id="boot-1")
        assert frame[:3] == [4, "boot-1", "PropertyConstraintViolation"]
        assert frame[4] == {"path": path, "rule": "maxLength"}
        assert (await station.result("BootNotification", BOOTS[version]))["status"] == "Accepted"
        assert server.stations() == ["STRICT"]
    assert answers.handled == [("STRICT", "BootNotification", BOOTS[version])]
    assert core.tolerated == []


async def test_a_lenient_station_still_gets_type_errors_refused(
    server: OcppServer, core: Core, answers: Answers
) -> None:
    core.profiles["LAX"] = StationProfile(lenient=True)
    boot = {"chargePointVendor": 5, "chargePointModel": "M", "chargePointSerialNumber": "S" * 26}
    async with raw_station(server.port, "LAX") as station:
        frame = await station.call("BootNotification", boot, unique_id="boot-1")
    assert frame[:3] == [4, "boot-1", "TypeConstraintViolation"]
    assert frame[4] == {"path": "chargePointVendor", "rule": "type"}
    assert answers.handled == []
    assert core.tolerated == []
