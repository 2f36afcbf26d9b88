"""Unit tests of the OCPP 1.6 mapping of the core's typed station actions (``V16Actions``).

Every action becomes a request that fits the OCPP 1.6 schema (checked by the gateway's own
outgoing validation, as ``send`` would); every documented answer status maps to OCPI's
result vocabulary, an unknown status and a CALLERROR to FAILED (NotImplemented and
NotSupported to NOT_SUPPORTED), and a composite schedule to a ``ChargingLimit``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cpms.station_port import (
    ActionStatus,
    CancelReservation,
    ChargingLimit,
    ClearChargingLimit,
    CommandResult,
    GetSchedule,
    InvalidCommand,
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
from ocpp_gateway.station_port import ACTION_MAPPINGS, V16Actions

V16 = V16Actions()
EXPIRY = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
LIMIT = ChargingLimit(
    "A",
    (LimitPeriod(0, Decimal("16.04")), LimitPeriod(900, Decimal("21.45"), number_phases=3)),
    start=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    duration=3600,
    min_rate=Decimal("6"),
)

ACTIONS: list[tuple[StationAction, str, dict[str, object]]] = [
    (
        StartCharging(1, "04E91C5A"),
        "RemoteStartTransaction",
        {"connectorId": 1, "idTag": "04E91C5A"},
    ),
    (StartCharging(None, "04E91C5A"), "RemoteStartTransaction", {"idTag": "04E91C5A"}),
    (StopCharging("4711"), "RemoteStopTransaction", {"transactionId": 4711}),
    (
        Reserve(901, 0, "04E91C5A", EXPIRY, parent_id_tag="FLEET-7"),
        "ReserveNow",
        {
            "connectorId": 0,
            "expiryDate": "2025-03-01T12:30:00.000Z",
            "idTag": "04E91C5A",
            "reservationId": 901,
            "parentIdTag": "FLEET-7",
        },
    ),
    (CancelReservation(901), "CancelReservation", {"reservationId": 901}),
    (Unlock(2), "UnlockConnector", {"connectorId": 2}),
    (
        SetChargingLimit(2, "4711", LIMIT),
        "SetChargingProfile",
        {
            "connectorId": 2,
            "csChargingProfiles": {
                "chargingProfileId": 4711,
                "transactionId": 4711,
                "stackLevel": 1,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "duration": 3600,
                    "startSchedule": "2025-03-01T12:00:00.000Z",
                    "minChargingRate": 6.0,
                    # OCPP 1.6 limits are multiples of 0.1.
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": 16.0},
                        {"startPeriod": 900, "limit": 21.4, "numberPhases": 3},
                    ],
                },
            },
        },
    ),
    (ClearChargingLimit(2, "4711"), "ClearChargingProfile", {"id": 4711}),
    (GetSchedule(2, 900), "GetCompositeSchedule", {"connectorId": 2, "duration": 900}),
    (
        GetSchedule(2, 900, rate_unit="W"),
        "GetCompositeSchedule",
        {"connectorId": 2, "duration": 900, "chargingRateUnit": "W"},
    ),
]


@pytest.mark.parametrize(("action", "command", "arguments"), ACTIONS)
def test_each_action_becomes_a_request_that_fits_the_schema(
    action: StationAction, command: str, arguments: dict[str, object]
) -> None:
    assert V16.request(action) == (command, arguments)
    validation.check_outgoing(OcppVersion.V16, command, arguments)


def test_every_action_type_is_mapped_for_1_6() -> None:
    assert {type(action) for action, _, _ in ACTIONS} == V16.actions
    assert ACTION_MAPPINGS[OcppVersion.V16].actions == V16.actions


def test_a_remote_start_may_carry_a_relative_tx_profile() -> None:
    relative = ChargingLimit("W", (LimitPeriod(0, Decimal(11000)),))
    command, arguments = V16.request(StartCharging(1, "TAG", charging_profile=relative))

    validation.check_outgoing(OcppVersion.V16, command, arguments)
    profile = arguments["chargingProfile"]
    assert profile["chargingProfileKind"] == "Relative"
    assert "transactionId" not in profile


def test_a_transaction_id_that_is_no_integer_is_an_invalid_command() -> None:
    with pytest.raises(InvalidCommand):
        V16.request(StopCharging("not-a-number"))


@pytest.mark.parametrize(
    ("command", "status", "expected"),
    [
        ("RemoteStartTransaction", "Accepted", ActionStatus.ACCEPTED),
        ("RemoteStartTransaction", "Rejected", ActionStatus.REJECTED),
        ("RemoteStopTransaction", "Rejected", ActionStatus.REJECTED),
        ("ReserveNow", "Accepted", ActionStatus.ACCEPTED),
        ("ReserveNow", "Faulted", ActionStatus.EVSE_INOPERATIVE),
        ("ReserveNow", "Occupied", ActionStatus.EVSE_OCCUPIED),
        ("ReserveNow", "Rejected", ActionStatus.REJECTED),
        ("ReserveNow", "Unavailable", ActionStatus.EVSE_INOPERATIVE),
        ("CancelReservation", "Accepted", ActionStatus.ACCEPTED),
        ("CancelReservation", "Rejected", ActionStatus.UNKNOWN_RESERVATION),
        ("UnlockConnector", "Unlocked", ActionStatus.ACCEPTED),
        ("UnlockConnector", "UnlockFailed", ActionStatus.FAILED),
        ("UnlockConnector", "NotSupported", ActionStatus.NOT_SUPPORTED),
        ("SetChargingProfile", "NotSupported", ActionStatus.NOT_SUPPORTED),
        ("ClearChargingProfile", "Unknown", ActionStatus.UNKNOWN),
        ("GetCompositeSchedule", "Rejected", ActionStatus.REJECTED),
        ("UnlockConnector", "Maybe", ActionStatus.FAILED),
    ],
)
def test_answers_map_to_ocpi_results(command: str, status: str, expected: ActionStatus) -> None:
    action = next(a for a, c, _ in ACTIONS if c == command)
    outcome = V16.outcome(action, CommandResult(command, response={"status": status}))

    assert outcome.status is expected
    assert outcome.answer == {"status": status}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("NotImplemented", ActionStatus.NOT_SUPPORTED),
        ("NotSupported", ActionStatus.NOT_SUPPORTED),
        ("InternalError", ActionStatus.FAILED),
    ],
)
def test_a_callerror_is_not_supported_or_failed(code: str, expected: ActionStatus) -> None:
    result = CommandResult("UnlockConnector", error_code=code, error_description="no lock")
    outcome = V16.outcome(Unlock(1), result)

    assert outcome.status is expected
    assert code in outcome.message


def test_a_composite_schedule_becomes_a_charging_limit() -> None:
    answer = {
        "status": "Accepted",
        "connectorId": 1,
        "scheduleStart": "2025-03-01T10:00:00Z",
        "chargingSchedule": {
            "duration": 3600,
            "chargingRateUnit": "A",
            "minChargingRate": 6.1,
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 32.0, "numberPhases": 3},
                {"startPeriod": 1800, "limit": 16.5},
            ],
        },
    }
    outcome = V16.outcome(GetSchedule(1, 3600), CommandResult("GetCompositeSchedule", answer))

    assert outcome.status is ActionStatus.ACCEPTED
    assert outcome.schedule == ChargingLimit(
        "A",
        (LimitPeriod(0, Decimal("32.0"), 3), LimitPeriod(1800, Decimal("16.5"))),
        start=datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
        duration=3600,
        min_rate=Decimal("6.1"),
    )


def test_an_accepted_schedule_without_limits_has_no_schedule() -> None:
    answer = {"status": "Accepted", "connectorId": 1}
    outcome = V16.outcome(GetSchedule(1, 60), CommandResult("GetCompositeSchedule", answer))

    assert (outcome.status, outcome.schedule) == (ActionStatus.ACCEPTED, None)
