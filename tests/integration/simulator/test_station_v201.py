"""The OCPP 2.0.1 simulated station against a raw CSMS of our own making (``raw_csms``).

The CSMS is not our gateway (which does not speak 2.0.1 yet): it records what the station sends,
checks every payload in both directions against the ``ocpp`` package's 2.0.1 schemas (the
``csms`` fixture fails a test that saw any problem), and sends the station the calls a CSMS may
make. Each test checks the answer and the effect: a status, a transaction started or stopped, a
reboot (a second BootNotification), a power limit in the next meter value.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from raw_csms import STEP, RawCsms, Received

from simulator.faults import Faults
from simulator.fleet import build_station
from simulator.physics import EV_MODELS, Vehicle
from simulator.station import StationOptions, Transaction
from simulator.templates import shipped_templates
from simulator.v201 import Station201

NOW = "2030-01-01T00:00:00.000Z"
"""currentTime in the CSMS's answers; the station does not set its clock from it."""

MakeStation = Callable[..., Awaitable[Station201]]


@pytest.fixture
async def csms() -> AsyncIterator[RawCsms]:
    async with RawCsms() as server:
        yield server
        assert server.problems == [], "\n".join(server.problems)


@pytest.fixture
async def make_station(csms: RawCsms) -> AsyncIterator[MakeStation]:
    """Build, start and (unless told not to) wait for the boot of a 2.0.1 station."""
    stations: list[Station201] = []

    async def make(
        template: str = "ac-wallbox-11",
        *,
        boot: bool = True,
        faults: Faults | None = None,
        remote_visit: tuple[float, float] | None = None,
    ) -> Station201:
        model = dataclasses.replace(shipped_templates()[template], meter_interval=0.2)
        options = StationOptions(
            url=csms.url,
            faults=faults or Faults(),
            remote_visit=remote_visit,
            call_timeout=STEP,
        )
        station = build_station(f"CS-{len(stations) + 1}", "2.0.1", model, options)
        assert isinstance(station, Station201)
        stations.append(station)
        station.start()
        if boot:
            async with asyncio.timeout(STEP):
                await station.booted.wait()
            await csms.wait_for("StatusNotification", count=template_connectors(station))
        return station

    yield make
    for station in stations:
        await station.stop(grace=2.0)


def template_connectors(station: Station201) -> int:
    return sum(len(outlet.connectors) for outlet in station.outlets.values())


def events(csms: RawCsms, since: int = 0) -> list[dict[str, Any]]:
    return [c.payload for c in csms.calls("TransactionEvent", since=since)]


def kind(event_type: str, tx: Transaction | None = None) -> Callable[[dict[str, Any]], bool]:
    """Matches TransactionEvents of a type (and transaction)."""
    return lambda p: (
        p["eventType"] == event_type
        and (tx is None or p["transactionInfo"]["transactionId"] == tx.local_id)
    )


def value(event: dict[str, Any], measurand: str, phase: str | None = None) -> float:
    (meter_value,) = event["meterValue"]
    found = [
        v["value"]
        for v in meter_value["sampledValue"]
        if v["measurand"] == measurand and v.get("phase") == phase
    ]
    assert len(found) == 1, f"{measurand} {phase} in {meter_value}"
    return float(found[0])


