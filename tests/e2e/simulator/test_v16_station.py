"""End to end: a simulated OCPP 1.6 station (``simulator.v16``) against a real server.

A real node (``cpms.runtime.Runtime``: OCPP websocket server, operator HTTP API, database; on
SQLite and, with ``CPMS_TEST_POSTGRES_URL``, PostgreSQL) registers unknown stations on connect
and accepts unknown tokens. A ``Station16`` built by ``simulator.fleet.build_station`` connects
to it over a real websocket. Every command the server offers a 1.6 station is sent through the
operator API (``POST /api/stations/{id}/commands/{command}``, as an operator would), and each
answer is checked together with its effect on the station and on what the server stored:
transactions, EVSE statuses, meter samples, the station log, boots.

The server validates every 1.6 message strictly, so a simulator message breaking its schema
comes back as a CALLERROR counted in ``station.figures.errors``; each test ends by checking
there was none. Answers the station gives are checked against the schemas by the server too
(``problems`` of the command result must be empty).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from e2e.ocpp16.node import HEARTBEAT_INTERVAL, Node, iso
from e2e.ocpp16.test_commands import COMMANDS as RAW_COMMANDS

from cpms.admission import AdmissionPolicy
from cpms.config import Settings
from cpms.model import MeterSample, Session
from cpms.runtime import Runtime
from ocpp_gateway.rpc import OcppVersion
from ocpp_gateway.station_port import CSMS_COMMANDS
from simulator.fleet import build_station
from simulator.physics import EV_MODELS, Vehicle
from simulator.station import StationOptions, TransactionRecord
from simulator.templates import shipped_templates
from simulator.v16 import Station16

from support import ADMIN_TOKEN, TIME_UNIT

T = TypeVar("T")

WAIT = 10.0 * TIME_UNIT
"""Seconds any one effect may take to show (a reboot takes about two)."""
METER_INTERVAL = 0.3
"""Seconds between meter samples of the simulated stations, so tests see several quickly."""
SUV = next(model for model in EV_MODELS if model.name == "suv")
"""Takes 22 kW on AC and 250 kW on DC: the station's connector is the only cap."""

SIMULATED = {
    "ChangeAvailability", "ChangeConfiguration", "ClearCache", "DataTransfer", "GetConfiguration",
    "RemoteStartTransaction", "RemoteStopTransaction", "Reset", "UnlockConnector",
    "GetDiagnostics", "UpdateFirmware", "GetLocalListVersion", "SendLocalList",
    "CancelReservation", "ReserveNow", "ClearChargingProfile", "GetCompositeSchedule",
    "SetChargingProfile", "TriggerMessage",
}  # fmt: skip
"""The 1.6 commands the simulator carries out; each has a test below."""
SECURITY_EXTENSION = {
    "CertificateSigned", "DeleteCertificate", "ExtendedTriggerMessage",
    "GetInstalledCertificateIds", "GetLog", "InstallCertificate", "SignedUpdateFirmware",
}  # fmt: skip
"""Not simulated: the station answers CALLERROR NotImplemented, as a station without it does."""


# Fixtures and helpers


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Node]:
    """A node that registers unknown stations, accepts unknown tokens and a known interval."""
    runtime = Runtime(
        settings.replace(
            station_admission=AdmissionPolicy.OPEN,
            accept_unknown_tokens=True,
            heartbeat_interval=HEARTBEAT_INTERVAL,
        ),
        node="simulator-e2e",
    )
    await runtime.start()
    try:
        yield Node(runtime)
    finally:
        await runtime.stop()


Simulate = Callable[..., Awaitable[Station16]]


