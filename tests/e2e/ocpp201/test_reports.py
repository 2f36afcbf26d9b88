"""End-to-end: what a 2.0.1 station reports beyond boot, status and transactions.

A raw 2.0.1 station on a real node sends a NotifyReport in two parts, and the operator API
serves the device model it became; an invalid NotifyReport gets its CALLERROR and changes
nothing. Then every other message of ``ocpp_gateway.v201.reports`` once, table-driven: each
answer is the one expected and valid against the 2.0.1 response schema, and each leaves its
entry in the station log, read back through ``GET /api/stations/{id}/events``; the monitoring
report reaches ``GET /api/stations/{id}/monitors`` and an expired reservation is ended.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from typing import Any

import aiohttp
from e2e.ocpp16.node import Node, iso
from jsonschema import Draft202012Validator
from raw_station import RawStation
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cpms.model import Reservation, utcnow
from ocpp_gateway.rpc import OcppVersion
from ocpp_gateway.station_port import CSMS_COMMANDS
from ocpp_gateway.validation import PayloadKind, known_actions, violations

from support import ADMIN_TOKEN

BOOT = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
CORE = {
    "Authorize",
    "BootNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
    "TransactionEvent",
}
"""The station's messages ``ocpp_gateway.v201.handlers`` answers itself."""


@asynccontextmanager
async def _booted(node: Node, station_id: str) -> AsyncIterator[RawStation]:
    async with node.connect(station_id, version="ocpp2.0.1") as station:
        assert (await station.result("BootNotification", BOOT))["status"] == "Accepted"
        yield station


@asynccontextmanager
async def _operator(node: Node) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(base_url=node.runtime.base_url(), headers=headers) as http:
        yield http


async def _get(http: aiohttp.ClientSession, path: str, documented: str | None = None) -> Any:
    """GET ``/api{path}``; with ``documented``, check the answer against that OpenAPI schema."""
    async with http.get("/api" + path) as response:
        assert response.status == 200, await response.text()
        answer = await response.json()
    if documented is not None:
        problems = [error.message for error in _openapi_schema(documented).iter_errors(answer)]
        assert problems == [], (path, problems)
    return answer


