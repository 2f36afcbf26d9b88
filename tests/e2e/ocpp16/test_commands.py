"""End to end: every command the CSMS may send an OCPP 1.6 station, over a real websocket.

Path under test: ``cpms.commands.send_command`` -> ``GatewayStationPort`` -> ``OcppServer`` ->
a raw station (``raw_station``: plain JSON over a plain websocket, no gateway code) -> its
answer -> ``CommandResult`` and an entry of kind "command" in the station's log.

Covered: each command of ``CSMS_COMMANDS[V16]`` (Core, Firmware, Local List, Reservation,
Smart Charging, Remote Trigger and the security extension) with a realistic request and a
realistic answer; the table must name exactly those commands, so a new one cannot go
untested. Then the rules: an answer breaking its schema is returned with ``problems``; a
CALLERROR gives ``error_code``; a timeout raises ``CommandTimedOut`` and the late answer does
not shift later ones (FIELD-NOTES 13); ``StationOffline`` for a station not connected;
``StationNotReady`` before any boot and for remote start/stop while Pending, while
ChangeConfiguration is allowed then (FIELD-NOTES 4); a station that booted Accepted earlier
may receive commands after reconnecting without a new BootNotification (as real 1.6 stations
reconnect); ``UnknownCommand`` for station->CSMS actions and made-up names; ``InvalidCommand``
for arguments breaking the schema, with nothing sent; one CALL in flight per station.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from jsonschema import FormatChecker, validators
from raw_station import STEP, RawStation, raw_station

from cpms.admission import AdmissionPolicy
from cpms.commands import send_command
from cpms.config import Settings
from cpms.model import StationEvent
from cpms.runtime import Runtime
from cpms.station_lifecycle import list_station_events
from cpms.station_port import (
    CommandResult,
    CommandTimedOut,
    InvalidCommand,
    StationNotReady,
    StationOffline,
    UnknownCommand,
)
from ocpp_gateway.rpc import OcppVersion
from ocpp_gateway.station_port import CSMS_COMMANDS

QUIET = STEP / 5
"""How long we listen to conclude that the gateway sent nothing (a bounded wait, no assert on
how long anything took)."""

# A realistic command table: (request the CSMS sends, answer the station gives).

CERTIFICATE = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUJ6vX0Q2hZ3t9rWm8m1sYyJx4fQwwCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)
CERTIFICATE_HASH = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "f2311e9a995dfbd006bfc909e480987dc2d440ae6eaf1746efdadc638a295f65",
    "issuerKeyHash": "c8a9ab9d1e7a7a1a6a0fba7e9cc4c1b8f0cc6cb3f0b8c7d9c2a5c7d1a4e2b3f6",
    "serialNumber": "4f3a2b1c",
}
TX_PROFILE = {
    "chargingProfileId": 7,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Relative",
    "chargingSchedule": {
        "chargingRateUnit": "A",
        # 21.4 / 0.1 is not an integer in binary floating point: exercises multipleOf 0.1.
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 21.4, "numberPhases": 3}],
        "minChargingRate": 6.1,
    },
}
TX_DEFAULT_PROFILE = {
    "chargingProfileId": 12,
    "stackLevel": 1,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Absolute",
    "validFrom": "2025-03-01T00:00:00Z",
    "validTo": "2025-12-31T23:59:59Z",
    "chargingSchedule": {
        "duration": 86400,
        "startSchedule": "2025-03-01T00:00:00Z",
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 11000.0},
            {"startPeriod": 28800, "limit": 7400.5},
            {"startPeriod": 64800, "limit": 22000.0},
        ],
    },
}

COMMANDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # Core
    "ChangeAvailability": ({"connectorId": 1, "type": "Inoperative"}, {"status": "Scheduled"}),
    "ChangeConfiguration": ({"key": "HeartbeatInterval", "value": "300"}, {"status": "Accepted"}),
    "ClearCache": ({}, {"status": "Accepted"}),
    "DataTransfer": (
        {"vendorId": "com.example.charger", "messageId": "SetDisplayText", "data": "Welcome"},
        {"status": "Accepted", "data": "shown"},
    ),
    "GetConfiguration": (
        {"key": ["HeartbeatInterval", "MeterValueSampleInterval", "NoSuchKey"]},
        {
            "configurationKey": [
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
                {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
            ],
            "unknownKey": ["NoSuchKey"],
        },
    ),
    "RemoteStartTransaction": (
        {"connectorId": 1, "idTag": "04E91C5A123456", "chargingProfile": TX_PROFILE},
        {"status": "Accepted"},
    ),
    "RemoteStopTransaction": ({"transactionId": 4711}, {"status": "Accepted"}),
    "Reset": ({"type": "Soft"}, {"status": "Accepted"}),
    "UnlockConnector": ({"connectorId": 2}, {"status": "Unlocked"}),
    # Firmware Management
    "GetDiagnostics": (
        {
            "location": "ftp://diagnostics.example.com/uploads/",
            "retries": 3,
            "retryInterval": 60,
            "startTime": "2025-03-01T00:00:00Z",
            "stopTime": "2025-03-02T00:00:00Z",
        },
        {"fileName": "diagnostics-CP-2025-03-02.zip"},
    ),
    "UpdateFirmware": (
        {
            "location": "https://firmware.example.com/cp/v2.4.1.bin",
            "retries": 2,
            "retrieveDate": "2025-03-02T02:00:00Z",
            "retryInterval": 300,
        },
        {},
    ),
    # Local Auth List Management
    "GetLocalListVersion": ({}, {"listVersion": 41}),
    "SendLocalList": (
        {
            "listVersion": 42,
            "updateType": "Full",
            "localAuthorizationList": [
                {
                    "idTag": "04E91C5A123456",
                    "idTagInfo": {"status": "Accepted", "expiryDate": "2026-01-01T00:00:00Z"},
                },
                {"idTag": "DEADBEEF0001", "idTagInfo": {"status": "Blocked"}},
            ],
        },
        {"status": "Accepted"},
    ),
    # Reservation
    "ReserveNow": (
        {
            "connectorId": 1,
            "expiryDate": "2025-03-01T12:30:00Z",
            "idTag": "04E91C5A123456",
            "parentIdTag": "FLEET-7",
            "reservationId": 901,
        },
        {"status": "Accepted"},
    ),
    "CancelReservation": ({"reservationId": 901}, {"status": "Accepted"}),
    # Smart Charging
    "SetChargingProfile": (
        {"connectorId": 0, "csChargingProfiles": TX_DEFAULT_PROFILE},
        {"status": "Accepted"},
    ),
    "ClearChargingProfile": (
        {"connectorId": 0, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1},
        {"status": "Accepted"},
    ),
    "GetCompositeSchedule": (
        {"connectorId": 1, "duration": 3600, "chargingRateUnit": "A"},
        {
            "status": "Accepted",
            "connectorId": 1,
            "scheduleStart": "2025-03-01T10:00:00Z",
            "chargingSchedule": {
                "duration": 3600,
                "startSchedule": "2025-03-01T10:00:00Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 32.0, "numberPhases": 3},
                    {"startPeriod": 1800, "limit": 16.5, "numberPhases": 3},
                ],
            },
        },
    ),
    # Remote Trigger
    "TriggerMessage": (
        {"requestedMessage": "StatusNotification", "connectorId": 1},
        {"status": "Accepted"},
    ),
    # Security extension (OCPP 1.6 security whitepaper)
    "CertificateSigned": ({"certificateChain": CERTIFICATE}, {"status": "Accepted"}),
    "DeleteCertificate": ({"certificateHashData": CERTIFICATE_HASH}, {"status": "Accepted"}),
    "ExtendedTriggerMessage": (
        {"requestedMessage": "SignChargePointCertificate"},
        {"status": "Accepted"},
    ),
    "GetInstalledCertificateIds": (
        {"certificateType": "CentralSystemRootCertificate"},
        {"status": "Accepted", "certificateHashData": [CERTIFICATE_HASH]},
    ),
    "GetLog": (
        {
            "logType": "SecurityLog",
            "requestId": 17,
            "retries": 1,
            "retryInterval": 120,
            "log": {
                "remoteLocation": "https://logs.example.com/upload/CP-1",
                "oldestTimestamp": "2025-02-01T00:00:00Z",
                "latestTimestamp": "2025-03-01T00:00:00Z",
            },
        },
        {"status": "Accepted", "filename": "security-log-17.tar.gz"},
    ),
    "InstallCertificate": (
        {"certificateType": "ManufacturerRootCertificate", "certificate": CERTIFICATE},
        {"status": "Accepted"},
    ),
    "SignedUpdateFirmware": (
        {
            "requestId": 23,
            "retries": 3,
            "retryInterval": 60,
            "firmware": {
                "location": "https://firmware.example.com/cp/v2.5.0.bin",
                "retrieveDateTime": "2025-03-02T02:00:00Z",
                "installDateTime": "2025-03-02T03:00:00Z",
                "signingCertificate": CERTIFICATE,
                "signature": "MEUCIQDx3q0k4Q0Vq8S5rW9ZsbAiB1cD4mYV2xg9k2hQ8Jm8Zw==",
            },
        },
        {"status": "Accepted"},
    ),
}


# Fixtures and helpers


@asynccontextmanager
async def _started(settings: Settings) -> AsyncIterator[Runtime]:
    node = Runtime(settings, node="commands-node")
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


@pytest.fixture
async def command_node(settings: Settings) -> AsyncIterator[Runtime]:
    """A node that registers unknown stations on connect and accepts their boot."""
    async with _started(settings.replace(station_admission=AdmissionPolicy.OPEN)) as node:
        yield node


@pytest.fixture
async def pending_command_node(settings: Settings) -> AsyncIterator[Runtime]:
    """A node that registers unknown stations on connect and answers their boot Pending."""
    async with _started(settings.replace(station_admission=AdmissionPolicy.PENDING)) as node:
        yield node


def command(
    node: Runtime,
    station_id: str,
    name: str,
    arguments: Mapping[str, Any],
    *,
    timeout: float = STEP,
) -> asyncio.Task[CommandResult]:
    """Start sending a command through the core, as an operator would."""
    return asyncio.create_task(
        send_command(node.uow, node.station_port, station_id, name, arguments, timeout=timeout)
    )


async def received_call(station: RawStation, sending: asyncio.Task[CommandResult]) -> list[Any]:
    """The CALL the station receives for ``sending``; fail fast if sending fails first."""
    arrival = asyncio.create_task(station.next_call())
    done, _ = await asyncio.wait({arrival, sending}, return_when=asyncio.FIRST_COMPLETED)
    if arrival not in done:
        arrival.cancel()
        await asyncio.wait([arrival])
        sending.result()  # raises what went wrong
        pytest.fail(f"{sending.get_name()} finished before the station received a CALL")
    return arrival.result()


async def round_trip(
    node: Runtime, station: RawStation, name: str, arguments: dict[str, Any], answer: dict[str, Any]
) -> CommandResult:
    """Send a command, check the CALL the station gets, answer it; return the result."""
    sending = command(node, station.station_id, name, arguments)
    call = await received_call(station, sending)
    assert call[0] == 2
    assert isinstance(call[1], str)
    assert call[1]
    assert call[2:] == [name, arguments]
    await station.reply(call[1], answer)
    return await asyncio.wait_for(sending, STEP)


async def nothing_arrives(station: RawStation) -> None:
    """Assert the gateway sends the station no frame while we listen for ``QUIET`` seconds."""
    try:
        frame = await station.receive(timeout=QUIET)
    except TimeoutError:
        return
    pytest.fail(f"the station received {frame}")


async def command_log(node: Runtime, station_id: str) -> list[StationEvent]:
    """The station's log entries of kind "command", newest first."""
    page = await list_station_events(node.uow(), station_id, kind="command")
    return list(page.items)