@pytest.fixture
async def simulate(node: Node) -> AsyncIterator[Simulate]:
    """Start simulated 1.6 stations on ``node``; each is booted and its EVSEs reported.

    All are stopped (their transactions ended, their queues drained) before the node stops.
    """
    started: list[Station16] = []

    async def start(station_id: str, template: str = "ac-duo-22") -> Station16:
        model = dataclasses.replace(shipped_templates()[template], meter_interval=METER_INTERVAL)
        options = StationOptions(url=f"ws://127.0.0.1:{node.port}/ocpp", call_timeout=WAIT)
        station = build_station(station_id, "1.6", model, options)
        assert isinstance(station, Station16)
        started.append(station)
        station.start()
        async with asyncio.timeout(WAIT):
            await station.booted.wait()
        await until_evses(node, station_id, ["AVAILABLE"] * len(station.outlets))
        return station

    try:
        yield start
    finally:
        for station in started:
            await station.stop(grace=WAIT)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    holds: Callable[[T], bool],
    what: str,
    *,
    within: float = WAIT,
) -> T:
    """Poll ``probe()`` until ``holds`` its value, for at most ``within`` s; return the value."""
    value: T | None = None
    try:
        async with asyncio.timeout(within):
            while True:
                value = await probe()
                if holds(value):
                    return value
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"not within {within} s: {what} (last seen: {value!r})")


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait, bounded, until ``condition()`` holds on the station's side."""

    async def probe() -> bool:
        return condition()

    await eventually(probe, bool, what)


async def until_evses(node: Node, station_id: str, statuses: list[str]) -> None:
    """Wait until the server holds these OCPI statuses for the station's EVSEs, in order."""

    async def probe() -> list[str]:
        return [evse.status for evse in await node.evses(station_id)]

    await eventually(probe, lambda seen: seen == statuses, f"{station_id} EVSEs {statuses}")


async def ended_session(node: Node, record: TransactionRecord) -> Session:
    """The server's session of a finished transaction, once the server has closed it."""
    await until(lambda: record.server_id is not None, "the StartTransaction answer")

    async def probe() -> list[Session]:
        return await node.rows(Session, Session.transaction_id == str(record.server_id))

    [session] = await eventually(
        probe,
        lambda found: len(found) == 1 and found[0].status == "COMPLETED",
        f"session {record.server_id} COMPLETED",
    )
    return session


