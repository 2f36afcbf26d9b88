"""End to end: every command the CSMS may send an OCPP 2.0.1 station, through the operator API.

Path under test: ``POST /api/stations/{id}/commands/{name}`` (and once ``cpms stations
command``, the console script) -> ``cpms.commands.send_command`` -> ``GatewayStationPort`` ->
``OcppServer`` -> a raw 2.0.1 station (``raw_station``: plain JSON over a plain websocket, no
gateway code) -> its answer -> the API's answer.

One station on one node takes the whole table, one command after another: each of
``CSMS_COMMANDS[V201]`` (all 15 functional blocks) with a realistic request and a realistic
answer; the table must name exactly those commands, so a new one cannot go untested, and
fits the 2.0.1 schemas (checked with plain jsonschema, not our validation). The station must
receive exactly the arguments posted, and the API must return exactly its answer. Then the
refusals, each followed by a command whose CALL must be the first the station sees (so
nothing was sent): a command before the boot (409), a 1.6 name (404 listing the 2.0.1
commands), arguments in 1.6 shape (422). While the boot is Pending (OCPP 2.0.1 B02.FR.05)
RequestStart/StopTransaction are refused and GetVariables goes through.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from e2e.ocpp16.node import Node, NodeStarter
from jsonschema import FormatChecker, validators
from raw_station import STEP, RawStation

from cpms.admission import AdmissionPolicy
from ocpp_gateway.rpc import OcppVersion
from ocpp_gateway.station_port import CSMS_COMMANDS

from support import ADMIN_TOKEN, TIME_UNIT

BOOT = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
CPMS = Path(sys.executable).parent / "cpms"
"""The console script of this environment."""
PROCESS_TIMEOUT = 30 * TIME_UNIT
"""Seconds one real `cpms` process may take."""

# A realistic command table: (request the CSMS sends, answer the station gives).

TRANSACTION = "5f0c3b7e-2c1a-4e8b-9d3f-7a6b5c4d3e21"
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
FIRMWARE_CHECKSUM = "9f86d081884c7d659a2feaa0c55ad015"  # MD5, 32 hex digits
RFID = {"idToken": "04E91C5A123456", "type": "ISO14443"}
FLEET = {"idToken": "FLEET-7", "type": "Central"}
HEARTBEAT = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
EVSE_POWER = {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}}
TEMPERATURE = {"component": {"name": "ChargingStation"}, "variable": {"name": "Temperature"}}
TX_PROFILE = {
    "id": 7,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Relative",
    "chargingSchedule": [
        {
            "id": 1,
            "chargingRateUnit": "A",
            # 2.0.1 limits are any number, unlike 1.6's multiples of 0.1.
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 21.37, "numberPhases": 3}],
            "minChargingRate": 6.05,
        }
    ],
}
TX_DEFAULT_PROFILE = {
    "id": 12,
    "stackLevel": 1,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Recurring",
    "recurrencyKind": "Daily",
    "validFrom": "2025-03-01T00:00:00Z",
    "validTo": "2025-12-31T23:59:59Z",
    "chargingSchedule": [
        {
            "id": 12,
            "startSchedule": "2025-03-01T00:00:00Z",
            "duration": 86400,
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 11000.0},
                {"startPeriod": 28800, "limit": 7400.5},
                {"startPeriod": 64800, "limit": 22000.0},
            ],
        }
    ],
}

COMMANDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # A Security
    "CertificateSigned": (
        {"certificateChain": CERTIFICATE, "certificateType": "ChargingStationCertificate"},
        {"status": "Accepted"},
    ),
    # B Provisioning
    "GetBaseReport": ({"requestId": 101, "reportBase": "FullInventory"}, {"status": "Accepted"}),
    "GetReport": (
        {
            "requestId": 102,
            "componentCriteria": ["Problem"],
            "componentVariable": [
                {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Problem"}}
            ],
        },
        {"status": "EmptyResultSet"},
    ),
    "GetVariables": (
        {"getVariableData": [HEARTBEAT, {**EVSE_POWER, "attributeType": "MaxSet"}]},
        {
            "getVariableResult": [
                {"attributeStatus": "Accepted", "attributeValue": "247", **HEARTBEAT},
                {
                    "attributeStatus": "Accepted",
                    "attributeType": "MaxSet",
                    "attributeValue": "22000",
                    **EVSE_POWER,
                },
            ]
        },
    ),
    "Reset": ({"type": "OnIdle", "evseId": 1}, {"status": "Scheduled"}),
    "SetNetworkProfile": (
        {
            "configurationSlot": 2,
            "connectionData": {
                "ocppVersion": "OCPP20",
                "ocppTransport": "JSON",
                "ocppCsmsUrl": "wss://csms.example.com/ocpp/",
                "messageTimeout": 30,
                "securityProfile": 2,
                "ocppInterface": "Wired0",
            },
        },
        {"status": "Accepted"},
    ),
    "SetVariables": (
        {
            "setVariableData": [
                {"attributeValue": "300", **HEARTBEAT},
                {
                    "attributeValue": "90",
                    "attributeType": "Actual",
                    "component": {"name": "TxCtrlr"},
                    "variable": {"name": "EVConnectionTimeOut"},
                },
            ]
        },
        {
            "setVariableResult": [
                {"attributeStatus": "Accepted", **HEARTBEAT},
                {
                    "attributeStatus": "RebootRequired",
                    "attributeType": "Actual",
                    "component": {"name": "TxCtrlr"},
                    "variable": {"name": "EVConnectionTimeOut"},
                },
            ]
        },
    ),
    # C Authorization
    "ClearCache": ({}, {"status": "Accepted"}),
    # D Local Authorization List Management
    "GetLocalListVersion": ({}, {"versionNumber": 41}),
    "SendLocalList": (
        {
            "versionNumber": 42,
            "updateType": "Differential",
            "localAuthorizationList": [
                {
                    "idToken": RFID,
                    "idTokenInfo": {
                        "status": "Accepted",
                        "cacheExpiryDateTime": "2026-01-01T00:00:00Z",
                        "groupIdToken": FLEET,
                    },
                },
                {
                    "idToken": {"idToken": "DEADBEEF0001", "type": "ISO14443"},
                    "idTokenInfo": {"status": "Blocked"},
                },
            ],
        },
        {"status": "Accepted"},
    ),
    # E Transactions
    "GetTransactionStatus": (
        {"transactionId": TRANSACTION},
        {"ongoingIndicator": True, "messagesInQueue": False},
    ),
    # F Remote Control
    "RequestStartTransaction": (
        {"idToken": RFID, "remoteStartId": 4711, "evseId": 1, "chargingProfile": TX_PROFILE},
        {"status": "Accepted", "transactionId": TRANSACTION},
    ),
    "RequestStopTransaction": ({"transactionId": TRANSACTION}, {"status": "Accepted"}),
    "TriggerMessage": (
        {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}},
        {"status": "Accepted"},
    ),
    "UnlockConnector": (
        {"evseId": 1, "connectorId": 2},
        {"status": "OngoingAuthorizedTransaction", "statusInfo": {"reasonCode": "TxInProgress"}},
    ),
    # G Availability
    "ChangeAvailability": (
        {"operationalStatus": "Inoperative", "evse": {"id": 2}},
        {"status": "Scheduled"},
    ),
    # H Reservation
    "ReserveNow": (
        {
            "id": 901,
            "expiryDateTime": "2025-03-01T12:30:00Z",
            "idToken": RFID,
            "groupIdToken": FLEET,
            "evseId": 1,
            "connectorType": "cType2",
        },
        {"status": "Accepted"},
    ),
    "CancelReservation": ({"reservationId": 901}, {"status": "Rejected"}),
    # I Tariff and Cost
    "CostUpdated": ({"totalCost": 3.42, "transactionId": TRANSACTION}, {}),
    # K Smart Charging
    "SetChargingProfile": (
        {"evseId": 0, "chargingProfile": TX_DEFAULT_PROFILE},
        {"status": "Accepted"},
    ),
    "ClearChargingProfile": (
        {
            "chargingProfileCriteria": {
                "evseId": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "stackLevel": 1,
            }
        },
        {"status": "Unknown"},
    ),
    "GetChargingProfiles": (
        {
            "requestId": 103,
            "evseId": 1,
            "chargingProfile": {
                "chargingProfilePurpose": "TxProfile",
                "chargingLimitSource": ["CSO"],
            },
        },
        {"status": "NoProfiles"},
    ),
    "GetCompositeSchedule": (
        {"duration": 3600, "evseId": 1, "chargingRateUnit": "W"},
        {
            "status": "Accepted",
            "schedule": {
                "evseId": 1,
                "duration": 3600,
                "scheduleStart": "2025-03-01T10:00:00Z",
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3},
                    {"startPeriod": 1800, "limit": 7400.5, "numberPhases": 3},
                ],
            },
        },
    ),
    # L Firmware Management
    "UpdateFirmware": (
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
    "PublishFirmware": (
        {
            "location": "https://firmware.example.com/cp/v2.5.0.bin",
            "checksum": FIRMWARE_CHECKSUM,
            "requestId": 24,
            "retries": 2,
            "retryInterval": 60,
        },
        {"status": "Accepted"},
    ),
    "UnpublishFirmware": ({"checksum": FIRMWARE_CHECKSUM}, {"status": "Unpublished"}),
    # M ISO 15118 Certificate Management
    "DeleteCertificate": ({"certificateHashData": CERTIFICATE_HASH}, {"status": "NotFound"}),
    "GetInstalledCertificateIds": (
        {"certificateType": ["CSMSRootCertificate", "V2GCertificateChain"]},
        {
            "status": "Accepted",
            "certificateHashDataChain": [
                {"certificateType": "CSMSRootCertificate", "certificateHashData": CERTIFICATE_HASH}
            ],
        },
    ),
    "InstallCertificate": (
        {"certificateType": "CSMSRootCertificate", "certificate": CERTIFICATE},
        {"status": "Accepted"},
    ),
    # N Diagnostics
    "GetLog": (
        {
            "logType": "DiagnosticsLog",
            "requestId": 17,
            "retries": 1,
            "retryInterval": 120,
            "log": {
                "remoteLocation": "https://logs.example.com/upload/CP-1",
                "oldestTimestamp": "2025-02-01T00:00:00Z",
                "latestTimestamp": "2025-03-01T00:00:00Z",
            },
        },
        {"status": "Accepted", "filename": "diagnostics-17.tar.gz"},
    ),
    "SetVariableMonitoring": (
        {
            "setMonitoringData": [
                {"value": 75.5, "type": "UpperThreshold", "severity": 3, **TEMPERATURE}
            ]
        },
        {
            "setMonitoringResult": [
                {
                    "id": 5,
                    "status": "Accepted",
                    "type": "UpperThreshold",
                    "severity": 3,
                    **TEMPERATURE,
                }
            ]
        },
    ),
    "ClearVariableMonitoring": (
        {"id": [5, 6]},
        {
            "clearMonitoringResult": [
                {"id": 5, "status": "Accepted"},
                {"id": 6, "status": "NotFound"},
            ]
        },
    ),
    "GetMonitoringReport": (
        {
            "requestId": 105,
            "monitoringCriteria": ["ThresholdMonitoring"],
            "componentVariable": [TEMPERATURE],
        },
        {"status": "Accepted"},
    ),
    "SetMonitoringBase": ({"monitoringBase": "HardWiredOnly"}, {"status": "Accepted"}),
    "SetMonitoringLevel": ({"severity": 4}, {"status": "Accepted"}),
    "CustomerInformation": (
        {"requestId": 104, "report": True, "clear": False, "idToken": RFID},
        {"status": "Accepted"},
    ),
    # O Display Message
    "SetDisplayMessage": (
        {
            "message": {
                "id": 6,
                "priority": "InFront",
                "state": "Idle",
                "message": {"format": "UTF8", "language": "de", "content": "Laden: 0,49 €/kWh"},
            }
        },
        {"status": "Accepted"},
    ),
    "GetDisplayMessages": ({"requestId": 106, "priority": "InFront"}, {"status": "Unknown"}),
    "ClearDisplayMessage": ({"id": 6}, {"status": "Accepted"}),
    # P Data Transfer
    "DataTransfer": (
        {
            "vendorId": "com.example.charger",
            "messageId": "SetDisplayText",
            "data": {"text": "Welcome", "seconds": 30},
        },
        {"status": "Accepted", "data": "shown"},
    ),
}


# The table itself


def test_table_covers_exactly_the_commands_the_csms_may_send() -> None:
    assert sorted(COMMANDS) == sorted(CSMS_COMMANDS[OcppVersion.V201])


_FORMATS = FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


def test_table_fits_the_ocpp_2_0_1_schemas() -> None:
    """Checked with plain jsonschema, not our validation module, so a gateway bug that
    accepted a broken payload could not hide a broken table."""
    folder = resources.files("ocpp").joinpath("v201/schemas")
    problems = []
    for name, (arguments, answer) in COMMANDS.items():
        for schema_name, payload in ((f"{name}Request", arguments), (f"{name}Response", answer)):
            schema = json.loads(folder.joinpath(f"{schema_name}.json").read_text("utf-8-sig"))
            validator = validators.validator_for(schema)(schema, format_checker=_FORMATS)
            problems += [
                f"{schema_name} {list(e.absolute_path)}: {e.message}"
                for e in validator.iter_errors(payload)
            ]

    assert problems == []


# Driving the node as an operator does


class Operator:
    """A client of the node's operator API with the operator token."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.session.post(
            "/api" + path, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(
            "/api" + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as response:
            return response.status, await response.json()


@asynccontextmanager
async def operator(node: Node) -> AsyncIterator[Operator]:
    async with aiohttp.ClientSession(base_url=node.runtime.base_url()) as session:
        yield Operator(session)


async def answer_next(station: RawStation, answer: dict[str, Any]) -> list[Any]:
    """Read the next CALL the node sends and answer it with ``answer``; return the CALL."""
    call = await station.next_call()
    await station.reply(call[1], answer)
    return call


async def round_trip(
    api: Operator, station: RawStation, name: str, arguments: dict[str, Any], answer: dict[str, Any]
) -> Any:
    """POST a command while the station answers it; check the CALL; return the API's answer.

    The CALL checked is the first the station receives from now on: a command refused
    before this one that had reached the station anyway would show up here instead.
    """
    answering = asyncio.create_task(answer_next(station, answer))
    try:
        status, body = await api.post(f"/stations/{station.station_id}/commands/{name}", arguments)
        assert status == 200, (name, status, body)
        call = await asyncio.wait_for(answering, STEP)
    finally:
        answering.cancel()
    assert call[0] == 2
    assert call[2:] == [name, arguments]
    return body


async def booted(station: RawStation) -> str:
    """Boot a 2.0.1 station; return the status the node answered."""
    answer = await station.result("BootNotification", BOOT)
    return str(answer["status"])


async def until_connected(node: Node, station_id: str) -> None:
    async def state() -> object:
        return node.runtime.gateway.connection_state(station_id)

    await node.eventually(state, lambda found: found is not None)


async def cli_command(node: Node, *argv: str) -> tuple[int, str, str]:
    """Run ``cpms stations command ARGV`` against ``node``; return exit code, stdout, stderr."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CPMS_")}
    process = await asyncio.create_subprocess_exec(
        str(CPMS), "stations", "command", *argv,
        "--url", node.runtime.base_url(), "--token", ADMIN_TOKEN,
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# One station takes every command


async def test_every_command_reaches_a_2_0_1_station_and_its_answer_comes_back(
    open_node: Node,
) -> None:
    station_id = "V201-CMD"
    async with (
        open_node.connect(station_id, version="ocpp2.0.1") as station,
        operator(open_node) as api,
    ):
        await until_connected(open_node, station_id)
        # Before the boot: nothing may be sent (FIELD-NOTES 4).
        early = await api.post(
            f"/stations/{station_id}/commands/GetVariables", COMMANDS["GetVariables"][0]
        )
        assert await booted(station) == "Accepted"

        status, listed = await api.get(f"/stations/{station_id}/commands")
        assert status == 200
        assert listed["commands"] == list(CSMS_COMMANDS[OcppVersion.V201])

        answers = {}
        for name, (arguments, answer) in COMMANDS.items():
            answers[name] = await round_trip(api, station, name, arguments, answer)

        # Refused before anything is sent: each is followed by a round trip whose CALL must
        # be the first the station receives.
        old_name = await api.post(
            f"/stations/{station_id}/commands/RemoteStartTransaction", {"idTag": "04E91C5A"}
        )
        await round_trip(api, station, "ClearCache", {}, {"status": "Accepted"})
        old_shape = await api.post(f"/stations/{station_id}/commands/Reset", {"type": "Soft"})
        await round_trip(api, station, "Reset", {"type": "Immediate"}, {"status": "Accepted"})

        # The console script takes the same path once.
        answering = asyncio.create_task(answer_next(station, {"status": "Accepted"}))
        try:
            code, out, err = await cli_command(
                open_node, station_id, "SetMonitoringLevel", '{"severity": 2}'
            )
            cli_call = await asyncio.wait_for(answering, STEP)
        finally:
            answering.cancel()

    assert early[0] == 409, early
    assert early[1]["error"]["code"] == "station_not_ready"
    assert answers == {
        name: {"command": name, "status": "answered", "response": answer, "problems": []}
        for name, (_, answer) in COMMANDS.items()
    }
    status, body = old_name
    assert (status, body["error"]["code"]) == (404, "not_found"), body
    message = body["error"]["message"]
    assert "'RemoteStartTransaction'" in message
    assert "RequestStartTransaction" in message
    assert "RemoteStopTransaction" not in message
    status, body = old_shape
    assert (status, body["error"]["code"]) == (422, "invalid_command"), body
    assert any("Soft" in problem for problem in body["error"]["problems"])
    assert (code, err) == (0, ""), err
    assert json.loads(out) == {"status": "Accepted"}
    assert cli_call[2:] == ["SetMonitoringLevel", {"severity": 2}]


async def test_a_pending_station_gets_no_remote_start_or_stop_but_is_configured(
    start_node: NodeStarter,
) -> None:
    """OCPP 2.0.1 B02.FR.05: a Pending station rejects RequestStart/StopTransaction, so they
    are not sent; B02.FR.01: the CSMS may read and set its variables meanwhile."""
    node = await start_node(station_admission=AdmissionPolicy.PENDING)
    station_id = "V201-PENDING"
    async with node.connect(station_id, version="ocpp2.0.1") as station, operator(node) as api:
        assert await booted(station) == "Pending"
        refused = [
            await api.post(f"/stations/{station_id}/commands/{name}", COMMANDS[name][0])
            for name in ("RequestStartTransaction", "RequestStopTransaction")
        ]
        arguments, answer = COMMANDS["GetVariables"]
        configured = await round_trip(api, station, "GetVariables", arguments, answer)

    for status, body in refused:
        assert (status, body["error"]["code"]) == (409, "station_not_ready"), body
        assert "Pending" in body["error"]["message"]
    assert configured["response"] == answer
