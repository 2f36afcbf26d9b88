"""End to end, OCPP 1.6: what a station says about itself, through a real running node.

Raw OCPP-J frames over a real websocket to a ``cpms.runtime.Runtime``; each test checks the
answer frame and the rows the node wrote. Covered: connecting (admission, retired stations,
Security Profile 1 Basic auth, Security Profile 2 TLS), BootNotification (Accepted, Pending,
Rejected after retirement), Heartbeat, StatusNotification (the OCPP -> OCPI status mapping,
connector 0, unknown connectors, faults, outbox entries, EVSEs UNKNOWN after a disconnect),
Authorize, the notifications kept in the station log (DataTransfer, DiagnosticsStatus,
FirmwareStatus, SecurityEvent, LogStatus, SignedFirmwareStatus, SignCertificate), and that the
hot path shares transactions between stations (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e.ocpp16.node import HEARTBEAT_INTERVAL, Node, NodeStarter, iso, parse_iso
from raw_station import RawStation
from websockets.exceptions import InvalidMessage, InvalidStatus

from cpms.admission import AdmissionPolicy
from cpms.model import ChargingStation, utcnow
from cpms.stations import retire_station
from ocpp_gateway.rpc import OcppVersion
from ocpp_gateway.validation import PayloadKind, violations

PASSWORD = "station-secret-1234"

# OCPP 1.6 ChargePointStatus -> OCPI 2.2.1 EVSE status, written out here on purpose (not read
# from ocpp_gateway.status_mapping): OCPI's status says whether a driver can use the EVSE.
OCPI_STATUS_OF = {
    "Available": "AVAILABLE",
    "Preparing": "CHARGING",
    "Charging": "CHARGING",
    "SuspendedEV": "CHARGING",
    "SuspendedEVSE": "CHARGING",
    "Finishing": "CHARGING",
    "Reserved": "RESERVED",
    "Unavailable": "INOPERATIVE",
    "Faulted": "OUTOFORDER",
}


def assert_valid_answer(action: str, payload: dict[str, Any]) -> None:
    """The answer breaks nothing in the 1.6 response schema of ``action``."""
    assert violations(OcppVersion.V16, action, payload, PayloadKind.RESPONSE) == []


def status(connector: int, value: str, error_code: str = "NoError", **extra: Any) -> dict[str, Any]:
    """A StatusNotification payload."""
    return {"connectorId": connector, "status": value, "errorCode": error_code, **extra}


V201 = "ocpp2.0.1"


async def expect_refused(node: Node, station_id: str, **options: Any) -> int:
    """Connect and return the HTTP status of the refused handshake."""
    with pytest.raises(InvalidStatus) as refused:
        async with node.connect(station_id, **options):
            pass
    return refused.value.response.status_code


# Connecting ----------------------------------------------------------------------------------


async def test_an_open_node_registers_a_new_station_and_a_known_node_refuses_it(
    open_node: Node, start_node: NodeStarter
) -> None:
    async with open_node.connect("NEW-1") as station:
        await station.boot()
    assert (await open_node.station("NEW-1")).registered_by == "admission"

    known = await start_node(station_admission=AdmissionPolicy.KNOWN)
    assert await expect_refused(known, "NEW-2") == 404
    assert await known.rows(ChargingStation, ChargingStation.id == "NEW-2") == []


async def test_a_retired_station_is_refused_at_connect(open_node: Node) -> None:
    async with open_node.connect("OLD-1") as station:
        await station.boot()
    await retire_station(open_node.runtime.uow(), "OLD-1")

    # Without the retired check an existing station without password would be let in.
    assert await expect_refused(open_node, "OLD-1") == 404


async def test_security_profile_1_needs_the_station_id_and_its_password(known_node: Node) -> None:
    await known_node.create_station("SP1", password=PASSWORD)

    assert await expect_refused(known_node, "SP1", password="wrong-password-99") == 401
    assert await expect_refused(known_node, "SP1", password=PASSWORD, username="SP2") == 401
    assert await expect_refused(known_node, "SP1") == 401
    async with known_node.connect("SP1", password=PASSWORD) as station:
        assert (await station.boot())["status"] == "Accepted"
    assert (await known_node.station("SP1")).boot_status == "Accepted"

    # OCPP 2.0.1 stations pass the same gate.
    await known_node.create_station("SP1-201", password=PASSWORD)
    assert await expect_refused(known_node, "SP1-201", version=V201, password="wrong-9") == 401
    async with known_node.connect("SP1-201", version=V201, password=PASSWORD) as station:
        assert (await station.boot())["status"] == "Accepted"
    assert (await known_node.station("SP1-201")).ocpp_version == V201


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, made now (cryptography if installed, else openssl)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        import cryptography  # noqa: F401
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        return cert, key
    return _certificate_with_cryptography(cert, key)


def _certificate_with_cryptography(cert: Path, key: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = utcnow()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


async def test_security_profile_2_serves_wss_and_refuses_plain_ws(
    start_node: NodeStarter, tmp_path: Path
) -> None:
    cert, key = _self_signed_certificate(tmp_path)
    node = await start_node(
        station_admission=AdmissionPolicy.OPEN, ocpp_tls_cert=str(cert), ocpp_tls_key=str(key)
    )
    trusting = ssl.create_default_context(cafile=str(cert))

    async with node.connect("TLS-1", ssl_context=trusting) as station:
        assert (await station.boot())["status"] == "Accepted"
    assert (await node.station("TLS-1")).boot_status == "Accepted"
    async with node.connect("TLS-201", version=V201, ssl_context=trusting) as station:
        assert (await station.boot())["status"] == "Accepted"
    assert (await node.station("TLS-201")).boot_status == "Accepted"

    # The server waits for a TLS ClientHello and hangs up on a plain HTTP upgrade request.
    with pytest.raises((InvalidMessage, ConnectionError)):
        async with node.connect("TLS-2"):
            pass
    # Nobody got as far as admission over plain text.
    assert await node.rows(ChargingStation, ChargingStation.id == "TLS-2") == []


# BootNotification ----------------------------------------------------------------------------


async def test_boot_is_accepted_with_the_heartbeat_interval_and_keeps_what_the_station_says(
    open_node: Node,
) -> None:
    before = utcnow()
    async with open_node.connect("BOOT-1") as station:
        answer = await station.boot(
            chargePointSerialNumber="SN-0042",
            chargeBoxSerialNumber="BOX-7",
            firmwareVersion="4.2.1-rc3",
            iccid="8931000000000000042",
            imsi="204080000000042",
            meterType="EEM-350-D-MCB",
            meterSerialNumber="MTR-99",
        )
    assert_valid_answer("BootNotification", answer)
    assert answer["status"] == "Accepted"
    assert answer["interval"] == HEARTBEAT_INTERVAL
    current_time = parse_iso(answer["currentTime"])
    assert before - timedelta(seconds=1) <= current_time <= utcnow()

    row = await open_node.station("BOOT-1")
    assert (row.vendor, row.model) == ("RawVendor", "RawModel")
    assert row.serial_number == "SN-0042"
    assert row.firmware_version == "4.2.1-rc3"
    assert (row.iccid, row.imsi) == ("8931000000000000042", "204080000000042")
    assert (row.meter_type, row.meter_serial_number) == ("EEM-350-D-MCB", "MTR-99")
    assert row.boot_status == "Accepted"
    assert row.last_boot_at is not None
    assert row.last_boot_at >= before - timedelta(seconds=1)


async def test_boot_is_pending_until_an_unknown_station_is_approved(
    start_node: NodeStarter,
) -> None:
    node = await start_node(station_admission=AdmissionPolicy.PENDING)
    async with node.connect("WAIT-1") as station:
        answer = await station.boot()
    assert_valid_answer("BootNotification", answer)
    assert answer["status"] == "Pending"
    assert answer["interval"] == HEARTBEAT_INTERVAL
    row = await node.station("WAIT-1")
    assert (row.approved, row.boot_status) == (False, "Pending")


async def test_a_station_retired_while_connected_is_rejected_at_its_next_boot(
    open_node: Node,
) -> None:
    async with open_node.connect("RET-1") as station:
        assert (await station.boot())["status"] == "Accepted"
        await station.result("StatusNotification", status(1, "Available"))
        await retire_station(open_node.runtime.uow(), "RET-1")

        answer = await station.boot()
        assert_valid_answer("BootNotification", answer)
        assert answer["status"] == "Rejected"
    row = await open_node.station("RET-1")
    assert row.boot_status == "Rejected"
    assert (await open_node.evse("RET-1", 1)).status == "REMOVED"


# Heartbeat -----------------------------------------------------------------------------------


async def test_heartbeat_answers_the_time_and_marks_the_station_seen(open_node: Node) -> None:
    async with open_node.connect("HB-1") as station:
        await station.boot()
        booted = await open_node.station("HB-1")
        answer = await station.result("Heartbeat", {})
    assert_valid_answer("Heartbeat", answer)
    # last_seen_at is written in bulk every few seconds (cpms.liveness); write it now.
    await open_node.runtime.liveness_writer.flush()
    current_time = parse_iso(answer["currentTime"])
    seen = (await open_node.station("HB-1")).last_seen_at
    assert booted.last_seen_at is not None
    assert seen is not None
    assert seen > booted.last_seen_at
    # The answer is the receive time the node recorded (to the millisecond it sends).
    assert timedelta(0) <= seen - current_time < timedelta(milliseconds=1)


# StatusNotification --------------------------------------------------------------------------


async def test_every_1_6_status_lands_as_its_ocpi_status(open_node: Node) -> None:
    async with open_node.connect("ST-1") as station:
        await station.boot()
        for ocpp_status, ocpi_status in OCPI_STATUS_OF.items():
            answer = await station.result("StatusNotification", status(1, ocpp_status))
            assert answer == {}
            assert (await open_node.evse("ST-1", 1)).status == ocpi_status, ocpp_status
            # Back to a different state, so each mapping is seen as a change.
            await station.result("StatusNotification", status(1, "Unavailable"))
            assert (await open_node.evse("ST-1", 1)).status == "INOPERATIVE"


async def test_connector_0_is_the_station_itself_changes_no_evse_and_is_logged(
    open_node: Node,
) -> None:
    async with open_node.connect("ST-0") as station:
        await station.boot()
        await station.result("StatusNotification", status(1, "Available"))
        answer = await station.result("StatusNotification", status(0, "Unavailable"))
    assert answer == {}
    evses = await open_node.evses("ST-0")
    assert [(e.ocpp_evse_id, e.status) for e in evses] == [(1, "AVAILABLE")]
    logged = await open_node.events("ST-0", "station_status")
    assert len(logged) == 1
    assert logged[0].details is not None
    assert logged[0].details["status"] == "INOPERATIVE"
    assert logged[0].details["ocpp_status"] == "Unavailable"


async def test_an_unknown_connector_id_adds_an_evse_and_says_so(open_node: Node) -> None:
    async with open_node.connect("ST-7") as station:
        await station.boot()
        assert await open_node.evses("ST-7") == []
        await station.result("StatusNotification", status(7, "Available"))
    (evse,) = await open_node.evses("ST-7")
    assert (evse.ocpp_evse_id, evse.status) == (7, "AVAILABLE")
    assert len(evse.connectors) == 1
    added = await open_node.events("ST-7", "evse_added")
    assert len(added) == 1
    assert added[0].details == {"evse_uid": evse.uid, "ocpp_evse_id": 7}


async def test_an_error_code_is_logged_as_a_fault(open_node: Node) -> None:
    async with open_node.connect("ST-F") as station:
        await station.boot()
        await station.result("StatusNotification", status(1, "Available"))
        answer = await station.result(
            "StatusNotification",
            status(1, "Faulted", "GroundFailure", info="RCD tripped", vendorErrorCode="E42"),
        )
    assert answer == {}
    (fault,) = await open_node.events("ST-F", "fault")
    assert fault.details is not None
    assert fault.details["error_code"] == "GroundFailure"
    assert (fault.details["info"], fault.details["vendorErrorCode"]) == ("RCD tripped", "E42")
    assert (await open_node.evse("ST-F", 1)).status == "OUTOFORDER"


async def test_status_changes_go_to_the_outbox_and_repeats_do_not(open_node: Node) -> None:
    async with open_node.connect("ST-O") as station:
        await station.boot()
        evse_uid = None
        for value in ("Available", "Charging", "Charging", "Available"):
            await station.result("StatusNotification", status(1, value))
            evse_uid = (await open_node.evse("ST-O", 1)).uid
    entries = [
        entry
        for entry in await open_node.outbox("evse.status_changed")
        if entry.payload["evse_uid"] == evse_uid
    ]
    assert [entry.payload["status"] for entry in entries] == ["AVAILABLE", "CHARGING", "AVAILABLE"]


async def test_evses_become_unknown_when_their_station_disconnects(open_node: Node) -> None:
    async with open_node.connect("ST-D") as station:
        await station.boot()
        await station.result("StatusNotification", status(1, "Available"))
        await station.result("StatusNotification", status(2, "Charging"))
    evses = await open_node.eventually(
        lambda: open_node.evses("ST-D"), lambda evses: all(e.status == "UNKNOWN" for e in evses)
    )
    assert [e.ocpp_evse_id for e in evses] == [1, 2]
    assert (await open_node.station("ST-D")).online is False
    unknown = [
        entry.payload["evse_uid"]
        for entry in await open_node.outbox("evse.status_changed")
        if entry.payload["status"] == "UNKNOWN"
    ]
    assert sorted(unknown) == sorted(e.uid for e in evses)


# Authorize -----------------------------------------------------------------------------------


async def test_authorize_answers_from_the_token_table(open_node: Node) -> None:
    await open_node.create_token("CARD-OK", group_id="FLEET-7")
    await open_node.create_token("CARD-OFF", valid=False)
    async with open_node.connect("AU-1") as station:
        await station.boot()
        valid = await station.result("Authorize", {"idTag": "CARD-OK"})
        blocked = await station.result("Authorize", {"idTag": "CARD-OFF"})
        unknown = await station.result("Authorize", {"idTag": "NOBODY"})
    for answer in (valid, blocked, unknown):
        assert_valid_answer("Authorize", answer)
    assert valid == {"idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET-7"}}
    assert blocked["idTagInfo"]["status"] == "Blocked"
    assert unknown["idTagInfo"]["status"] == "Invalid"


async def test_authorize_accepts_unknown_tokens_when_configured(start_node: NodeStarter) -> None:
    node = await start_node(station_admission=AdmissionPolicy.OPEN, accept_unknown_tokens=True)
    async with node.connect("AU-2") as station:
        await station.boot()
        answer = await station.result("Authorize", {"idTag": "NOBODY"})
    assert answer == {"idTagInfo": {"status": "Accepted"}}


# Notifications kept in the station log -------------------------------------------------------

LOGGED_NOTIFICATIONS = [
    pytest.param(
        "DataTransfer",
        {"vendorId": "com.example", "messageId": "hello", "data": '{"x": 1}'},
        {"status": "UnknownVendorId"},
        "data_transfer",
        {"vendorId": "com.example", "messageId": "hello"},
        id="DataTransfer",
    ),
    pytest.param(
        "DiagnosticsStatusNotification",
        {"status": "Uploaded"},
        {},
        "diagnostics",
        {"status": "Uploaded"},
        id="DiagnosticsStatusNotification",
    ),
    pytest.param(
        "FirmwareStatusNotification",
        {"status": "Installed"},
        {},
        "firmware",
        {"status": "Installed"},
        id="FirmwareStatusNotification",
    ),
    pytest.param(
        "SecurityEventNotification",
        {"type": "InvalidFirmwareSignature", "timestamp": "2024-05-01T10:00:00Z", "techInfo": "x"},
        {},
        "security",
        {"type": "InvalidFirmwareSignature", "techInfo": "x"},
        id="SecurityEventNotification",
    ),
    pytest.param(
        "LogStatusNotification",
        {"status": "Uploading", "requestId": 17},
        {},
        "diagnostics",
        {"status": "Uploading", "requestId": 17},
        id="LogStatusNotification",
    ),
    pytest.param(
        "SignedFirmwareStatusNotification",
        {"status": "InvalidSignature", "requestId": 5},
        {},
        "firmware",
        {"status": "InvalidSignature", "requestId": 5},
        id="SignedFirmwareStatusNotification",
    ),
    pytest.param(
        "SignCertificate",
        {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"},
        {"status": "Rejected"},
        "security",
        {},
        id="SignCertificate",
    ),
]


@pytest.mark.parametrize(("action", "payload", "answer", "kind", "details"), LOGGED_NOTIFICATIONS)
async def test_notifications_are_answered_validly_and_logged(
    open_node: Node,
    action: str,
    payload: dict[str, Any],
    answer: dict[str, Any],
    kind: str,
    details: dict[str, Any],
) -> None:
    async with open_node.connect("LOG-1") as station:
        await station.boot()
        got = await station.result(action, payload)
    assert got == answer
    assert_valid_answer(action, got)
    logged = await open_node.events("LOG-1", kind)
    assert len(logged) == 1
    assert logged[0].details is not None
    assert {key: logged[0].details.get(key) for key in details} == details


async def test_a_security_event_keeps_the_station_time_and_names_its_type(
    open_node: Node,
) -> None:
    async with open_node.connect("SEC-1") as station:
        await station.boot()
        await station.result(
            "SecurityEventNotification",
            {"type": "TamperDetectionActivated", "timestamp": "2024-05-01T10:00:00Z"},
        )
    (event,) = await open_node.events("SEC-1", "security")
    assert "TamperDetectionActivated" in event.summary
    assert event.occurred_at is not None
    assert iso(event.occurred_at) == "2024-05-01T10:00:00.000Z"


# Group commit --------------------------------------------------------------------------------


async def test_the_hot_path_shares_transactions_between_stations(open_node: Node) -> None:
    stations = 10
    messages_each = 5

    async def chatter(station: RawStation) -> None:
        for n in range(messages_each):
            if n % 2:
                await station.result("Heartbeat", {})
            else:
                value = "Charging" if n % 4 else "Available"
                await station.result("StatusNotification", status(1, value))

    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(open_node.connect(f"HOT-{i}")) for i in range(stations)
        ]
        for station in opened:
            await station.boot()
        committer = open_node.runtime.committer
        items, batches = committer.items, committer.batches
        await asyncio.gather(*(chatter(station) for station in opened))
        grown_items = committer.items - items
        grown_batches = committer.batches - batches
    # Heartbeats write nothing of their own (cpms.liveness); every status is one work.
    statuses_each = len(range(0, messages_each, 2))
    assert grown_items >= stations * statuses_each
    # Ten stations talking at once: some of their writes must have shared a commit.
    assert grown_batches < grown_items