async def send(
    node: Node, station_id: str, command: str, arguments: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Send ``command`` through the operator API; return the HTTP status and answer body."""
    url = f"http://127.0.0.1:{node.runtime.http_port}/api/stations/{station_id}/commands/{command}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url,
            json=arguments or {},
            params={"timeout": str(WAIT)},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response,
    ):
        body: dict[str, Any] = await response.json()
        body["http_status"] = response.status
    return body


async def answer(
    node: Node, station_id: str, command: str, arguments: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The station's answer to ``command``, which must be a CALLRESULT fitting its schema."""
    body = await send(node, station_id, command, arguments)
    assert body["http_status"] == 200, body
    assert body["status"] == "answered", body
    assert body["problems"] == [], body
    response: dict[str, Any] = body["response"]
    return response


async def remote_start(node: Node, station: Station16, connector: int | None, tag: str) -> int:
    """Start a transaction remotely; return the server's transaction id once it is known."""
    arguments: dict[str, Any] = {"idTag": tag}
    if connector is not None:
        arguments["connectorId"] = connector
    assert await answer(node, station.id, "RemoteStartTransaction", arguments) == {
        "status": "Accepted"
    }

    def started() -> int | None:
        for outlet in station.outlets.values():
            tx = outlet.transaction
            if tx is not None and tx.id_tag == tag and tx.server_id is not None:
                return tx.server_id
        return None

    await until(lambda: started() is not None, f"a transaction for {tag} with its server id")
    server_id = started()
    assert server_id is not None
    return server_id


def power_samples_after(samples: list[MeterSample], moment: datetime) -> list[Decimal]:
    """Power the station reported (W) in samples it took after ``moment``."""
    return [
        s.value_si
        for s in samples
        if s.measurand == "Power.Active.Import" and _aware(s.sampled_at) > moment
    ]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def power_after(node: Node, station: Station16, moment: datetime, count: int) -> list[float]:
    """Wait for ``count`` power samples the server stored, taken after ``moment``; return them."""

    async def probe() -> list[Decimal]:
        return power_samples_after(await node.samples(MeterSample.station_id == station.id), moment)

    found = await eventually(probe, lambda p: len(p) >= count, f"{count} power samples")
    return [float(p) for p in found]


def clean(station: Station16) -> None:
    """No CALLERROR, timeout or simulator exception happened on the station's side."""
    assert not station.figures.errors, dict(station.figures.errors)


def later(seconds: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


# The table


def test_every_command_the_server_offers_is_tested() -> None:
    assert set(CSMS_COMMANDS[OcppVersion.V16]) == SIMULATED | SECURITY_EXTENSION
    assert not SIMULATED & SECURITY_EXTENSION


# Boot and status


async def test_the_station_boots_and_reports_its_connectors(node: Node, simulate: Simulate) -> None:
    station = await simulate("SIM16-BOOT", "dc-fast-150")

    stored = await node.station("SIM16-BOOT")
    assert stored.ocpp_version == "ocpp1.6"
    assert stored.boot_status == "Accepted"
    assert (stored.vendor, stored.model) == (station.template.vendor, station.template.model)
    assert stored.serial_number == station.serial
    assert stored.firmware_version == station.firmware
    assert station.heartbeat_interval == HEARTBEAT_INTERVAL
    # One EVSE per 1.6 connector: two on the first EVSE of the template, one on the second.
    assert [e.ocpp_evse_id for e in await node.evses(station.id)] == [1, 2, 3]
    assert station.figures.sent["BootNotification"] == 1
    assert station.figures.sent["StatusNotification"] == 4  # connector 0 and each connector
    clean(station)


# Core: remote start and stop, unlock, reset, availability, configuration


async def test_remote_start_makes_a_transaction_and_remote_stop_ends_it(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-REMOTE")
    station.plug_in(1, Vehicle(SUV, 30))

    server_id = await remote_start(node, station, 1, "REMOTE01")
    session = await node.session(server_id)
    assert session.status == "ACTIVE"
    assert session.station_id == station.id
    await until_evses(node, station.id, ["CHARGING", "AVAILABLE"])
    samples = station.figures.sent["MeterValues"]
    await until(lambda: station.figures.sent["MeterValues"] >= samples + 2, "two meter samples")

    assert await answer(
        node, station.id, "RemoteStopTransaction", {"transactionId": server_id}
    ) == {"status": "Accepted"}

    await until(lambda: bool(station.history), "the transaction to end")
    [record] = station.history
    assert record.server_id == server_id
    assert record.stop_reason == "Remote"
    assert record.energy_wh > 0
    session = await ended_session(node, record)
    assert session.stop_reason == "Remote"
    assert abs(float(session.energy_wh) - record.energy_wh) <= 1
    assert station.outlet(1).status == "Finishing"  # the driver has not unplugged yet
    clean(station)


async def test_remote_stop_of_an_unknown_transaction_is_rejected(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-REMOTE-UNKNOWN")
    assert await answer(node, station.id, "RemoteStopTransaction", {"transactionId": 999_999}) == {
        "status": "Rejected"
    }
    assert not station.history
    clean(station)


async def test_remote_start_takes_a_free_connector_and_refuses_a_busy_one(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-REMOTE-FREE")
    first = await remote_start(node, station, None, "REMOTE02")
    assert station.outlet(1).transaction is not None
    assert station.outlet(1).transaction.server_id == first  # type: ignore[union-attr]
    assert await answer(
        node, station.id, "RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE03"}
    ) == {"status": "Rejected"}
    assert await answer(
        node, station.id, "RemoteStartTransaction", {"connectorId": 7, "idTag": "REMOTE03"}
    ) == {"status": "Rejected"}
    await remote_start(node, station, None, "REMOTE04")
    assert station.outlet(2).transaction is not None
    assert len(await node.sessions(station.id)) == 2
    clean(station)


async def test_unlock_ends_the_transaction_and_frees_the_connector(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-UNLOCK")
    await remote_start(node, station, 1, "UNLOCK01")
    await until_evses(node, station.id, ["CHARGING", "AVAILABLE"])

    assert await answer(node, station.id, "UnlockConnector", {"connectorId": 1}) == {
        "status": "Unlocked"
    }

    [record] = station.history
    assert record.stop_reason == "UnlockCommand"
    outlet = station.outlet(1)
    assert (outlet.transaction, outlet.vehicle, outlet.status) == (None, None, "Available")
    await until_evses(node, station.id, ["AVAILABLE", "AVAILABLE"])
    session = await ended_session(node, record)
    assert session.stop_reason == "UnlockCommand"
    assert await answer(node, station.id, "UnlockConnector", {"connectorId": 5}) == {
        "status": "NotSupported"
    }
    clean(station)


@pytest.mark.parametrize(("kind", "reason"), [("Soft", "SoftReset"), ("Hard", "HardReset")])
async def test_reset_ends_transactions_and_boots_again(
    node: Node, simulate: Simulate, kind: str, reason: str
) -> None:
    station = await simulate(f"SIM16-RESET-{kind}")
    await remote_start(node, station, 2, "RESET001")

    assert await answer(node, station.id, "Reset", {"type": kind}) == {"status": "Accepted"}

    await until(
        lambda: station.figures.sent["BootNotification"] == 2 and station.booted.is_set(),
        "a second boot",
    )
    assert station.figures.connects == 2
    [record] = station.history
    assert record.stop_reason == reason
    session = await ended_session(node, record)
    assert session.stop_reason == reason
    assert abs(float(session.energy_wh) - record.energy_wh) <= 1
    assert all(o.transaction is None for o in station.outlets.values())
    stored = await node.station(station.id)
    assert stored.online
    clean(station)


async def test_change_availability_of_one_connector_reaches_the_server(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-AVAIL")
    inoperative = {"connectorId": 2, "type": "Inoperative"}

    assert await answer(node, station.id, "ChangeAvailability", inoperative) == {
        "status": "Accepted"
    }
    assert station.outlet(2).status == "Unavailable"
    await until_evses(node, station.id, ["AVAILABLE", "INOPERATIVE"])
    # An unavailable connector takes no transaction and no reservation.
    assert await answer(
        node, station.id, "RemoteStartTransaction", {"connectorId": 2, "idTag": "AVAIL001"}
    ) == {"status": "Rejected"}
    reserve = {"connectorId": 2, "expiryDate": later(600), "idTag": "AVAIL001", "reservationId": 3}
    assert await answer(node, station.id, "ReserveNow", reserve) == {"status": "Unavailable"}

    operative = {"connectorId": 2, "type": "Operative"}
    assert await answer(node, station.id, "ChangeAvailability", operative) == {"status": "Accepted"}
    await until_evses(node, station.id, ["AVAILABLE", "AVAILABLE"])
    assert await answer(
        node, station.id, "ChangeAvailability", {"connectorId": 9, "type": "Inoperative"}
    ) == {"status": "Rejected"}
    clean(station)


async def test_change_availability_of_the_whole_station(node: Node, simulate: Simulate) -> None:
    station = await simulate("SIM16-AVAIL-ALL")
    statuses = station.figures.sent["StatusNotification"]

    assert await answer(
        node, station.id, "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}
    ) == {"status": "Accepted"}

    await until_evses(node, station.id, ["INOPERATIVE", "INOPERATIVE"])
    # Connector 0 (the station itself) is reported too.
    await until(lambda: station.figures.sent["StatusNotification"] == statuses + 3, "three reports")
    assert await answer(
        node, station.id, "ChangeAvailability", {"connectorId": 0, "type": "Operative"}
    ) == {"status": "Accepted"}
    await until_evses(node, station.id, ["AVAILABLE", "AVAILABLE"])
    clean(station)


async def test_change_availability_during_a_transaction_is_scheduled(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-AVAIL-TX")
    await remote_start(node, station, 1, "AVAIL002")

    assert await answer(
        node, station.id, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}
    ) == {"status": "Scheduled"}
    assert station.outlet(1).transaction is not None
    await until_evses(node, station.id, ["CHARGING", "AVAILABLE"])

    # Once the transaction is over and the driver gone, the connector is unavailable.
    assert await answer(node, station.id, "UnlockConnector", {"connectorId": 1}) == {
        "status": "Unlocked"
    }
    assert station.outlet(1).status == "Unavailable"
    await until_evses(node, station.id, ["INOPERATIVE", "AVAILABLE"])
    clean(station)


async def test_configuration_is_changed_and_read_back(node: Node, simulate: Simulate) -> None:
    station = await simulate("SIM16-CONFIG")

    change = {"key": "MeterValueSampleInterval", "value": "1"}
    assert await answer(node, station.id, "ChangeConfiguration", change) == {"status": "Accepted"}
    assert station.meter_interval == 1.0
    read = await answer(
        node, station.id, "GetConfiguration", {"key": ["MeterValueSampleInterval", "NoSuchKey"]}
    )
    assert read == {
        "configurationKey": [{"key": "MeterValueSampleInterval", "readonly": False, "value": "1"}],
        "unknownKey": ["NoSuchKey"],
    }
    everything = await answer(node, station.id, "GetConfiguration", {})
    keys = {entry["key"]: entry for entry in everything["configurationKey"]}
    assert keys["NumberOfConnectors"] == {
        "key": "NumberOfConnectors",
        "readonly": True,
        "value": "2",
    }
    assert "unknownKey" not in everything

    refused = [
        ({"key": "NumberOfConnectors", "value": "4"}, "Rejected"),  # read-only
        ({"key": "NoSuchKey", "value": "1"}, "NotSupported"),
        ({"key": "HeartbeatInterval", "value": "often"}, "Rejected"),
        ({"key": "MeterValueSampleInterval", "value": "0"}, "Rejected"),
    ]
    for arguments, status in refused:
        assert await answer(node, station.id, "ChangeConfiguration", arguments) == {
            "status": status
        }, arguments
    assert station.meter_interval == 1.0
    clean(station)


async def test_heartbeat_interval_key_is_the_interval_the_server_gave(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-CONFIG-HB")
    assert station.heartbeat_interval == HEARTBEAT_INTERVAL
    read = await answer(node, station.id, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert read["configurationKey"] == [
        {"key": "HeartbeatInterval", "readonly": False, "value": str(HEARTBEAT_INTERVAL)}
    ]


async def test_clear_cache_and_data_transfer(node: Node, simulate: Simulate) -> None:
    station = await simulate("SIM16-MISC")
    assert await answer(node, station.id, "ClearCache") == {"status": "Accepted"}
    transfer = {"vendorId": "com.example", "messageId": "Hello", "data": "x"}
    assert await answer(node, station.id, "DataTransfer", transfer) == {"status": "UnknownVendorId"}
    clean(station)


# Remote trigger


async def test_trigger_message_sends_what_was_asked(node: Node, simulate: Simulate) -> None:
    station = await simulate("SIM16-TRIGGER")
    sent = station.figures.sent

    async def trigger(requested: str, connector: int | None = None) -> None:
        arguments: dict[str, Any] = {"requestedMessage": requested}
        if connector is not None:
            arguments["connectorId"] = connector
        assert await answer(node, station.id, "TriggerMessage", arguments) == {"status": "Accepted"}

    await trigger("BootNotification")
    await until(lambda: sent["BootNotification"] == 2, "a triggered BootNotification")
    await trigger("Heartbeat")
    await until(lambda: sent["Heartbeat"] == 1, "a triggered Heartbeat")
    statuses = sent["StatusNotification"]
    await trigger("StatusNotification", 2)
    await until(lambda: sent["StatusNotification"] == statuses + 1, "one StatusNotification")
    await trigger("StatusNotification")
    await until(lambda: sent["StatusNotification"] == statuses + 4, "one per connector and 0")

    await trigger("MeterValues", 1)

    async def triggered() -> list[MeterSample]:
        return await node.samples(
            MeterSample.station_id == station.id, MeterSample.context == "Trigger"
        )

    found = await eventually(
        triggered,
        lambda found: any(s.measurand == "Energy.Active.Import.Register" for s in found),
        "a triggered register reading",
    )
    [register] = [s for s in found if s.measurand == "Energy.Active.Import.Register"]
    assert register.ocpp_evse_id == 1
    assert float(register.value_si) == pytest.approx(station.outlet(1).register_wh, abs=0.1)

    for requested, kind in (
        ("FirmwareStatusNotification", "firmware"),
        ("DiagnosticsStatusNotification", "diagnostics"),
    ):
        await trigger(requested)

        async def logged(kind: str = kind) -> list[Any]:
            return await node.events(station.id, kind)

        [event] = await eventually(logged, lambda found: len(found) == 1, f"a {kind} report")
        assert event.details == {"status": "Idle"}

    rejected = {"requestedMessage": "StatusNotification", "connectorId": 5}
    assert await answer(node, station.id, "TriggerMessage", rejected) == {"status": "Rejected"}
    clean(station)


# Smart charging


async def test_tx_profile_limits_the_power_until_it_is_cleared(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-PROFILE")
    station.plug_in(1, Vehicle(SUV, 20))
    server_id = await remote_start(node, station, 1, "PROFILE1")
    began = datetime.now(UTC)
    unlimited = await power_after(node, station, began, 2)
    assert unlimited[-1] == pytest.approx(22_000, abs=1)

    profile = {
        "chargingProfileId": 31,
        "transactionId": server_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0, "numberPhases": 3}],
        },
    }
    assert await answer(
        node, station.id, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile}
    ) == {"status": "Accepted"}
    limited_from = datetime.now(UTC)
    limit = 10 * 230 * 3

    limited = await power_after(node, station, limited_from, 2)
    assert all(0 < power <= limit + 0.1 for power in limited), limited
    assert station.outlet(1).flow is not None
    assert station.outlet(1).flow.power_w <= limit  # type: ignore[union-attr]
    schedule = await answer(
        node,
        station.id,
        "GetCompositeSchedule",
        {"connectorId": 1, "duration": 600, "chargingRateUnit": "W"},
    )
    assert schedule["status"] == "Accepted"
    assert schedule["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": limit}
    ]
    in_amps = await answer(
        node,
        station.id,
        "GetCompositeSchedule",
        {"connectorId": 1, "duration": 600, "chargingRateUnit": "A"},
    )
    assert in_amps["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 10.0}
    ]

    assert await answer(node, station.id, "ClearChargingProfile", {"id": 31}) == {
        "status": "Accepted"
    }
    cleared_from = datetime.now(UTC)
    again = await power_after(node, station, cleared_from, 2)
    assert again[-1] == pytest.approx(22_000, abs=1)
    assert await answer(node, station.id, "ClearChargingProfile", {"id": 31}) == {
        "status": "Unknown"
    }
    clean(station)


async def test_remote_start_with_a_profile_is_limited_from_the_start(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-PROFILE-START", "dc-fast-150")
    station.plug_in(1, Vehicle(SUV, 20))
    began = datetime.now(UTC)
    profile = {
        "chargingProfileId": 32,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 40_000.0}],
        },
    }
    assert await answer(
        node,
        station.id,
        "RemoteStartTransaction",
        {"connectorId": 1, "idTag": "PROFILE2", "chargingProfile": profile},
    ) == {"status": "Accepted"}

    powers = await power_after(node, station, began, 3)
    assert all(power <= 40_000 for power in powers), powers
    assert powers[-1] == pytest.approx(40_000, abs=1)
    clean(station)


async def test_station_maximum_caps_and_tx_profile_needs_a_transaction(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-PROFILE-MAX")
    tx_profile = {
        "chargingProfileId": 33,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5000.0}],
        },
    }
    assert await answer(
        node,
        station.id,
        "SetChargingProfile",
        {"connectorId": 1, "csChargingProfiles": tx_profile},
    ) == {"status": "Rejected"}

    cap = {
        "chargingProfileId": 34,
        "stackLevel": 0,
        "chargingProfilePurpose": "ChargePointMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": iso(datetime.now(UTC) - timedelta(minutes=1)),
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 3000.0}],
        },
    }
    # The station-wide maximum is set on connector 0 only.
    assert await answer(
        node, station.id, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": cap}
    ) == {"status": "Rejected"}
    assert await answer(
        node, station.id, "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": cap}
    ) == {"status": "Accepted"}
    began = datetime.now(UTC)
    station.plug_in(2, Vehicle(SUV, 20))
    await remote_start(node, station, 2, "PROFILE3")
    powers = await power_after(node, station, began, 3)
    assert all(power <= 3000 for power in powers), powers
    assert powers[-1] == pytest.approx(3000, abs=1)

    clear = {"connectorId": 0, "chargingProfilePurpose": "ChargePointMaxProfile"}
    assert await answer(node, station.id, "ClearChargingProfile", clear) == {"status": "Accepted"}
    cleared_from = datetime.now(UTC)
    again = await power_after(node, station, cleared_from, 2)
    assert again[-1] == pytest.approx(22_000, abs=1)
    clean(station)