async def until_disconnected(node: Runtime, station_id: str) -> None:
    """Wait (bounded) until the gateway has let go of the station's connection."""
    async with asyncio.timeout(STEP):
        # Polling: the gateway announces a closed connection through no awaitable event.
        while node.gateway.connection_state(station_id) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def until_connected(node: Runtime, station_id: str) -> None:
    """Wait (bounded) until the gateway has registered the station's connection."""
    async with asyncio.timeout(STEP):
        while node.gateway.connection_state(station_id) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# The table itself


def test_table_covers_exactly_the_commands_the_csms_may_send() -> None:
    assert sorted(COMMANDS) == sorted(CSMS_COMMANDS[OcppVersion.V16])
    assert len(set(CSMS_COMMANDS[OcppVersion.V16])) == len(CSMS_COMMANDS[OcppVersion.V16])


def _schema(name: str) -> dict[str, Any]:
    folder = resources.files("ocpp").joinpath("v16/schemas")
    text = folder.joinpath(f"{name}.json").read_text(encoding="utf-8-sig")
    return json.loads(text, parse_float=Decimal)


_FORMATS = FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_table_entry_fits_the_ocpp_schemas(name: str) -> None:
    """Checked with plain jsonschema, not our validation module, so a gateway bug that
    accepted a broken payload could not hide a broken table. Decimals keep multipleOf exact."""
    arguments, answer = COMMANDS[name]
    for schema_name, payload in ((name, arguments), (f"{name}Response", answer)):
        schema = _schema(schema_name)
        validator = validators.validator_for(schema)(schema, format_checker=_FORMATS)
        exact = json.loads(json.dumps(payload), parse_float=Decimal)
        problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(exact)]
        assert problems == [], schema_name