def _openapi_schema(name: str) -> Draft202012Validator:
    """A validator of ``components/schemas/{name}`` of the operator API's openapi.json."""
    text = resources.files("ocpi_api.operator").joinpath("openapi.json").read_text("utf-8")
    document = Resource.from_contents(json.loads(text), default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource("urn:cpms:openapi", document)
    return Draft202012Validator(
        {"$ref": f"urn:cpms:openapi#/components/schemas/{name}"}, registry=registry
    )


def _attribute(
    component: dict[str, Any], variable: dict[str, Any], value: str, **more: Any
) -> dict[str, Any]:
    return {
        "component": component,
        "variable": variable,
        "variableAttribute": [{"value": value, **more}],
    }


async def test_a_report_in_two_parts_becomes_the_device_model_the_operator_api_serves(
    open_node: Node,
) -> None:
    connector = {"name": "Connector", "evse": {"id": 1, "connectorId": 1}}
    first = {
        "requestId": 42,
        "generatedAt": iso(utcnow()),
        "seqNo": 0,
        "tbc": True,
        "reportData": [
            {
                **_attribute(
                    {"name": "OCPPCommCtrlr"}, {"name": "HeartbeatInterval"}, "300",
                    mutability="ReadWrite", persistent=True,
                ),
                "variableCharacteristics": {
                    "dataType": "integer", "supportsMonitoring": True, "unit": "s",
                    "minLimit": 1, "maxLimit": 86400,
                },
            },
            _attribute(
                connector, {"name": "AvailabilityState"}, "Available", mutability="ReadOnly"
            ),
        ],
    }  # fmt: skip
    second = {
        "requestId": 42,
        "generatedAt": iso(utcnow()),
        "seqNo": 1,
        "reportData": [
            {
                "component": {"name": "SmartChargingCtrlr", "instance": "Main"},
                "variable": {"name": "Power", "instance": "Max"},
                "variableAttribute": [
                    {"type": "Actual", "value": "11000", "mutability": "ReadOnly"},
                    {"type": "MaxSet", "value": "22000", "constant": True},
                ],
            }
        ],
    }
    async with _booted(open_node, "R201") as station, _operator(open_node) as http:
        assert await station.result("NotifyReport", first) == {}
        assert await station.result("NotifyReport", second) == {}

        model = await _get(http, "/stations/R201/device-model", "DeviceVariablePage")
        assert model["total"] == 4
        assert [
            (item["component"]["name"], item["variable"]["name"], item["attribute_type"])
            for item in model["items"]
        ] == [
            ("Connector", "AvailabilityState", "Actual"),
            ("OCPPCommCtrlr", "HeartbeatInterval", "Actual"),
            ("SmartChargingCtrlr", "Power", "Actual"),
            ("SmartChargingCtrlr", "Power", "MaxSet"),
        ]
        availability, heartbeat, _, max_set = model["items"]
        assert availability["component"] == {
            "name": "Connector", "instance": None, "evse_id": 1, "connector_id": 1
        }  # fmt: skip
        assert (availability["value"], availability["mutability"]) == ("Available", "ReadOnly")
        assert (heartbeat["value"], heartbeat["persistent"]) == ("300", True)
        assert heartbeat["characteristics"]["unit"] == "s"
        assert heartbeat["characteristics"]["max_limit"] == 86400
        assert heartbeat["request_id"] == 42
        assert max_set["component"]["instance"] == "Main"
        assert max_set["variable"] == {"name": "Power", "instance": "Max"}
        assert (max_set["value"], max_set["constant"]) == ("22000", True)

        power = await _get(http, "/stations/R201/device-model?component=smartchargingctrlr&limit=1")
        assert (power["total"], len(power["items"])) == (2, 1)
        assert power["items"][0]["attribute_type"] == "Actual"
        [logged] = (await _get(http, "/stations/R201/events?kind=report"))["items"]
        assert logged["summary"] == "device model report 42 received whole (2 parts)"

        # A later report replaces a value; an invalid one is refused and changes nothing.
        again = {
            "requestId": 43,
            "generatedAt": iso(utcnow()),
            "seqNo": 0,
            "reportData": [
                _attribute({"name": "OCPPCommCtrlr"}, {"name": "HeartbeatInterval"}, "60")
            ],
        }
        assert await station.result("NotifyReport", again) == {}
        invalid = {
            **again,
            "reportData": [
                _attribute({"name": "OCPPCommCtrlr"}, {"name": "HeartbeatInterval"}, "5"),
                {
                    "component": {"name": "EVSE"},
                    "variable": {"name": "Power"},
                    "variableAttribute": [],
                },
            ],
        }
        frame = await station.call("NotifyReport", invalid)
        assert frame[0] == 4
        assert frame[2] == "OccurrenceConstraintViolation"
        assert frame[4] == {"path": "reportData[1].variableAttribute", "rule": "minItems"}
        heartbeats = await _get(http, "/stations/R201/device-model?variable=HeartbeatInterval")
        assert [(i["value"], i["request_id"]) for i in heartbeats["items"]] == [("60", 43)]
        assert heartbeat["characteristics"] == heartbeats["items"][0]["characteristics"]
        assert (await _get(http, "/stations/R201/device-model"))["total"] == 4
        assert (await _get(http, "/stations/R201/events?kind=report"))["total"] == 2


@dataclass(frozen=True)
class Case:
    """One message, the answer it must get, and the log entry it must leave."""

    action: str
    payload: dict[str, Any]
    answer: dict[str, Any]
    kind: str
    summary: str
    details: dict[str, Any] | None = field(default=None)
    """The entry's details, when they are not simply the payload."""


def _cases(now: str, reservation_id: int) -> list[Case]:
    connector = {"name": "Connector", "evse": {"id": 1, "connectorId": 1}}
    event = {
        "eventId": 1, "timestamp": now, "trigger": "Delta", "actualValue": "Faulted",
        "component": connector, "variable": {"name": "AvailabilityState"},
        "eventNotificationType": "HardWiredNotification", "techInfo": "ground fault",
    }  # fmt: skip
    schedule = {
        "id": 1, "chargingRateUnit": "W",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000.0}],
    }  # fmt: skip
    profile = {
        "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": [schedule],
    }  # fmt: skip
    ev_certificate = {
        "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install",
        "exiRequest": "AAECAwQ=",
    }  # fmt: skip
    ocsp = {
        "hashAlgorithm": "SHA256", "issuerNameHash": "ab", "issuerKeyHash": "cd",
        "serialNumber": "01", "responderURL": "http://ocsp.example.com",
    }  # fmt: skip
    monitor = {
        "component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
        "variableMonitoring": [
            {"id": 7, "transaction": True, "value": 22000, "type": "UpperThreshold", "severity": 4}
        ],
    }  # fmt: skip
    return [
        Case(
            "NotifyMonitoringReport",
            {"requestId": 5, "seqNo": 0, "generatedAt": now, "monitor": [monitor]},
            {}, "report", "monitoring report 5 received whole (1 part)",
            {"request_id": 5, "parts": 1},
        ),
        Case(
            "NotifyEvent", {"generatedAt": now, "seqNo": 0, "eventData": [event]}, {}, "event",
            "Delta Connector.AvailabilityState (EVSE 1, connector 1) = Faulted: ground fault",
            event,
        ),
        Case(
            "SecurityEventNotification",
            {"type": "FirmwareUpdated", "timestamp": now, "techInfo": "v2.1"},
            {}, "security", "security event FirmwareUpdated: v2.1",
        ),
        Case(
            "FirmwareStatusNotification", {"status": "Installed", "requestId": 3},
            {}, "firmware", "firmware: Installed",
        ),
        Case(
            "PublishFirmwareStatusNotification",
            {"status": "Published", "location": ["http://fw.example.com/1.bin"], "requestId": 4},
            {}, "firmware", "publish firmware: Published",
        ),
        Case(
            "LogStatusNotification", {"status": "Uploaded", "requestId": 2},
            {}, "diagnostics", "log upload: Uploaded",
        ),
        Case(
            "NotifyCustomerInformation",
            {"data": "card 04A1 used 3 times", "seqNo": 0, "generatedAt": now, "requestId": 8},
            {}, "customer_information", "customer information of request 8 (part 0, the last)",
        ),
        Case(
            "NotifyDisplayMessages",
            {
                "requestId": 9,
                "messageInfo": [
                    {"id": 1, "priority": "NormalCycle",
                     "message": {"format": "UTF8", "content": "Welcome"}}
                ],
            },
            {}, "display_message", "display messages of request 9: 1 message",
        ),
        Case(
            "ReportChargingProfiles",
            {
                "requestId": 10, "chargingLimitSource": "CSO", "evseId": 1,
                "chargingProfile": [profile],
            },
            {}, "smart_charging", "charging profiles of request 10 on EVSE 1 (CSO): 1 profile",
        ),
        Case(
            "NotifyChargingLimit",
            {"chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": True}, "evseId": 1},
            {}, "smart_charging", "charging limit of EMS on EVSE 1 (grid critical)",
        ),
        Case(
            "ClearedChargingLimit", {"chargingLimitSource": "EMS"},
            {}, "smart_charging", "charging limit of EMS cleared on the station",
        ),
        Case(
            "NotifyEVChargingNeeds",
            {
                "evseId": 1,
                "chargingNeeds": {
                    "requestedEnergyTransfer": "AC_three_phase",
                    "acChargingParameters": {
                        "energyAmount": 20000, "evMinCurrent": 6, "evMaxCurrent": 32,
                        "evMaxVoltage": 400,
                    },
                },
            },
            {"status": "Rejected"}, "smart_charging",
            "EV charging needs on EVSE 1 (AC_three_phase): Rejected, no schedule is computed",
        ),
        Case(
            "NotifyEVChargingSchedule",
            {"timeBase": now, "evseId": 1, "chargingSchedule": schedule},
            {"status": "Accepted"}, "smart_charging", "EV charging schedule on EVSE 1: Accepted",
        ),
        Case(
            "DataTransfer", {"vendorId": "com.example", "messageId": "hello", "data": {"a": 1}},
            {"status": "UnknownVendorId"}, "data_transfer",
            "DataTransfer from vendor 'com.example' (messageId 'hello')",
        ),
        Case(
            "SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"},
            {"status": "Rejected"}, "security",
            "SignCertificate refused: no certificate authority is configured",
            {"certificateType": None},
        ),
        Case(
            "Get15118EVCertificate", ev_certificate,
            {"status": "Failed", "exiResponse": ""}, "security",
            "Get15118EVCertificate (Install) Failed: no ISO 15118 certificate service is "
            "configured",
            {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install"},
        ),
        Case(
            "GetCertificateStatus", {"ocspRequestData": ocsp},
            {"status": "Failed"}, "security",
            "GetCertificateStatus Failed: no OCSP responder is consulted",
        ),
        Case(
            "ReservationStatusUpdate",
            {"reservationId": reservation_id, "reservationUpdateStatus": "Expired"},
            {}, "reservation", f"reservation {reservation_id} Expired: ended (EXPIRED)",
        ),
        Case(
            "ReservationStatusUpdate",
            {"reservationId": reservation_id + 1000, "reservationUpdateStatus": "Removed"},
            {}, "reservation",
            f"reservation {reservation_id + 1000} Removed: no live reservation of this station "
            "has that id: nothing to end",
        ),
    ]  # fmt: skip