# Reservation


async def test_reservation_reserves_and_cancelling_frees(node: Node, simulate: Simulate) -> None:
    station = await simulate("SIM16-RESERVE")
    reserve = {"connectorId": 2, "expiryDate": later(600), "idTag": "RESV0001", "reservationId": 77}

    assert await answer(node, station.id, "ReserveNow", reserve) == {"status": "Accepted"}
    assert station.outlet(2).status == "Reserved"
    await until_evses(node, station.id, ["AVAILABLE", "RESERVED"])
    other = {**reserve, "reservationId": 78, "idTag": "RESV0002"}
    assert await answer(node, station.id, "ReserveNow", other) == {"status": "Occupied"}
    # Someone else may not start on the reserved connector.
    assert await answer(
        node, station.id, "RemoteStartTransaction", {"connectorId": 2, "idTag": "RESV0002"}
    ) == {"status": "Rejected"}

    assert await answer(node, station.id, "CancelReservation", {"reservationId": 77}) == {
        "status": "Accepted"
    }
    assert station.outlet(2).status == "Available"
    await until_evses(node, station.id, ["AVAILABLE", "AVAILABLE"])
    assert await answer(node, station.id, "CancelReservation", {"reservationId": 77}) == {
        "status": "Rejected"
    }
    clean(station)


