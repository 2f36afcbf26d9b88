"""Unit tests of the OCPP 2.0.1 side of the station port: ``CSMS_COMMANDS`` and ``V201Actions``.

The command list is checked against the ``ocpp`` package's 2.0.1 schemas (every schema whose
message the CSMS sends, none the station sends), so it cannot drift from the specification.
Every typed action becomes a request that fits the 2.0.1 request schema (checked by the
gateway's own outgoing validation, as ``send`` would); every status of each answer's schema
enumeration maps to OCPI's result vocabulary, an unknown status and a CALLERROR to FAILED
(NotImplemented and NotSupported to NOT_SUPPORTED), a composite schedule to a
``ChargingLimit``; charging profile ids are stable per transaction id.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from cpms.station_port import (
    ActionStatus,
    CancelReservation,
    ChargingLimit,
    ClearChargingLimit,
    CommandResult,
    GetSchedule,
    LimitPeriod,
    Reserve,
    SetChargingLimit,
    StartCharging,
    StationAction,
    StopCharging,
    Unlock,
)
from ocpp_gateway import validation
from ocpp_gateway.rpc import OcppVersion
from ocpp_gateway.station_port import (
    ACTION_MAPPINGS,
    ALLOWED_WHILE_PENDING,
    CSMS_COMMANDS,
    V16Actions,
    V201Actions,
    profile_id_of,
)

TRANSACTION = "5f0c3b7e-2c1a-4e8b-9d3f-7a6b5c4d3e21"
PROFILE_ID = profile_id_of(TRANSACTION)
EXPIRY = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
LIMIT = ChargingLimit(
    "A",
    (LimitPeriod(0, Decimal("16.04")), LimitPeriod(900, Decimal("21.45"), number_phases=3)),
    start=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    duration=3600,
    min_rate=Decimal("6.05"),
)

# Messages the charging station sends (OCPP 2.0.1 Part 2); DataTransfer goes both ways.
STATION_INITIATED = frozenset(
    {
        "Authorize", "BootNotification", "ClearedChargingLimit", "FirmwareStatusNotification",
        "Get15118EVCertificate", "GetCertificateStatus", "Heartbeat", "LogStatusNotification",
        "MeterValues", "NotifyChargingLimit", "NotifyCustomerInformation",
        "NotifyDisplayMessages", "NotifyEVChargingNeeds", "NotifyEVChargingSchedule",
        "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
        "PublishFirmwareStatusNotification", "ReportChargingProfiles", "ReservationStatusUpdate",
        "SecurityEventNotification", "SignCertificate", "StatusNotification", "TransactionEvent",
    }
)  # fmt: skip


def v201(first_remote_start_id: int = 71) -> V201Actions:
    """A 2.0.1 mapping whose remoteStartIds count up from ``first_remote_start_id``."""
    return V201Actions(remote_start_ids=itertools.count(first_remote_start_id))


def _schema(name: str) -> dict[str, Any]:
    folder = resources.files("ocpp").joinpath("v201/schemas")
    return json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8-sig"))


def _answer_statuses(command: str) -> set[str]:
    """The status values the 2.0.1 response schema of ``command`` allows."""
    schema = _schema(f"{command}Response")
    reference = schema["properties"]["status"]["$ref"].rsplit("/", 1)[-1]
    return set(schema["definitions"][reference]["enum"])


# The command list


def test_the_csms_commands_are_exactly_the_schemas_the_station_does_not_send() -> None:
    folder = resources.files("ocpp").joinpath("v201/schemas")
    requests = {
        entry.name.removesuffix("Request.json")
        for entry in folder.iterdir()
        if entry.name.endswith("Request.json")
    }
    csms_to_station = (requests - STATION_INITIATED) | {"DataTransfer"}

    assert requests >= STATION_INITIATED, "a station message the schemas do not know"
    assert sorted(CSMS_COMMANDS[OcppVersion.V201]) == sorted(csms_to_station)
    assert len(set(CSMS_COMMANDS[OcppVersion.V201])) == len(CSMS_COMMANDS[OcppVersion.V201])


def test_while_pending_everything_but_remote_start_and_stop_is_allowed() -> None:
    """OCPP 2.0.1 B02.FR.05: a Pending station rejects RequestStart/StopTransaction."""
    refused = set(CSMS_COMMANDS[OcppVersion.V201]) - ALLOWED_WHILE_PENDING[OcppVersion.V201]

    assert refused == {"RequestStartTransaction", "RequestStopTransaction"}
    assert {"GetVariables", "SetVariables", "GetBaseReport", "GetReport", "TriggerMessage"} <= (
        ALLOWED_WHILE_PENDING[OcppVersion.V201]
    )


# Requests

ACTIONS: list[tuple[StationAction, str, dict[str, Any]]] = [
    (
        StartCharging(2, "04E91C5A"),
        "RequestStartTransaction",
        {"idToken": {"idToken": "04E91C5A", "type": "Central"}, "remoteStartId": 71, "evseId": 2},
    ),
    (
        StartCharging(None, "04E91C5A"),
        "RequestStartTransaction",
        {"idToken": {"idToken": "04E91C5A", "type": "Central"}, "remoteStartId": 71},
    ),
    (StopCharging(TRANSACTION), "RequestStopTransaction", {"transactionId": TRANSACTION}),
    (
        Reserve(901, 2, "04E91C5A", EXPIRY, parent_id_tag="FLEET-7"),
        "ReserveNow",
        {
            "id": 901,
            "expiryDateTime": "2025-03-01T12:30:00.000Z",
            "idToken": {"idToken": "04E91C5A", "type": "Central"},
            "evseId": 2,
            "groupIdToken": {"idToken": "FLEET-7", "type": "Central"},
        },
    ),
    (
        # EVSE 0, "any EVSE", is a reservation without evseId.
        Reserve(902, 0, "04E91C5A", EXPIRY),
        "ReserveNow",
        {
            "id": 902,
            "expiryDateTime": "2025-03-01T12:30:00.000Z",
            "idToken": {"idToken": "04E91C5A", "type": "Central"},
        },
    ),
    (CancelReservation(901), "CancelReservation", {"reservationId": 901}),
    (Unlock(2, 3), "UnlockConnector", {"evseId": 2, "connectorId": 3}),
    (
        SetChargingLimit(2, TRANSACTION, LIMIT),
        "SetChargingProfile",
        {
            "evseId": 2,
            "chargingProfile": {
                "id": PROFILE_ID,
                "transactionId": TRANSACTION,
                "stackLevel": 1,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": [
                    {
                        "id": PROFILE_ID,
                        "chargingRateUnit": "A",
                        "duration": 3600,
                        "startSchedule": "2025-03-01T12:00:00.000Z",
                        # 2.0.1 limits are any number: no rounding to tenths as in 1.6.
                        "minChargingRate": 6.05,
                        "chargingSchedulePeriod": [
                            {"startPeriod": 0, "limit": 16.04},
                            {"startPeriod": 900, "limit": 21.45, "numberPhases": 3},
                        ],
                    }
                ],
            },
        },
    ),
    (
        ClearChargingLimit(2, TRANSACTION),
        "ClearChargingProfile",
        {"chargingProfileId": PROFILE_ID},
    ),
    (GetSchedule(2, 900), "GetCompositeSchedule", {"duration": 900, "evseId": 2}),
    (
        GetSchedule(0, 900, rate_unit="W"),
        "GetCompositeSchedule",
        {"duration": 900, "evseId": 0, "chargingRateUnit": "W"},
    ),
]


@pytest.mark.parametrize(("action", "command", "arguments"), ACTIONS)
def test_each_action_becomes_a_request_that_fits_the_2_0_1_schema(
    action: StationAction, command: str, arguments: dict[str, Any]
) -> None:
    assert v201().request(action) == (command, arguments)
    validation.check_outgoing(OcppVersion.V201, command, arguments)


def test_every_action_type_is_mapped_for_2_0_1_and_registered() -> None:
    assert {type(action) for action, _, _ in ACTIONS} == V201Actions.actions
    assert isinstance(ACTION_MAPPINGS[OcppVersion.V201], V201Actions)
    assert ACTION_MAPPINGS[OcppVersion.V201].actions == V16Actions.actions


def test_a_remote_start_may_carry_a_relative_tx_profile_without_a_transaction() -> None:
    relative = ChargingLimit("W", (LimitPeriod(0, Decimal(11000)),))
    command, arguments = v201().request(StartCharging(1, "TAG", charging_profile=relative))

    validation.check_outgoing(OcppVersion.V201, command, arguments)
    profile = arguments["chargingProfile"]
    assert (profile["chargingProfilePurpose"], profile["chargingProfileKind"]) == (
        "TxProfile",
        "Relative",
    )
    assert "transactionId" not in profile
    [schedule] = profile["chargingSchedule"]
    assert schedule["id"] == profile["id"]
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 11000.0}]


def test_each_remote_start_gets_a_new_positive_31_bit_remote_start_id() -> None:
    actions = V201Actions()  # the default ids, from the clock
    ids = [actions.request(StartCharging(1, "TAG"))[1]["remoteStartId"] for _ in range(3)]

    assert len(set(ids)) == 3
    assert all(0 < value < 2**31 for value in ids)
    assert [v201(9).request(StartCharging(1, "TAG"))[1]["remoteStartId"]] == [9]


def test_the_profile_id_of_a_transaction_is_stable_and_shared_by_set_and_clear() -> None:
    other = "5f0c3b7e-2c1a-4e8b-9d3f-7a6b5c4d3e22"
    _, set_first = v201().request(SetChargingLimit(1, other, LIMIT))
    _, set_again = V201Actions().request(SetChargingLimit(2, other, LIMIT))
    _, cleared = v201().request(ClearChargingLimit(1, other))

    profile_id = set_first["chargingProfile"]["id"]
    assert profile_id == set_again["chargingProfile"]["id"] == cleared["chargingProfileId"]
    assert profile_id == profile_id_of(other)
    assert profile_id != PROFILE_ID
    # Below the remote start profiles (2_000_000_000 + EVSE), so it never replaces one.
    ids = [profile_id_of(str(number)) for number in range(2000)]
    assert all(0 < value < 2_000_000_000 for value in ids)
    assert len(set(ids)) == len(ids)


def test_a_transaction_id_is_sent_as_the_stations_string() -> None:
    _, arguments = v201().request(StopCharging("42"))

    assert arguments == {"transactionId": "42"}


# Answers

STATUS_CASES: list[tuple[str, str, ActionStatus]] = [
    ("RequestStartTransaction", "Accepted", ActionStatus.ACCEPTED),
    ("RequestStartTransaction", "Rejected", ActionStatus.REJECTED),
    ("RequestStopTransaction", "Accepted", ActionStatus.ACCEPTED),
    ("RequestStopTransaction", "Rejected", ActionStatus.REJECTED),
    ("ReserveNow", "Accepted", ActionStatus.ACCEPTED),
    ("ReserveNow", "Faulted", ActionStatus.EVSE_INOPERATIVE),
    ("ReserveNow", "Occupied", ActionStatus.EVSE_OCCUPIED),
    ("ReserveNow", "Rejected", ActionStatus.REJECTED),
    ("ReserveNow", "Unavailable", ActionStatus.EVSE_INOPERATIVE),
    ("CancelReservation", "Accepted", ActionStatus.ACCEPTED),
    ("CancelReservation", "Rejected", ActionStatus.UNKNOWN_RESERVATION),
    ("UnlockConnector", "Unlocked", ActionStatus.ACCEPTED),
    ("UnlockConnector", "UnlockFailed", ActionStatus.FAILED),
    ("UnlockConnector", "OngoingAuthorizedTransaction", ActionStatus.REJECTED),
    ("UnlockConnector", "UnknownConnector", ActionStatus.REJECTED),
    ("SetChargingProfile", "Accepted", ActionStatus.ACCEPTED),
    ("SetChargingProfile", "Rejected", ActionStatus.REJECTED),
    ("ClearChargingProfile", "Accepted", ActionStatus.ACCEPTED),
    ("ClearChargingProfile", "Unknown", ActionStatus.UNKNOWN),
    ("GetCompositeSchedule", "Accepted", ActionStatus.ACCEPTED),
    ("GetCompositeSchedule", "Rejected", ActionStatus.REJECTED),
]


def _action_for(command: str) -> StationAction:
    return next(action for action, sent, _ in ACTIONS if sent == command)


def test_the_status_table_covers_every_status_of_every_answer_schema() -> None:
    commands = {command for _, command, _ in ACTIONS}
    covered = {
        command: {status for c, status, _ in STATUS_CASES if c == command} for command in commands
    }

    assert covered == {command: _answer_statuses(command) for command in commands}


@pytest.mark.parametrize(("command", "status", "expected"), STATUS_CASES)
def test_answers_map_to_ocpi_results(command: str, status: str, expected: ActionStatus) -> None:
    outcome = v201().outcome(_action_for(command), CommandResult(command, {"status": status}))

    assert outcome.status is expected
    assert outcome.answer == {"status": status}
    assert outcome.message == ""


def test_a_status_outside_the_schema_fails_and_says_so() -> None:
    outcome = v201().outcome(Unlock(1, 1), CommandResult("UnlockConnector", {"status": "Maybe"}))

    assert outcome.status is ActionStatus.FAILED
    assert "'Maybe'" in outcome.message


def test_the_stations_status_info_and_schema_problems_become_the_message() -> None:
    answer = {
        "status": "Rejected",
        "statusInfo": {"reasonCode": "TxInProgress", "additionalInfo": "EVSE 1 is charging"},
    }
    result = CommandResult("ReserveNow", answer, problems=("status: too shy",))
    outcome = v201().outcome(_action_for("ReserveNow"), result)

    assert outcome.status is ActionStatus.REJECTED
    assert outcome.message == "station says TxInProgress: EVSE 1 is charging; status: too shy"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("NotImplemented", ActionStatus.NOT_SUPPORTED),
        ("NotSupported", ActionStatus.NOT_SUPPORTED),
        ("InternalError", ActionStatus.FAILED),
        ("SecurityError", ActionStatus.FAILED),
    ],
)
def test_a_callerror_is_not_supported_or_failed(code: str, expected: ActionStatus) -> None:
    result = CommandResult("UnlockConnector", error_code=code, error_description="no lock")
    outcome = v201().outcome(Unlock(1, 1), result)

    assert outcome.status is expected
    assert outcome.answer is None
    assert outcome.message == f"station answered {code}: no lock"


def test_a_composite_schedule_becomes_a_charging_limit() -> None:
    answer = {
        "status": "Accepted",
        "schedule": {
            "evseId": 1,
            "duration": 3600,
            "scheduleStart": "2025-03-01T10:00:00Z",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 32.0, "numberPhases": 3},
                {"startPeriod": 1800, "limit": 16.25},
            ],
        },
    }
    result = CommandResult("GetCompositeSchedule", answer)
    outcome = v201().outcome(GetSchedule(1, 3600), result)

    assert (
        validation.check_response(OcppVersion.V201, "GetCompositeSchedule", answer, lenient=False)
        == []
    )
    assert outcome.status is ActionStatus.ACCEPTED
    assert outcome.schedule == ChargingLimit(
        "A",
        (LimitPeriod(0, Decimal("32.0"), 3), LimitPeriod(1800, Decimal("16.25"))),
        start=datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
        duration=3600,
    )


def test_an_accepted_schedule_without_limits_or_a_rejected_one_has_no_schedule() -> None:
    outcomes = [
        v201().outcome(GetSchedule(1, 60), CommandResult("GetCompositeSchedule", answer))
        for answer in ({"status": "Accepted"}, {"status": "Rejected"})
    ]

    assert [(o.status, o.schedule) for o in outcomes] == [
        (ActionStatus.ACCEPTED, None),
        (ActionStatus.REJECTED, None),
    ]