async def _live_reservation(node: Node, station_id: str) -> int:
    """A reservation of ``station_id`` its station accepted (as after a ReserveNow)."""
    async with node.runtime.uow() as uow:
        reservation = Reservation(
            location_id=node.settings.default_location_id,
            station_id=station_id,
            token={"uid": "CARD-1", "type": "RFID"},
            expiry_date=utcnow() + timedelta(hours=1),
            status="ACCEPTED",
        )
        uow.session.add(reservation)
        await uow.commit()
        return reservation.id


async def test_every_other_report_is_answered_and_kept_in_the_log(open_node: Node) -> None:
    async with _booted(open_node, "R202") as station, _operator(open_node) as http:
        reservation_id = await _live_reservation(open_node, "R202")
        cases = _cases(iso(utcnow()), reservation_id)

        station_sends = known_actions(OcppVersion.V201) - set(CSMS_COMMANDS[OcppVersion.V201])
        covered = {case.action for case in cases} | CORE | {"NotifyReport"}
        assert covered == station_sends | {"DataTransfer"}  # sent both ways

        for case in cases:
            answer = await station.result(case.action, case.payload)
            assert answer == case.answer, case.action
            assert violations(OcppVersion.V201, case.action, answer, PayloadKind.RESPONSE) == []
            log = await _get(http, f"/stations/R202/events?kind={case.kind}&limit=1")
            [entry] = log["items"]
            assert entry["summary"] == case.summary, case.action
            expected = case.details if case.details is not None else case.payload
            assert entry["details"] == expected, case.action

        monitors = await _get(http, "/stations/R202/monitors", "DeviceMonitorPage")
        assert monitors["items"] == [
            {
                "id": 7,
                "component": {"name": "EVSE", "instance": None, "evse_id": 1, "connector_id": None},
                "variable": {"name": "Power", "instance": None},
                "type": "UpperThreshold",
                "value": 22000,
                "severity": 4,
                "transaction": True,
                "request_id": 5,
                "reported_at": monitors["items"][0]["reported_at"],
            }
        ]
        [event] = (await _get(http, "/stations/R202/events?kind=event"))["items"]
        assert event["occurred_at"] is not None  # the station's timestamp of the event
        [reservation] = await open_node.rows(Reservation, Reservation.id == reservation_id)
        assert reservation.status == "EXPIRED"