async def test_the_reserving_driver_starts_on_the_reserved_connector(
    node: Node, simulate: Simulate
) -> None:
    station = await simulate("SIM16-RESERVE-USE")
    reserve = {"connectorId": 2, "expiryDate": later(600), "idTag": "RESV0003", "reservationId": 79}
    assert await answer(node, station.id, "ReserveNow", reserve) == {"status": "Accepted"}

    server_id = await remote_start(node, station, None, "RESV0003")

    tx = station.outlet(2).transaction
    assert tx is not None
    assert tx.server_id == server_id
    assert tx.reservation_id == 79
    assert station.outlet(2).reservation is None
    session = await node.session(server_id)
    [_, evse_2] = await node.evses(station.id)
    assert session.evse_uid == evse_2.uid
    await until_evses(node, station.id, ["AVAILABLE", "CHARGING"])
    clean(station)


async def test_a_reservation_expires(node: Node, simulate: Simulate) -> None:
    station = await simulate("SIM16-RESERVE-EXPIRE")
    reserve = {
        "connectorId": 1,
        "expiryDate": later(2 * TIME_UNIT),
        "idTag": "RESV0004",
        "reservationId": 80,
    }

    assert await answer(node, station.id, "ReserveNow", reserve) == {"status": "Accepted"}
    await until_evses(node, station.id, ["RESERVED", "AVAILABLE"])
    await until_evses(node, station.id, ["AVAILABLE", "AVAILABLE"])
    assert station.outlet(1).reservation is None
    clean(station)