# Every command, end to end


@pytest.mark.parametrize("name", list(COMMANDS))
async def test_command_round_trips(command_node: Runtime, name: str) -> None:
    arguments, answer = COMMANDS[name]
    station_id = f"CMD-{name}"
    async with raw_station(command_node.ocpp_port, station_id) as station:
        assert (await station.boot())["status"] == "Accepted"

        result = await round_trip(command_node, station, name, arguments, answer)

    assert result.command == name
    assert result.response == answer
    assert result.answered
    assert result.error_code is None
    assert result.problems == ()
    [entry] = await command_log(command_node, station_id)
    assert entry.details == {"command": name, "arguments": arguments}
    assert entry.summary.startswith(f"{name} by operator: answered")


# The station's answer


async def test_answer_breaking_the_schema_is_returned_with_its_problems(
    command_node: Runtime,
) -> None:
    async with raw_station(command_node.ocpp_port, "CMD-bad-answer") as station:
        await station.boot()
        result = await round_trip(
            command_node, station, "Reset", {"type": "Hard"}, {"status": "Maybe", "when": "soon"}
        )

    assert result.response == {"status": "Maybe", "when": "soon"}
    assert result.answered
    assert any("status" in problem and "Maybe" in problem for problem in result.problems)
    assert any("when" in problem for problem in result.problems)