def status(evse: int, connector: int, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: (
        (p["evseId"], p["connectorId"], p["connectorStatus"])
        == (
            evse,
            connector,
            state,
        )
    )


def answer_boot(state: str, interval: int) -> dict[str, Any]:
    return {"currentTime": NOW, "interval": interval, "status": state}


async def charging(
    station: Station201, csms: RawCsms, number: int = 1, vehicle: Vehicle | None = None
) -> Transaction:
    """Plug in and start a transaction; return once the CSMS has its Started event."""
    station.plug_in(number, vehicle or Vehicle(EV_MODELS[1], soc=20.0))
    tx = await station.start_transaction(number, "TAG-1")
    await csms.wait_for("TransactionEvent", where=kind("Started", tx))
    return tx


# Boot and status ---------------------------------------------------------------------------


async def test_boot_reports_the_station_and_each_connector_of_each_evse(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station("dc-fast-150")
    (boot,) = csms.calls("BootNotification")
    assert boot.payload == {
        "reason": "PowerUp",
        "chargingStation": {
            "model": "DCF-150",
            "vendorName": "VoltForge",
            "serialNumber": station.serial,
            "firmwareVersion": "5.0.12",
        },
    }
    reported = [
        (c.payload["evseId"], c.payload["connectorId"], c.payload["connectorStatus"])
        for c in csms.calls("StatusNotification")
    ]
    assert sorted(reported) == [(1, 1, "Available"), (1, 2, "Available"), (2, 1, "Available")]
    assert station.heartbeat_interval == 300

    # A vehicle on the EVSE's second connector occupies it; the first cannot be used meanwhile.
    mark = csms.mark()
    station.plug_in(1, connector_index=1)
    await csms.wait_for("StatusNotification", where=status(1, 2, "Occupied"), since=mark)
    await csms.wait_for("StatusNotification", where=status(1, 1, "Unavailable"), since=mark)


async def test_a_pending_boot_is_retried_after_the_interval_and_nothing_else_is_sent(
    csms: RawCsms, make_station: MakeStation
) -> None:
    csms.respond("BootNotification", answer_boot("Pending", 1), answer_boot("Accepted", 1))
    station = await make_station(boot=False)
    first, second = await csms.wait_for("BootNotification", count=2)
    await csms.wait_for("StatusNotification")
    # The station waited the interval it was given (a lower bound: it cannot come early).
    assert second.at - first.at >= 0.9
    assert [c.action for c in csms.received if c.at <= second.at] == ["BootNotification"] * 2
    assert second.payload["reason"] == "PowerUp"
    # Accepted's interval is the heartbeat interval.
    await csms.wait_for("Heartbeat")
    assert station.heartbeat_interval == 1


async def test_a_rejected_boot_is_retried(csms: RawCsms, make_station: MakeStation) -> None:
    csms.respond("BootNotification", answer_boot("Rejected", 1), answer_boot("Accepted", 300))
    station = await make_station(boot=False)
    await csms.wait_for("BootNotification", count=2)
    async with asyncio.timeout(STEP):
        await station.booted.wait()
    assert station.boot_status == "Accepted"
    assert station.figures.errors["boot rejected"] == 1


async def test_a_boot_triggered_while_pending_ends_the_wait(
    csms: RawCsms, make_station: MakeStation
) -> None:
    csms.respond("BootNotification", answer_boot("Pending", 30), answer_boot("Accepted", 300))
    station = await make_station(boot=False)
    await csms.wait_for("BootNotification")
    answer = await csms.result(
        station.id, "TriggerMessage", {"requestedMessage": "BootNotification"}
    )
    assert answer == {"status": "Accepted"}
    await csms.wait_for("BootNotification", where=lambda p: p["reason"] == "Triggered")
    await csms.wait_for("StatusNotification", timeout=3.0)


# Transactions ------------------------------------------------------------------------------


async def test_a_visit_is_one_numbered_stream_of_transaction_events(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station("ac-wallbox-11")
    record = await station.visit(1, "TAG-1", 1.2, Vehicle(EV_MODELS[1], soc=20.0))
    assert record is not None
    await csms.wait_for("StatusNotification", where=status(1, 1, "Available"), count=2)
    stream = events(csms)
    assert [e["seqNo"] for e in stream] == list(range(len(stream)))
    assert {e["transactionInfo"]["transactionId"] for e in stream} == {record.local_id}
    started, *updated, ended = stream
    assert len(updated) >= 3
    assert all("offline" not in e for e in stream)

    assert started["eventType"] == "Started"
    assert started["triggerReason"] == "Authorized"
    assert started["idToken"] == {"idToken": "TAG-1", "type": "ISO14443"}
    assert started["evse"] == {"id": 1, "connectorId": 1}
    assert started["transactionInfo"]["chargingState"] == "Charging"
    assert started["numberOfPhasesUsed"] == 3
    assert started["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"

    for event in updated:
        assert (event["eventType"], event["triggerReason"]) == ("Updated", "MeterValuePeriodic")
        assert event["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Periodic"
        assert value(event, "Power.Active.Import") > 0
        assert all(value(event, "Current.Import", phase) > 0 for phase in ("L1", "L2", "L3"))

    assert ended["eventType"] == "Ended"
    assert ended["triggerReason"] == "StopAuthorized"
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert ended["idToken"] == {"idToken": "TAG-1", "type": "ISO14443"}
    assert ended["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.End"

    energy = [value(e, "Energy.Active.Import.Register") for e in stream]
    assert energy == sorted(energy)
    assert energy[-1] - energy[0] == pytest.approx(record.energy_wh, abs=0.11)
    assert record.energy_wh > 0

    authorize = csms.calls("Authorize")[0]
    assert authorize.payload == {"idToken": {"idToken": "TAG-1", "type": "ISO14443"}}
    assert authorize.at < csms.calls("TransactionEvent")[0].at
    states = [c.payload["connectorStatus"] for c in csms.calls("StatusNotification")]
    assert states == ["Available", "Occupied", "Available"]


async def test_a_full_battery_is_a_charging_state_change_not_a_status(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    tx = await charging(station, csms, vehicle=Vehicle(EV_MODELS[0], soc=100.0))
    (change,) = await csms.wait_for(
        "TransactionEvent", where=lambda p: p["triggerReason"] == "ChargingStateChanged"
    )
    assert change.payload["transactionInfo"] == {
        "transactionId": tx.local_id,
        "chargingState": "SuspendedEV",
    }
    states = [c.payload["connectorStatus"] for c in csms.calls("StatusNotification")]
    assert states == ["Available", "Occupied"]


async def test_unplugging_ends_the_transaction_as_ev_communication_lost(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    tx = await charging(station, csms)
    await station.unplug(1)
    (ended,) = await csms.wait_for("TransactionEvent", where=kind("Ended", tx))
    assert ended.payload["triggerReason"] == "EVCommunicationLost"
    assert ended.payload["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert ended.payload["transactionInfo"]["chargingState"] == "Idle"


async def test_events_made_offline_are_replayed_once_flagged_offline(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    tx = await charging(station, csms)
    await csms.wait_for("TransactionEvent", where=kind("Updated"))
    await station.go_offline()
    await asyncio.sleep(1.0)  # meter samples pile up in the queue meanwhile
    assert station.queued >= 2
    record = await station.stop_transaction(1, "Local")
    assert record is not None
    station.go_online()
    await csms.wait_for("TransactionEvent", where=kind("Ended", tx))

    received = csms.calls("TransactionEvent")
    stream = sorted((c.payload for c in received), key=lambda p: p["seqNo"])
    assert [e["seqNo"] for e in stream] == list(range(len(stream)))
    offline = [c for c in received if c.payload.get("offline")]
    assert len(offline) >= 2
    assert stream[-1]["offline"] is True
    assert all(c.connection == 2 for c in offline)
    assert all("offline" not in c.payload for c in received if c.connection == 1)
    energy = [value(e, "Energy.Active.Import.Register") for e in stream]
    assert energy == sorted(energy)
    assert energy[-1] - energy[0] == pytest.approx(record.energy_wh, abs=0.11)


async def test_out_of_order_replay_is_put_right_by_seq_no(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station(faults=Faults(out_of_order=True))
    tx = await charging(station, csms)
    await station.go_offline()
    await asyncio.sleep(1.0)
    await station.stop_transaction(1, "Local")
    station.go_online()
    (ended,) = await csms.wait_for("TransactionEvent", where=kind("Ended", tx))
    # Swapped, the end may come before the event numbered just before it.
    await csms.wait_for("TransactionEvent", count=ended.payload["seqNo"] + 1)
    replayed = [c.payload["seqNo"] for c in csms.calls("TransactionEvent") if c.connection == 2]
    assert len(replayed) >= 2
    assert replayed != sorted(replayed)
    every = sorted(p["seqNo"] for p in events(csms))
    assert every == list(range(len(every)))


async def test_dc_meter_values_are_signed_and_verifiable(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station("dc-fast-150")
    assert station.signer is not None
    await station.visit(2, "TAG-DC", 0.8, Vehicle(EV_MODELS[2], soc=30.0))
    await csms.wait_for("TransactionEvent", where=kind("Ended"))
    stream = events(csms)
    assert len(stream) >= 3
    for event in stream:
        (meter_value,) = event["meterValue"]
        energy = next(
            v
            for v in meter_value["sampledValue"]
            if v["measurand"] == "Energy.Active.Import.Register"
        )
        signed = energy["signedMeterValue"]
        assert signed["encodingMethod"] == "OCMF"
        assert signed["publicKey"] == station.signer.public_key
        header, payload, seal = base64.b64decode(signed["signedMeterData"]).decode().split("|", 2)
        assert header == "OCMF"
        reading = json.loads(payload)["RD"][0]
        assert reading["RV"] == pytest.approx(energy["value"] / 1000, abs=0.001)
        key = load_der_public_key(base64.b64decode(signed["publicKey"]))
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(
            bytes.fromhex(json.loads(seal)["SD"]), payload.encode(), ec.ECDSA(hashes.SHA256())
        )
        assert 0 <= value(event, "SoC") <= 100
        assert value(event, "Current.Import") >= 0  # DC: one current, no phase


async def test_an_unknown_token_starts_nothing(csms: RawCsms, make_station: MakeStation) -> None:
    csms.respond("Authorize", {"idTokenInfo": {"status": "Invalid"}})
    station = await make_station()
    assert await station.visit(1, "STRANGER", 0.2) is None
    assert csms.calls("Authorize")
    assert events(csms) == []


async def test_a_token_refused_in_the_started_answer_ends_the_transaction(
    csms: RawCsms, make_station: MakeStation
) -> None:
    def refuse_start(call: Received) -> dict[str, Any]:
        if call.payload["eventType"] == "Started":
            return {"idTokenInfo": {"status": "Blocked"}}
        return {}

    csms.respond("TransactionEvent", refuse_start)
    station = await make_station()
    tx = await charging(station, csms)
    (ended,) = await csms.wait_for("TransactionEvent", where=kind("Ended", tx))
    assert ended.payload["triggerReason"] == "Deauthorized"
    assert ended.payload["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert station.history[-1].stop_reason == "DeAuthorized"


# Remote start and stop ---------------------------------------------------------------------


async def test_remote_start_and_stop(csms: RawCsms, make_station: MakeStation) -> None:
    station = await make_station("ac-duo-22")
    answer = await csms.result(
        station.id,
        "RequestStartTransaction",
        {"idToken": {"idToken": "APP-1", "type": "Central"}, "remoteStartId": 42, "evseId": 2},
    )
    assert answer == {"status": "Accepted"}
    (started,) = await csms.wait_for("TransactionEvent", where=kind("Started"))
    assert started.payload["triggerReason"] == "RemoteStart"
    assert started.payload["transactionInfo"]["remoteStartId"] == 42
    assert started.payload["idToken"] == {"idToken": "APP-1", "type": "Central"}
    assert started.payload["evse"]["id"] == 2
    tx = station.outlet(2).transaction
    assert tx is not None
    assert tx.local_id == started.payload["transactionInfo"]["transactionId"]

    busy = await csms.result(
        station.id,
        "RequestStartTransaction",
        {"idToken": {"idToken": "APP-2", "type": "Central"}, "remoteStartId": 43, "evseId": 2},
    )
    assert busy == {"status": "Rejected"}
    unknown = await csms.result(station.id, "RequestStopTransaction", {"transactionId": "nope"})
    assert unknown == {"status": "Rejected"}

    stop = await csms.result(station.id, "RequestStopTransaction", {"transactionId": tx.local_id})
    assert stop == {"status": "Accepted"}
    (ended,) = await csms.wait_for("TransactionEvent", where=kind("Ended", tx))
    assert ended.payload["triggerReason"] == "RemoteStop"
    assert ended.payload["transactionInfo"]["stoppedReason"] == "Remote"
    assert station.outlet(2).transaction is None


async def test_remote_start_authorizes_first_when_configured_to(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    setting = {
        "component": {"name": "AuthCtrlr"},
        "variable": {"name": "AuthorizeRemoteStart"},
        "attributeValue": "true",
    }
    answer = await csms.result(station.id, "SetVariables", {"setVariableData": [setting]})
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
    await csms.result(
        station.id,
        "RequestStartTransaction",
        {"idToken": {"idToken": "APP-1", "type": "eMAID"}, "remoteStartId": 1},
    )
    (started,) = await csms.wait_for("TransactionEvent", where=kind("Started"))
    (authorize,) = csms.calls("Authorize")
    assert authorize.payload == {"idToken": {"idToken": "APP-1", "type": "eMAID"}}
    assert authorize.at < started.at


async def test_remote_start_with_a_tx_profile_is_limited_by_it(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    station.plug_in(1, Vehicle(EV_MODELS[1], soc=20.0))
    profile = {
        "id": 7,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [
            {
                "id": 1,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 2000.0}],
            }
        ],
    }
    answer = await csms.result(
        station.id,
        "RequestStartTransaction",
        {
            "idToken": {"idToken": "APP-1", "type": "Central"},
            "remoteStartId": 5,
            "evseId": 1,
            "chargingProfile": profile,
        },
    )
    assert answer == {"status": "Accepted"}
    updates = await csms.wait_for("TransactionEvent", where=kind("Updated"), count=2)
    assert [value(u.payload, "Power.Active.Import") for u in updates] == [2000.0, 2000.0]


async def test_a_remote_visitor_leaves_after_the_visit(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station(remote_visit=(0.4, 0.4))
    await csms.result(
        station.id,
        "RequestStartTransaction",
        {"idToken": {"idToken": "APP-1", "type": "Central"}, "remoteStartId": 1, "evseId": 1},
    )
    (ended,) = await csms.wait_for("TransactionEvent", where=kind("Ended"))
    assert ended.payload["triggerReason"] == "StopAuthorized"
    await csms.wait_for("StatusNotification", where=status(1, 1, "Available"), count=2)
    assert station.outlet(1).vehicle is None


# Unlock, reset, availability ---------------------------------------------------------------


async def test_unlock_refuses_an_authorized_transaction_and_frees_a_cable(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    tx = await charging(station, csms)
    unlock = {"evseId": 1, "connectorId": 1}
    answer = await csms.result(station.id, "UnlockConnector", unlock)
    assert answer == {"status": "OngoingAuthorizedTransaction"}
    assert station.outlet(1).transaction is tx
    for wrong in ({"evseId": 1, "connectorId": 2}, {"evseId": 9, "connectorId": 1}):
        assert await csms.result(station.id, "UnlockConnector", wrong) == {
            "status": "UnknownConnector"
        }

    await station.stop_transaction(1, "Local")
    mark = csms.mark()
    assert await csms.result(station.id, "UnlockConnector", unlock) == {"status": "Unlocked"}
    await csms.wait_for("StatusNotification", where=status(1, 1, "Available"), since=mark)
    assert station.outlet(1).vehicle is None


async def test_an_immediate_reset_ends_the_transaction_and_reboots(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    tx = await charging(station, csms)
    assert await csms.result(station.id, "Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    (ended,) = await csms.wait_for("TransactionEvent", where=kind("Ended", tx))
    assert ended.payload["triggerReason"] == "ResetCommand"
    assert ended.payload["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    first, second = await csms.wait_for("BootNotification", count=2, timeout=2 * STEP)
    assert (first.connection, second.connection) == (1, 2)
    assert second.payload["reason"] == "RemoteReset"


async def test_a_reset_on_idle_waits_for_the_transaction(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    tx = await charging(station, csms)
    assert await csms.result(station.id, "Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
    assert station.outlet(1).transaction is tx
    await station.stop_transaction(1, "Local")
    (ended,) = await csms.wait_for("TransactionEvent", where=kind("Ended", tx))
    assert ended.payload["transactionInfo"]["stoppedReason"] == "Local"
    assert ended.connection == 1
    (_, second) = await csms.wait_for("BootNotification", count=2, timeout=2 * STEP)
    assert second.payload["reason"] == "RemoteReset"


async def test_an_evse_reset_ends_its_transaction_only(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station("ac-duo-22")
    tx = await charging(station, csms, number=2)
    assert await csms.result(station.id, "Reset", {"type": "Immediate", "evseId": 2}) == {
        "status": "Accepted"
    }
    (ended,) = await csms.wait_for("TransactionEvent", where=kind("Ended", tx))
    assert ended.payload["triggerReason"] == "ResetCommand"
    assert ended.connection == 1
    # Still on its first connection: a heartbeat asked for now comes on it.
    await csms.result(station.id, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    (beat,) = await csms.wait_for("Heartbeat")
    assert beat.connection == 1
    assert await csms.result(station.id, "Reset", {"type": "Immediate", "evseId": 9}) == {
        "status": "Rejected"
    }


async def test_change_availability_of_an_evse_and_of_the_station(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station("dc-fast-150")
    mark = csms.mark()
    answer = await csms.result(
        station.id, "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}
    )
    assert answer == {"status": "Accepted"}
    for connector in (1, 2):
        await csms.wait_for(
            "StatusNotification", where=status(1, connector, "Unavailable"), since=mark
        )
    refused = await csms.result(
        station.id,
        "RequestStartTransaction",
        {"idToken": {"idToken": "APP-1", "type": "Central"}, "remoteStartId": 1, "evseId": 1},
    )
    assert refused == {"status": "Rejected"}
    mark = csms.mark()
    await csms.result(
        station.id, "ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 1}}
    )
    await csms.wait_for("StatusNotification", where=status(1, 1, "Available"), since=mark)

    tx = await charging(station, csms, number=2)
    whole = await csms.result(
        station.id, "ChangeAvailability", {"operationalStatus": "Inoperative"}
    )
    assert whole == {"status": "Scheduled"}
    assert station.outlet(2).transaction is tx
    mark = csms.mark()
    await station.unplug(2)
    await csms.wait_for("StatusNotification", where=status(2, 1, "Unavailable"), since=mark)
    unknown = await csms.result(
        station.id, "ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 9}}
    )
    assert unknown == {"status": "Rejected"}


# The device model --------------------------------------------------------------------------


def component_variable(
    component: str, variable: str, evse: int | None = None, **extra: Any
) -> dict[str, Any]:
    named: dict[str, Any] = {"name": component}
    if evse is not None:
        named["evse"] = {"id": evse}
    return {"component": named, "variable": {"name": variable}, **extra}


async def test_set_and_get_variables(csms: RawCsms, make_station: MakeStation) -> None:
    station = await make_station()
    settings = [
        component_variable("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="120"),
        component_variable("SampledDataCtrlr", "TxUpdatedInterval", attributeValue="1"),
        component_variable("ChargingStation", "Model", attributeValue="Other"),
        component_variable("NoSuchCtrlr", "Enabled", attributeValue="true"),
        component_variable("OCPPCommCtrlr", "NoSuchVariable", attributeValue="1"),
        component_variable("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="soon"),
        component_variable(
            "AuthCtrlr", "AuthorizeRemoteStart", attributeValue="true", attributeType="Target"
        ),
    ]
    answer = await csms.result(station.id, "SetVariables", {"setVariableData": settings})
    assert [r["attributeStatus"] for r in answer["setVariableResult"]] == [
        "Accepted",
        "Accepted",
        "Rejected",
        "UnknownComponent",
        "UnknownVariable",
        "Rejected",
        "NotSupportedAttributeType",
    ]
    assert station.heartbeat_interval == 120
    assert station.meter_interval == 1

    wanted = [
        component_variable("OCPPCommCtrlr", "HeartbeatInterval"),
        component_variable("SampledDataCtrlr", "TxUpdatedInterval"),
        component_variable("ChargingStation", "VendorName"),
        component_variable("EVSE", "AvailabilityState", evse=1),
        component_variable("EVSE", "AvailabilityState"),
        component_variable("AuthCtrlr", "Nothing"),
    ]
    answer = await csms.result(station.id, "GetVariables", {"getVariableData": wanted})
    results = [(r["attributeStatus"], r.get("attributeValue")) for r in answer["getVariableResult"]]
    assert results == [
        ("Accepted", "120"),
        ("Accepted", "1"),
        ("Accepted", "Simtronic"),
        ("Accepted", "Available"),
        ("UnknownComponent", None),
        ("UnknownVariable", None),
    ]


def report_items(reports: list[Received]) -> list[dict[str, Any]]:
    return [item for report in reports for item in report.payload["reportData"]]


async def test_get_base_report_sends_the_device_model_in_numbered_parts(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station("ac-duo-22")
    parts = -(-len(station.variables) // 10)
    assert parts >= 2
    answer = await csms.result(
        station.id, "GetBaseReport", {"requestId": 5, "reportBase": "FullInventory"}
    )
    assert answer == {"status": "Accepted"}
    reports = await csms.wait_for("NotifyReport", count=parts)
    assert [r.payload["seqNo"] for r in reports] == list(range(parts))
    assert [r.payload["tbc"] for r in reports] == [True] * (parts - 1) + [False]
    assert {r.payload["requestId"] for r in reports} == {5}
    items = report_items(reports)
    assert len(items) == len(station.variables)
    beat = next(i for i in items if i["variable"]["name"] == "HeartbeatInterval")
    assert beat["variableAttribute"] == [
        {"type": "Actual", "value": "300", "mutability": "ReadWrite"}
    ]
    assert beat["variableCharacteristics"]["dataType"] == "integer"

    mark = csms.mark()
    await csms.result(
        station.id, "GetBaseReport", {"requestId": 6, "reportBase": "ConfigurationInventory"}
    )
    reports = await csms.wait_for("NotifyReport", where=lambda p: not p["tbc"], since=mark)
    items = report_items(csms.calls("NotifyReport", since=mark))
    assert {i["variableAttribute"][0]["mutability"] for i in items} == {"ReadWrite"}
    assert "AuthorizeRemoteStart" in {i["variable"]["name"] for i in items}

    mark = csms.mark()
    await csms.result(
        station.id, "GetBaseReport", {"requestId": 7, "reportBase": "SummaryInventory"}
    )
    (summary,) = await csms.wait_for("NotifyReport", since=mark)
    assert {i["variable"]["name"] for i in summary.payload["reportData"]} == {"AvailabilityState"}


async def test_get_report_filters_and_says_when_nothing_matches(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station("ac-duo-22")
    answer = await csms.result(
        station.id,
        "GetReport",
        {"requestId": 1, "componentVariable": [{"component": {"name": "EVSE", "evse": {"id": 2}}}]},
    )
    assert answer == {"status": "Accepted"}
    (report,) = await csms.wait_for("NotifyReport")
    items = report.payload["reportData"]
    assert {i["component"]["evse"]["id"] for i in items} == {2}
    assert {i["variable"]["name"] for i in items} == {"AvailabilityState", "Power", "SupplyPhases"}
    power = next(i for i in items if i["variable"]["name"] == "Power")
    assert power["variableCharacteristics"]["maxLimit"] == 22000

    for empty in (
        {"requestId": 2, "componentVariable": [{"component": {"name": "Nope"}}]},
        {"requestId": 3, "componentCriteria": ["Problem"]},
    ):
        assert await csms.result(station.id, "GetReport", empty) == {"status": "EmptyResultSet"}
    assert len(csms.calls("NotifyReport")) == 1


async def test_variable_monitors_are_set_and_cleared(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()

    def monitor(component: str, variable: str, evse: int | None = None) -> dict[str, Any]:
        return component_variable(component, variable, evse, value=10, type="Delta", severity=5)

    answer = await csms.result(
        station.id,
        "SetVariableMonitoring",
        {
            "setMonitoringData": [
                monitor("EVSE", "Power", evse=1),
                monitor("Nope", "Power"),
                monitor("ChargingStation", "Model"),
            ]
        },
    )
    results = answer["setMonitoringResult"]
    assert [r["status"] for r in results] == ["Accepted", "UnknownComponent", "Rejected"]
    monitor_id = results[0]["id"]
    cleared = await csms.result(station.id, "ClearVariableMonitoring", {"id": [monitor_id, 999]})
    assert cleared["clearMonitoringResult"] == [
        {"id": monitor_id, "status": "Accepted"},
        {"id": 999, "status": "NotFound"},
    ]


# Simple answers ----------------------------------------------------------------------------


async def test_network_profile_cache_data_transfer_and_local_list(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    profile = {
        "ocppVersion": "OCPP20",
        "ocppTransport": "JSON",
        "ocppCsmsUrl": csms.url,
        "messageTimeout": 30,
        "securityProfile": 1,
        "ocppInterface": "Wired0",
    }
    answer = await csms.result(
        station.id, "SetNetworkProfile", {"configurationSlot": 1, "connectionData": profile}
    )
    assert answer == {"status": "Accepted"}
    assert station.network_profiles[1]["ocppCsmsUrl"] == csms.url
    assert await csms.result(station.id, "ClearCache", {}) == {"status": "Accepted"}
    assert await csms.result(station.id, "DataTransfer", {"vendorId": "com.example"}) == {
        "status": "UnknownVendorId"
    }

    token = {"idToken": "LOCAL-1", "type": "ISO14443"}
    full = {
        "versionNumber": 3,
        "updateType": "Full",
        "localAuthorizationList": [{"idToken": token, "idTokenInfo": {"status": "Accepted"}}],
    }
    assert await csms.result(station.id, "SendLocalList", full) == {"status": "Accepted"}
    assert await csms.result(station.id, "GetLocalListVersion", {}) == {"versionNumber": 3}
    assert set(station.local_list) == {"LOCAL-1"}
    removal = {
        "versionNumber": 4,
        "updateType": "Differential",
        "localAuthorizationList": [{"idToken": token}],
    }
    assert await csms.result(station.id, "SendLocalList", removal) == {"status": "Accepted"}
    assert station.local_list == {}
    assert await csms.result(station.id, "GetLocalListVersion", {}) == {"versionNumber": 4}


async def test_an_unsimulated_call_is_answered_not_implemented(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    frame = await csms.call(
        station.id, "CustomerInformation", {"requestId": 1, "report": True, "clear": False}
    )
    assert frame[0] == 4
    assert frame[2] == "NotImplemented"


async def test_cost_updates_are_kept_per_transaction(
    csms: RawCsms, make_station: MakeStation
) -> None:
    # Started, the first Updated (with a running cost), and the rest.
    csms.respond("TransactionEvent", {}, {"totalCost": 1.25}, {})
    station = await make_station()
    tx = await charging(station, csms)
    # The station sends the next event only once it has taken the answer to the one before.
    await csms.wait_for("TransactionEvent", where=kind("Updated"), count=2)
    assert station.costs[tx.local_id] == 1.25
    answer = await csms.result(
        station.id, "CostUpdated", {"totalCost": 3.5, "transactionId": tx.local_id}
    )
    assert answer == {}
    assert station.costs[tx.local_id] == 3.5


async def test_transaction_status_tells_of_unsent_events(
    csms: RawCsms, make_station: MakeStation
) -> None:
    release = asyncio.Event()

    async def hold_updates(call: Received) -> dict[str, Any]:
        if call.payload["eventType"] == "Updated":
            await release.wait()
        return {}

    csms.respond("TransactionEvent", hold_updates)
    station = await make_station()
    tx = await charging(station, csms)
    await csms.wait_for("TransactionEvent", where=kind("Updated"))
    asked = {"transactionId": tx.local_id}
    answer = await csms.result(station.id, "GetTransactionStatus", asked)
    assert answer == {"messagesInQueue": True, "ongoingIndicator": True}
    assert await csms.result(station.id, "GetTransactionStatus", {"transactionId": "other"}) == {
        "messagesInQueue": False,
        "ongoingIndicator": False,
    }

    release.set()
    await station.stop_transaction(1, "Local")
    await csms.wait_for("TransactionEvent", where=kind("Ended", tx))
    answer = {}
    for _ in range(40):  # the station takes the last answer in its own time
        answer = await csms.result(station.id, "GetTransactionStatus", asked)
        if not answer["messagesInQueue"]:
            break
        await asyncio.sleep(0.05)
    assert answer == {"messagesInQueue": False, "ongoingIndicator": False}


# Triggers ----------------------------------------------------------------------------------


async def test_trigger_message(csms: RawCsms, make_station: MakeStation) -> None:
    station = await make_station("ac-duo-22")

    async def trigger(message: str, evse: dict[str, int] | None = None) -> str:
        payload: dict[str, Any] = {"requestedMessage": message}
        if evse is not None:
            payload["evse"] = evse
        answer = await csms.result(station.id, "TriggerMessage", payload)
        return str(answer["status"])

    assert await trigger("Heartbeat") == "Accepted"
    await csms.wait_for("Heartbeat")
    mark = csms.mark()
    assert await trigger("StatusNotification", {"id": 2, "connectorId": 1}) == "Accepted"
    (report,) = await csms.wait_for("StatusNotification", since=mark)
    assert (report.payload["evseId"], report.payload["connectorStatus"]) == (2, "Available")
    assert await trigger("MeterValues", {"id": 1}) == "Accepted"
    (meter,) = await csms.wait_for("MeterValues")
    assert meter.payload["evseId"] == 1
    assert meter.payload["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    assert await trigger("FirmwareStatusNotification") == "Accepted"
    (firmware,) = await csms.wait_for("FirmwareStatusNotification")
    assert firmware.payload == {"status": "Idle"}
    assert await trigger("LogStatusNotification") == "Accepted"
    (log,) = await csms.wait_for("LogStatusNotification")
    assert log.payload == {"status": "Idle"}

    assert await trigger("TransactionEvent") == "Rejected"  # none runs
    tx = await charging(station, csms)
    assert await trigger("TransactionEvent", {"id": 1}) == "Accepted"
    (event,) = await csms.wait_for(
        "TransactionEvent", where=lambda p: p["triggerReason"] == "Trigger"
    )
    assert event.payload["transactionInfo"]["transactionId"] == tx.local_id
    assert event.payload["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"

    assert await trigger("BootNotification") == "Rejected"  # F06.FR.17: already accepted
    assert await trigger("Heartbeat", {"id": 9}) == "Rejected"
    assert await trigger("SignChargingStationCertificate") == "NotImplemented"
    assert len(csms.calls("BootNotification")) == 1


# Smart charging ----------------------------------------------------------------------------


def tx_profile(profile_id: int, tx: Transaction, amperes: float) -> dict[str, Any]:
    return {
        "id": profile_id,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "transactionId": tx.local_id,
        "chargingSchedule": [
            {
                "id": 1,
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": amperes}],
            }
        ],
    }


async def next_power(csms: RawCsms, station: Station201, tx: Transaction) -> float:
    """The power in the first periodic meter value sampled from now on."""
    first = tx.seq_no
    (update, *_) = await csms.wait_for(
        "TransactionEvent",
        where=lambda p: (
            p["eventType"] == "Updated"
            and p["seqNo"] >= first
            and p["triggerReason"] == "MeterValuePeriodic"
        ),
    )
    return value(update.payload, "Power.Active.Import")


async def test_a_tx_profile_limits_the_power_until_cleared(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station("ac-wallbox-11")
    tx = await charging(station, csms)
    assert await next_power(csms, station, tx) == pytest.approx(11_000, rel=0.01)

    answer = await csms.result(
        station.id, "SetChargingProfile", {"evseId": 1, "chargingProfile": tx_profile(11, tx, 6.0)}
    )
    assert answer == {"status": "Accepted"}
    assert await next_power(csms, station, tx) == pytest.approx(6.0 * 230 * 3)

    schedule = await csms.result(
        station.id, "GetCompositeSchedule", {"duration": 600, "evseId": 1, "chargingRateUnit": "A"}
    )
    assert schedule["status"] == "Accepted"
    assert schedule["schedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 6.0}]

    answer = await csms.result(
        station.id, "GetChargingProfiles", {"requestId": 3, "chargingProfile": {}}
    )
    assert answer == {"status": "Accepted"}
    (report,) = await csms.wait_for("ReportChargingProfiles")
    assert report.payload["requestId"] == 3
    assert report.payload["evseId"] == 1
    assert [p["id"] for p in report.payload["chargingProfile"]] == [11]
    none = await csms.result(
        station.id,
        "GetChargingProfiles",
        {"requestId": 4, "chargingProfile": {"chargingProfilePurpose": "TxDefaultProfile"}},
    )
    assert none == {"status": "NoProfiles"}

    unknown = await csms.result(station.id, "ClearChargingProfile", {"chargingProfileId": 99})
    assert unknown == {"status": "Unknown"}
    cleared = await csms.result(station.id, "ClearChargingProfile", {"chargingProfileId": 11})
    assert cleared == {"status": "Accepted"}
    assert await next_power(csms, station, tx) == pytest.approx(11_000, rel=0.01)


async def test_profiles_the_station_refuses_and_a_station_maximum(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station("ac-duo-22")
    tx = await charging(station, csms)

    def profile(purpose: str, watts: float) -> dict[str, Any]:
        return {
            "id": 20,
            "stackLevel": 0,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [
                {
                    "id": 1,
                    "startSchedule": "2020-01-01T00:00:00Z",
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": watts}],
                }
            ],
        }

    for evse, refused in (
        (2, profile("TxProfile", 1000)),  # no transaction on EVSE 2
        (1, profile("ChargingStationMaxProfile", 1000)),  # a station maximum names no EVSE
        (0, profile("ChargingStationExternalConstraints", 1000)),  # not the CSMS's to set
        (7, profile("TxDefaultProfile", 1000)),  # no such EVSE
    ):
        answer = await csms.result(
            station.id, "SetChargingProfile", {"evseId": evse, "chargingProfile": refused}
        )
        assert answer == {"status": "Rejected"}, refused["chargingProfilePurpose"]

    maximum = {"evseId": 0, "chargingProfile": profile("ChargingStationMaxProfile", 5000)}
    assert await csms.result(station.id, "SetChargingProfile", maximum) == {"status": "Accepted"}
    assert await next_power(csms, station, tx) == pytest.approx(5000)
    schedule = await csms.result(station.id, "GetCompositeSchedule", {"duration": 60, "evseId": 0})
    assert schedule["schedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 5000}]
    cleared = await csms.result(
        station.id,
        "ClearChargingProfile",
        {"chargingProfileCriteria": {"chargingProfilePurpose": "ChargingStationMaxProfile"}},
    )
    assert cleared == {"status": "Accepted"}
    assert await next_power(csms, station, tx) > 5000


# Reservations ------------------------------------------------------------------------------


def reservation(reservation_id: int, station: Station201, tag: str, **extra: Any) -> dict[str, Any]:
    expiry = station.timestamp(station.now() + timedelta(seconds=extra.pop("seconds", 60)))
    return {
        "id": reservation_id,
        "expiryDateTime": expiry,
        "idToken": {"idToken": tag, "type": "ISO14443"},
        **extra,
    }


async def test_reserve_cancel_and_use_a_reservation(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station("dc-fast-150")
    mark = csms.mark()
    answer = await csms.result(station.id, "ReserveNow", reservation(5, station, "RES-1", evseId=1))
    assert answer == {"status": "Accepted"}
    for connector in (1, 2):
        await csms.wait_for(
            "StatusNotification", where=status(1, connector, "Reserved"), since=mark
        )
    taken = await csms.result(station.id, "ReserveNow", reservation(6, station, "RES-2", evseId=1))
    assert taken == {"status": "Occupied"}
    nowhere = await csms.result(station.id, "ReserveNow", reservation(6, station, "X", evseId=9))
    assert nowhere == {"status": "Rejected"}

    mark = csms.mark()
    assert await csms.result(station.id, "CancelReservation", {"reservationId": 5}) == {
        "status": "Accepted"
    }
    await csms.wait_for("StatusNotification", where=status(1, 1, "Available"), since=mark)
    assert await csms.result(station.id, "CancelReservation", {"reservationId": 77}) == {
        "status": "Rejected"
    }

    answer = await csms.result(station.id, "ReserveNow", reservation(7, station, "RES-2", evseId=2))
    assert answer == {"status": "Accepted"}
    await station.visit(2, "RES-2", 0.3)
    (started,) = await csms.wait_for("TransactionEvent", where=kind("Started"))
    assert started.payload["reservationId"] == 7
    assert csms.calls("ReservationStatusUpdate") == []


async def test_an_expired_reservation_is_reported(csms: RawCsms, make_station: MakeStation) -> None:
    station = await make_station()
    mark = csms.mark()
    answer = await csms.result(
        station.id, "ReserveNow", reservation(9, station, "RES-1", seconds=0.5)
    )
    assert answer == {"status": "Accepted"}
    (update,) = await csms.wait_for("ReservationStatusUpdate")
    assert update.payload == {"reservationId": 9, "reservationUpdateStatus": "Expired"}
    await csms.wait_for("StatusNotification", where=status(1, 1, "Reserved"), since=mark)
    await csms.wait_for("StatusNotification", where=status(1, 1, "Available"), since=mark)


# Firmware and logs -------------------------------------------------------------------------


async def test_a_firmware_update_reports_each_step_and_reboots_into_it(
    csms: RawCsms, make_station: MakeStation
) -> None:
    station = await make_station()
    answer = await csms.result(
        station.id,
        "UpdateFirmware",
        {
            "requestId": 9,
            "firmware": {
                "location": "https://firmware.example.com/wallbox-3.0.bin",
                "retrieveDateTime": station.timestamp(station.now()),
            },
        },
    )
    assert answer == {"status": "Accepted"}
    steps = await csms.wait_for("FirmwareStatusNotification", count=5, timeout=3 * STEP)
    assert [s.payload for s in steps] == [
        {"status": status, "requestId": 9}
        for status in ("Downloading", "Downloaded", "Installing", "InstallRebooting", "Installed")
    ]
    _, boot = csms.calls("BootNotification")
    assert boot.payload["reason"] == "FirmwareUpdate"
    assert boot.payload["chargingStation"]["firmwareVersion"].startswith("2.8.4+")
    assert (boot.connection, steps[-1].connection) == (2, 2)
    assert boot.at < steps[-1].at


async def test_get_log_uploads_and_reports(csms: RawCsms, make_station: MakeStation) -> None:
    station = await make_station()
    answer = await csms.result(
        station.id,
        "GetLog",
        {
            "logType": "DiagnosticsLog",
            "requestId": 4,
            "log": {"remoteLocation": "https://logs.example.com/upload"},
        },
    )
    assert answer["status"] == "Accepted"
    assert answer["filename"].endswith(".log")
    steps = await csms.wait_for("LogStatusNotification", count=2)
    assert [s.payload for s in steps] == [
        {"status": "Uploading", "requestId": 4},
        {"status": "Uploaded", "requestId": 4},
    ]