# Local authorization list


async def test_local_list_version_follows_the_list_sent(node: Node, simulate: Simulate) -> None:
    station = await simulate("SIM16-LOCAL-LIST")
    assert await answer(node, station.id, "GetLocalListVersion") == {"listVersion": 0}
    local_list = {
        "listVersion": 5,
        "updateType": "Full",
        "localAuthorizationList": [{"idTag": "LOCAL001", "idTagInfo": {"status": "Accepted"}}],
    }
    assert await answer(node, station.id, "SendLocalList", local_list) == {"status": "Accepted"}
    assert await answer(node, station.id, "GetLocalListVersion") == {"listVersion": 5}
    clean(station)


# Firmware management


async def update_firmware(node: Node, simulate: Simulate, station_id: str) -> Station16:
    """Send UpdateFirmware (download now); return the station once it booted the new firmware."""
    station = await simulate(station_id)
    old = station.firmware
    update = {"location": "https://firmware.example.com/sim.bin", "retrieveDate": later(0)}

    assert await answer(node, station.id, "UpdateFirmware", update) == {}

    await until(
        lambda: station.figures.sent["BootNotification"] == 2 and station.booted.is_set(),
        "a boot with the new firmware",
    )
    assert station.firmware != old
    stored = await eventually(
        lambda: node.station(station.id),
        lambda found: found.firmware_version == station.firmware,
        "the new firmware on the server",
    )
    assert stored.online
    return station