async def test_callerror_answer_gives_its_error_code(command_node: Runtime) -> None:
    async with raw_station(command_node.ocpp_port, "CMD-callerror") as station:
        await station.boot()
        sending = command(command_node, "CMD-callerror", "UnlockConnector", {"connectorId": 1})
        call = await received_call(station, sending)
        await station.send_text(
            json.dumps([4, call[1], "NotSupported", "no lock on this connector", {"lock": None}])
        )
        result = await asyncio.wait_for(sending, STEP)

    assert result.error_code == "NotSupported"
    assert result.error_description == "no lock on this connector"
    assert result.error_details == {"lock": None}
    assert result.response is None
    assert not result.answered
    [entry] = await command_log(command_node, "CMD-callerror")
    assert "error NotSupported" in entry.summary


async def test_timeout_raises_and_a_late_answer_does_not_shift_the_next_one(
    command_node: Runtime,
) -> None:
    """FIELD-NOTES 13: the late answer to the first Reset must not become the second's."""
    async with raw_station(command_node.ocpp_port, "CMD-timeout") as station:
        await station.boot()
        first = command(command_node, "CMD-timeout", "Reset", {"type": "Soft"}, timeout=QUIET)
        first_call = await received_call(station, first)
        with pytest.raises(CommandTimedOut):
            await asyncio.wait_for(first, STEP)

        second = command(command_node, "CMD-timeout", "Reset", {"type": "Hard"})
        second_call = await received_call(station, second)
        assert second_call[1] != first_call[1]
        assert second_call[3] == {"type": "Hard"}
        # The late answer arrives while the second Reset is in flight, then the real one.
        await station.reply(first_call[1], {"status": "Accepted"})
        await station.reply(second_call[1], {"status": "Rejected"})
        result = await asyncio.wait_for(second, STEP)

    assert result.response == {"status": "Rejected"}
    assert result.problems == ()
    newest, oldest = await command_log(command_node, "CMD-timeout")
    assert oldest.summary.startswith("Reset by operator: not done")
    assert newest.summary.startswith("Reset by operator: answered")


# Refused before anything is sent


async def test_station_not_connected_is_offline(command_node: Runtime) -> None:
    async with raw_station(command_node.ocpp_port, "CMD-gone") as station:
        await station.boot()
    await until_disconnected(command_node, "CMD-gone")

    with pytest.raises(StationOffline):
        await command(command_node, "CMD-gone", "Reset", {"type": "Soft"})

    [entry] = await command_log(command_node, "CMD-gone")
    assert entry.summary.startswith("Reset by operator: not done")


async def test_station_that_never_booted_is_not_ready(command_node: Runtime) -> None:
    """FIELD-NOTES 4: no GetConfiguration before an accepted BootNotification."""
    async with raw_station(command_node.ocpp_port, "CMD-fresh") as station:
        await until_connected(command_node, "CMD-fresh")
        with pytest.raises(StationNotReady):
            await command(command_node, "CMD-fresh", "GetConfiguration", {})
        await nothing_arrives(station)

        assert (await station.boot())["status"] == "Accepted"
        result = await round_trip(
            command_node, station, "GetConfiguration", {}, {"configurationKey": []}
        )

    assert result.response == {"configurationKey": []}


