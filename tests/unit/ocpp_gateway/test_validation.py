"""Unit tests of ocpp_gateway.validation: shipped schemas, violations, CALLERROR codes, leniency."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest

from ocpp_gateway import validation
from ocpp_gateway.rpc import ErrorCode, OcppVersion, RpcError
from ocpp_gateway.validation import (
    InvalidPayload,
    PayloadKind,
    UnknownAction,
    Violation,
    check_call,
    check_outgoing,
    check_response,
    has_schema,
    known_actions,
    preload,
    violations,
)

V16 = OcppVersion.V16
V201 = OcppVersion.V201

NOW = "2024-01-01T00:00:00Z"
BOOT_16 = {"chargePointVendor": "Acme", "chargePointModel": "Wallbox"}
STATUS_16 = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
BOOT_201 = {"reason": "PowerUp", "chargingStation": {"model": "Wallbox", "vendorName": "Acme"}}
STATUS_201 = {"timestamp": NOW, "connectorStatus": "Available", "evseId": 1, "connectorId": 1}
OCSP = {"hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b",
        "serialNumber": "c", "responderURL": "http://ocsp"}  # fmt: skip
AUTHORIZE_201 = {"idToken": {"idToken": "04A1", "type": "ISO14443"}}


def sampled(*values: dict[str, Any]) -> dict[str, Any]:
    """A 1.6 MeterValues payload with one meter value holding ``values``."""
    return {"connectorId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": list(values)}]}


def spots(found: list[Violation]) -> list[tuple[str, str]]:
    return [(violation.path, violation.rule) for violation in found]


def refusal(version: OcppVersion, action: str, payload: Any, *, lenient: bool) -> RpcError:
    with pytest.raises(RpcError) as caught:
        check_call(version, action, payload, lenient=lenient)
    return caught.value


# Valid payloads


def test_a_valid_boot_notification_passes() -> None:
    assert check_call(V16, "BootNotification", BOOT_16, lenient=False) == []
    assert check_call(V201, "BootNotification", BOOT_201, lenient=False) == []


def test_formats_are_not_checked() -> None:
    assert violations(V16, "StatusNotification", {**STATUS_16, "timestamp": "noon"}) == []


def test_multiple_of_is_checked_on_the_decimal_text_not_the_binary_float() -> None:
    periods = [{"startPeriod": 0, "limit": 21.4}, {"startPeriod": 60, "limit": 0.3}]
    schedule = {"chargingRateUnit": "A", "chargingSchedulePeriod": periods}
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfileKind": "Absolute",
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingSchedule": schedule,
    }
    payload = {"connectorId": 1, "csChargingProfiles": profile}
    check_outgoing(V16, "SetChargingProfile", payload)
    periods.append({"startPeriod": 120, "limit": 21.45})
    (found,) = violations(V16, "SetChargingProfile", payload)
    assert found.path == "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[2].limit"
    assert found.rule == "multipleOf"


# Error codes of an invalid CALL


@pytest.mark.parametrize(
    ("version", "action", "payload", "code", "path", "rule"),
    [
        (V16, "BootNotification", {"chargePointVendor": "Acme"},
         ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION, "chargePointModel", "required"),
        (V201, "BootNotification", {**BOOT_201, "chargingStation": {"vendorName": "Acme"}},
         ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION, "chargingStation.model", "required"),
        (V16, "StatusNotification", {**STATUS_16, "connectorId": "1"},
         ErrorCode.TYPE_CONSTRAINT_VIOLATION, "connectorId", "type"),
        (V201, "StatusNotification", {**STATUS_201, "evseId": "1"},
         ErrorCode.TYPE_CONSTRAINT_VIOLATION, "evseId", "type"),
        (V16, "StatusNotification", {**STATUS_16, "status": "Broken"},
         ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "status", "enum"),
        (V201, "StatusNotification", {**STATUS_201, "connectorStatus": "Broken"},
         ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "connectorStatus", "enum"),
        (V16, "BootNotification", {**BOOT_16, "chargePointVendor": "x" * 21},
         ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "chargePointVendor", "maxLength"),
        (V201, "BootNotification", {**BOOT_201, "chargingStation": {"model": "x" * 21,
                                                                    "vendorName": "Acme"}},
         ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "chargingStation.model", "maxLength"),
        (V16, "Heartbeat", {"uptime": 5},
         ErrorCode.FORMATION_VIOLATION, "uptime", "additionalProperties"),
        (V201, "Heartbeat", {"uptime": 5},
         ErrorCode.FORMAT_VIOLATION, "uptime", "additionalProperties"),
        (V16, "MeterValues", {"connectorId": 1, "meterValue": []},
         ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION, "meterValue", "minItems"),
        (V201, "Authorize", {**AUTHORIZE_201, "iso15118CertificateHashData": [OCSP] * 5},
         ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION, "iso15118CertificateHashData", "maxItems"),
        (V201, "NotifyEVChargingNeeds",
         {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC",
                                         "dcChargingParameters": {"evMaxCurrent": 1,
                                                                  "evMaxVoltage": 1,
                                                                  "stateOfCharge": 101}}},
         ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
         "chargingNeeds.dcChargingParameters.stateOfCharge", "maximum"),
    ],
)  # fmt: skip
def test_an_invalid_call_is_answered_with_the_code_of_its_broken_rule(
    version: OcppVersion, action: str, payload: Any, code: ErrorCode, path: str, rule: str
) -> None:
    error = refusal(version, action, payload, lenient=False)
    assert error.error_code == code
    assert error.details == {"path": path, "rule": rule}
    assert error.description.startswith(f"{path}: ")


def test_the_most_serious_violation_chooses_the_code() -> None:
    payload = {"connectorId": "1", "errorCode": "Error", "status": "Broken", "extra": 1}
    error = refusal(V16, "StatusNotification", payload, lenient=False)
    assert error.error_code == ErrorCode.TYPE_CONSTRAINT_VIOLATION
    found = violations(V16, "StatusNotification", payload)
    assert [v.rule for v in found] == ["type", "additionalProperties", "enum", "enum"]


def test_paths_name_array_items_and_missing_properties() -> None:
    payload = sampled({"value": "1"}, {"value": "2", "unit": "kwh"})
    del payload["meterValue"][0]["timestamp"]
    found = violations(V16, "MeterValues", payload)
    assert spots(found) == [
        ("meterValue[0].timestamp", "required"),
        ("meterValue[0].sampledValue[1].unit", "enum"),
    ]
    assert found[1].message.startswith("'kwh' is not one of ['Wh', 'kWh'")
    values = [{"value": "1", "unit": "kwh" if i in (2, 10) else "Wh"} for i in range(11)]
    found = violations(V16, "MeterValues", sampled(*values))
    expected = [f"meterValue[0].sampledValue[{i}].unit" for i in (2, 10)]
    assert [v.path for v in found] == expected  # indices sort as numbers, [2] before [10]
    assert violations(V16, "Authorize", {}) == [
        Violation("idTag", "required", "'idTag' is a required property")
    ]
    assert violations(V16, "Authorize", []) == [Violation("", "type", "[] is not of type 'object'")]


def test_long_messages_and_descriptions_are_cut() -> None:
    payload = {**STATUS_16, "info": "x" * 10_000}
    error = refusal(V16, "StatusNotification", payload, lenient=False)
    (found,) = violations(V16, "StatusNotification", payload)
    assert len(found.message) <= 200
    assert found.message.endswith("...")
    assert len(error.description) <= 255


def test_an_unknown_action_is_not_implemented() -> None:
    for version, action in [(V16, "Teleport"), (V16, "TransactionEvent"),
                            (V201, "StartTransaction"), (V201, "BootNotificationRequest"),
                            (V16, "BootNotificationResponse")]:  # fmt: skip
        error = refusal(version, action, {}, lenient=True)
        assert error.error_code == ErrorCode.NOT_IMPLEMENTED
        assert error.description == f"unknown action {action!r}"
    with pytest.raises(UnknownAction):
        violations(V16, "Teleport", {})
    assert issubclass(UnknownAction, ValueError)


# Leniency (FIELD-NOTES 12)


def test_lenient_mode_tolerates_long_serials_and_unknown_enum_values_and_reports_them() -> None:
    boot = {**BOOT_16, "chargePointSerialNumber": "SN-" + "9" * 30}
    status = {**STATUS_16, "errorCode": "Error"}
    meter = sampled({"value": "1", "unit": "kwh"})
    with pytest.raises(RpcError):
        check_call(V16, "BootNotification", boot, lenient=False)
    tolerated = check_call(V16, "BootNotification", boot, lenient=True)
    assert spots(tolerated) == [("chargePointSerialNumber", "maxLength")]
    tolerated = check_call(V16, "StatusNotification", status, lenient=True)
    assert spots(tolerated) == [("errorCode", "enum")]
    tolerated = check_call(V16, "MeterValues", meter, lenient=True)
    assert spots(tolerated) == [("meterValue[0].sampledValue[0].unit", "enum")]


def test_lenient_mode_still_refuses_missing_fields_and_wrong_types() -> None:
    missing = {"errorCode": "Error", "status": "Available"}
    error = refusal(V16, "StatusNotification", missing, lenient=True)
    assert error.error_code == ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION
    assert error.details == {"path": "connectorId", "rule": "required"}
    wrong_type = {**STATUS_16, "errorCode": "Error", "connectorId": "1"}
    error = refusal(V16, "StatusNotification", wrong_type, lenient=True)
    assert error.error_code == ErrorCode.TYPE_CONSTRAINT_VIOLATION
    extra = {**BOOT_201, "chargingStation": {**BOOT_201["chargingStation"], "colour": "red"}}
    error = refusal(V201, "BootNotification", extra, lenient=True)
    assert error.error_code == ErrorCode.FORMAT_VIOLATION


# Outgoing CALLs and incoming responses


def test_check_outgoing_refuses_a_bad_reset_and_accepts_a_good_one() -> None:
    check_outgoing(V16, "Reset", {"type": "Soft"})
    check_outgoing(V201, "Reset", {"type": "Immediate"})
    with pytest.raises(InvalidPayload) as caught:
        check_outgoing(V16, "Reset", {"type": "Reboot"})
    assert spots(caught.value.violations) == [("type", "enum")]
    assert "type: 'Reboot' is not one of ['Hard', 'Soft']" in str(caught.value)
    with pytest.raises(UnknownAction):
        check_outgoing(V16, "Reboot", {})


def test_a_draft_06_schema_of_the_16_security_extension_resolves_its_references() -> None:
    with pytest.raises(InvalidPayload) as caught:
        check_outgoing(V16, "ExtendedTriggerMessage", {"requestedMessage": "Nope"})
    assert caught.value.violations[0].path == "requestedMessage"


def test_check_response_returns_the_violations_of_a_bad_response() -> None:
    good = {"status": "Accepted", "currentTime": NOW, "interval": 300}
    assert check_response(V16, "BootNotification", good, lenient=False) == []
    bad = {"status": "Maybe", "interval": "300"}
    strict = check_response(V16, "BootNotification", bad, lenient=False)
    assert spots(strict) == [("interval", "type"), ("currentTime", "required"), ("status", "enum")]
    lenient = check_response(V16, "BootNotification", bad, lenient=True)
    assert [v.rule for v in lenient] == ["type", "required"]
    with pytest.raises(UnknownAction):
        check_response(V16, "Heartbeats", {}, lenient=False)


# Schema catalogue and compiled validators


def test_preload_compiles_every_shipped_schema() -> None:
    files = [
        entry
        for folder in ("v16/schemas", "v201/schemas")
        for entry in resources.files("ocpp").joinpath(folder).iterdir()
        if entry.name.endswith(".json")
    ]
    assert preload() == len(files) > 0
    assert validation._validator.cache_info().currsize >= len(files)


def test_known_actions_are_request_schemas_per_version() -> None:
    assert {"BootNotification", "StartTransaction", "SignCertificate"} <= known_actions(V16)
    assert {"BootNotification", "TransactionEvent"} <= known_actions(V201)
    assert "StartTransaction" not in known_actions(V201)
    assert not any(action.endswith(("Request", "Response")) for action in known_actions(V201))
    assert has_schema(V201, "Reset", PayloadKind.RESPONSE)
    assert not has_schema(V16, "BootNotificationResponse")


def test_a_validator_is_compiled_once_and_reused() -> None:
    first = validation._validator(V16, "Heartbeat", PayloadKind.REQUEST)
    assert validation._validator(V16, "Heartbeat", PayloadKind.REQUEST) is first
    assert validation._validator(V16, "Heartbeat", PayloadKind.RESPONSE) is not first


def test_every_name_in_all_is_defined() -> None:
    assert [name for name in validation.__all__ if not hasattr(validation, name)] == []