async def firmware_reports(node: Node, station_id: str) -> list[str]:
    return [event.details["status"] for event in await node.events(station_id, "firmware")]


async def test_firmware_update_reports_its_steps_and_boots_the_new_firmware(
    node: Node, simulate: Simulate
) -> None:
    station = await update_firmware(node, simulate, "SIM16-FIRMWARE")

    # Installed follows the boot at once: no need to wait long for it.
    reports = await eventually(
        lambda: firmware_reports(node, station.id),
        lambda seen: len(seen) >= 4,
        "four reports",
        within=3 * TIME_UNIT,
    )

    assert reports == ["Downloading", "Downloaded", "Installing", "Installed"]
    clean(station)


async def test_diagnostics_are_uploaded(node: Node, simulate: Simulate) -> None:
    station = await simulate("SIM16-DIAGNOSTICS")

    got = await answer(node, station.id, "GetDiagnostics", {"location": "ftp://example.com/in/"})

    assert got["fileName"].startswith(f"diagnostics-{station.id}-")

    async def reports() -> list[str]:
        events = await node.events(station.id, "diagnostics")
        return [event.details["status"] for event in events]

    assert await eventually(reports, lambda seen: len(seen) >= 2, "two reports") == [
        "Uploading",
        "Uploaded",
    ]
    clean(station)