@pytest.mark.parametrize("refused", ["RemoteStartTransaction", "RemoteStopTransaction"])
async def test_pending_station_refuses_remote_start_and_stop_but_takes_configuration(
    pending_command_node: Runtime, refused: str
) -> None:
    """OCPP 1.6 section 4.2.1: while Pending, no remote start/stop; configuring is the point."""
    async with raw_station(pending_command_node.ocpp_port, "CMD-pending") as station:
        assert (await station.boot())["status"] == "Pending"
        with pytest.raises(StationNotReady):
            await command(pending_command_node, "CMD-pending", refused, COMMANDS[refused][0])

        # The first CALL the station ever sees is the configuration change: nothing was queued.
        arguments, answer = COMMANDS["ChangeConfiguration"]
        result = await round_trip(
            pending_command_node, station, "ChangeConfiguration", arguments, answer
        )

    assert result.response == answer
    assert result.problems == ()


async def test_station_booted_earlier_may_be_commanded_after_reconnecting_without_boot(
    command_node: Runtime,
) -> None:
    """A 1.6 station whose websocket drops reconnects without rebooting, so without a new
    BootNotification: its stored Accepted boot still counts (FIELD-NOTES 4 does not apply)."""
    async with raw_station(command_node.ocpp_port, "CMD-reconnect") as station:
        assert (await station.boot())["status"] == "Accepted"
    await until_disconnected(command_node, "CMD-reconnect")

    async with raw_station(command_node.ocpp_port, "CMD-reconnect") as station:
        # What such a station sends first; its answer also means the connection is set up.
        await station.result("Heartbeat", {})
        arguments, answer = COMMANDS["TriggerMessage"]
        result = await round_trip(command_node, station, "TriggerMessage", arguments, answer)

    assert result.response == answer


@pytest.mark.parametrize("name", ["Heartbeat", "BootNotification", "Bogus"])
async def test_unknown_command_is_refused(command_node: Runtime, name: str) -> None:
    """Heartbeat and BootNotification are the station's to send; Bogus is no OCPP action."""
    async with raw_station(command_node.ocpp_port, "CMD-unknown") as station:
        await station.boot()
        with pytest.raises(UnknownCommand) as refused:
            await command(command_node, "CMD-unknown", name, {})

        # Nothing went out: the first CALL the station sees is the next command's.
        result = await round_trip(command_node, station, "ClearCache", {}, {"status": "Accepted"})

    assert set(refused.value.available) == set(CSMS_COMMANDS[OcppVersion.V16])
    assert result.response == {"status": "Accepted"}


async def test_invalid_arguments_are_refused_and_nothing_is_sent(command_node: Runtime) -> None:
    async with raw_station(command_node.ocpp_port, "CMD-invalid") as station:
        await station.boot()
        with pytest.raises(InvalidCommand) as refused:
            await command(command_node, "CMD-invalid", "Reset", {"type": "Medium"})
        await nothing_arrives(station)

        result = await round_trip(
            command_node, station, "Reset", {"type": "Soft"}, {"status": "Accepted"}
        )

    assert any("type" in problem and "Medium" in problem for problem in refused.value.problems)
    assert result.response == {"status": "Accepted"}


# One CALL in flight per station


async def test_concurrent_commands_reach_the_station_one_at_a_time(command_node: Runtime) -> None:
    """OCPP-J: one outstanding CALL per direction; the second waits for the first's answer."""
    answers = {"GetLocalListVersion": {"listVersion": 3}, "ClearCache": {"status": "Accepted"}}
    async with raw_station(command_node.ocpp_port, "CMD-turns") as station:
        await station.boot()
        sending = {name: command(command_node, "CMD-turns", name, {}) for name in answers}

        first = await station.next_call()
        await nothing_arrives(station)  # the other CALL waits for this one's answer
        await station.reply(first[1], answers[first[2]])

        second = await station.next_call()
        assert {first[2], second[2]} == set(answers)
        await station.reply(second[1], answers[second[2]])
        results = {name: await asyncio.wait_for(task, STEP) for name, task in sending.items()}

    assert {name: result.response for name, result in results.items()} == answers
    assert all(result.problems == () for result in results.values())