# What is not simulated


@pytest.mark.parametrize("command", sorted(SECURITY_EXTENSION))
async def test_security_extension_is_answered_not_implemented(
    node: Node, simulate: Simulate, command: str
) -> None:
    station = await simulate(f"SIM16-SEC-{command}"[:48])
    arguments, _ = RAW_COMMANDS[command]

    body = await send(node, station.id, command, arguments)

    assert body["http_status"] == 502
    assert body["error"]["code"] == "NotImplemented"
    # The station carries on.
    assert await answer(node, station.id, "ClearCache") == {"status": "Accepted"}
    clean(station)


# Whole visits


@pytest.mark.parametrize(
    "template",
    sorted(name for name, t in shipped_templates().items() if "1.6" in t.versions),
)
async def test_a_visit_is_a_session_with_the_station_energy(
    node: Node, simulate: Simulate, template: str
) -> None:
    station = await simulate(f"SIM16-VISIT-{template}", template)

    record = await station.visit(1, "VISIT001", duration=1.5, vehicle=Vehicle(SUV, 30))

    assert record is not None
    assert record.energy_wh > 0
    session = await ended_session(node, record)
    assert session.status == "COMPLETED"
    assert session.stop_reason == "Local"
    assert session.meter_start_wh == round(record.transaction.meter_start_wh)
    assert abs(float(session.energy_wh) - record.energy_wh) <= 1
    await until_evses(node, station.id, ["AVAILABLE"] * len(station.outlets))
    assert station.figures.sessions_completed == 1
    clean(station)


async def test_signed_readings_reach_the_server_and_verify(node: Node, simulate: Simulate) -> None:
    station = await simulate("SIM16-SIGNED", "dc-fast-150")
    assert station.signer is not None

    record = await station.visit(1, "SIGNED01", duration=1.0, vehicle=Vehicle(SUV, 30))

    assert record is not None
    session = await ended_session(node, record)
    signed = [
        s.signed_data
        for s in await node.samples(MeterSample.session_id == session.id)
        if s.signed_data is not None
    ]
    assert len(signed) >= 2  # at least the begin and the end of the transaction
    key = serialization.load_der_public_key(base64.b64decode(station.signer.public_key))
    assert isinstance(key, ec.EllipticCurvePublicKey)
    for data in signed:
        assert data["format"] == "SignedData"
        header, payload, signature = data["value"].split("|")
        assert header == "OCMF"
        assert json.loads(payload)["ID"] == "SIGNED01"
        key.verify(
            bytes.fromhex(json.loads(signature)["SD"]), payload.encode(), ec.ECDSA(hashes.SHA256())
        )
    clean(station)
