"""Answers to every CALL an OCPP 1.6 station may send, each a thin shell over a core service.

Payloads reach a handler already checked against the 1.6 schema (``ocpp_gateway.validation``);
a handler turns the payload into a core request, runs it (hot-path writes through the group
committer, answered once durable) and turns the outcome into the 1.6 answer.

Covered: Core (Authorize, BootNotification, DataTransfer, Heartbeat, MeterValues,
StartTransaction, StatusNotification, StopTransaction), Firmware Management
(DiagnosticsStatusNotification, FirmwareStatusNotification) and from the security extension
SecurityEventNotification, SignedFirmwareStatusNotification, LogStatusNotification and
SignCertificate (refused: no certificate authority is configured).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from cpms.authorization import Authorization, AuthorizationStatus
from cpms.charging import (
    MeterReport,
    StartRequest,
    StopRequest,
    record_meter_values,
    start_transaction,
    stop_transaction,
)
from cpms.station_lifecycle import (
    BootReport,
    BootStatus,
    StatusReport,
    load_station,
    log_station_event,
    record_boot,
    record_heartbeat,
    record_status,
)
from cpms.unit_of_work import UnitOfWork
from ocpp_gateway.rpc import Call, OcppVersion
from ocpp_gateway.server import CallContext, Handler
from ocpp_gateway.services import StationServices
from ocpp_gateway.status_mapping import ocpi_status
from ocpp_gateway.timestamps import format_timestamp, parse_timestamp
from ocpp_gateway.v16.meter_values import read_meter_values

__all__ = ["handlers", "id_tag_info"]

logger = logging.getLogger("ocpp_gateway.v16")

Payload = dict[str, Any]
T = TypeVar("T")

_ID_TAG_STATUS = {
    AuthorizationStatus.ALLOWED: "Accepted",
    AuthorizationStatus.BLOCKED: "Blocked",
    AuthorizationStatus.EXPIRED: "Expired",
    AuthorizationStatus.NO_CREDIT: "Blocked",
    AuthorizationStatus.NOT_ALLOWED: "Invalid",
    AuthorizationStatus.UNKNOWN: "Invalid",
}


def id_tag_info(authorization: Authorization) -> Payload:
    """The 1.6 ``IdTagInfo`` of a core authorization decision."""
    info: Payload = {"status": _ID_TAG_STATUS[authorization.status]}
    if authorization.group_id:
        info["parentIdTag"] = authorization.group_id[:20]
    return info


def _time(context: CallContext, text: str | None, path: str) -> datetime | None:
    if text is None:
        return None
    return parse_timestamp(text, path=path, lenient=context.state.lenient)


class _Handlers:
    def __init__(self, services: StationServices) -> None:
        self.services = services

    async def _write(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        return await self.services.committer.run(work)

    async def _log(
        self, context: CallContext, kind: str, summary: str, details: Payload | None = None
    ) -> None:
        await self._write(
            lambda uow: _logged(
                uow, context.station_id, kind, summary, context.received_at, details
            )
        )

    # Core profile

    async def authorize(self, context: CallContext, call: Call) -> Payload:
        async with self.services.uow() as uow:
            # The eMSP asked in real time wants the location (OCPI LocationReferences).
            station = await load_station(uow, context.station_id)
            decision = await self.services.authorizer.authorize(
                uow, call.payload["idTag"], location_id=station.location_id
            )
        return {"idTagInfo": id_tag_info(decision)}

    async def boot_notification(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        report = BootReport(
            vendor=p["chargePointVendor"],
            model=p["chargePointModel"],
            serial_number=p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber"),
            firmware_version=p.get("firmwareVersion"),
            iccid=p.get("iccid"),
            imsi=p.get("imsi"),
            meter_type=p.get("meterType"),
            meter_serial_number=p.get("meterSerialNumber"),
        )
        decision = await self._write(
            partial(
                record_boot,
                station_id=context.station_id,
                report=report,
                received_at=context.received_at,
                heartbeat_interval=self.services.heartbeat_interval,
            )
        )
        context.state.boot_status = decision.status.value
        if decision.status is not BootStatus.ACCEPTED:
            logger.info("station %s: boot answered %s", context.station_id, decision.status)
        return {
            "status": decision.status.value,
            "currentTime": format_timestamp(decision.current_time),
            "interval": decision.interval,
        }

    async def heartbeat(self, context: CallContext, call: Call) -> Payload:
        now = await self._write(
            partial(
                record_heartbeat, station_id=context.station_id, received_at=context.received_at
            )
        )
        return {"currentTime": format_timestamp(now)}

    async def status_notification(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        error_code = p["errorCode"]
        details = {
            key: p[key] for key in ("info", "vendorId", "vendorErrorCode") if p.get(key) is not None
        }
        report = StatusReport(
            evse_number=p["connectorId"],
            status=ocpi_status(OcppVersion.V16, p["status"]),
            received_at=context.received_at,
            station_time=_time(context, p.get("timestamp"), "timestamp"),
            error_code=None if error_code == "NoError" else error_code,
            details={"ocpp_status": p["status"], **details},
        )
        await self._write(partial(record_status, station_id=context.station_id, report=report))
        return {}

    async def meter_values(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        transaction_id = p.get("transactionId")
        report = MeterReport(
            evse_number=p["connectorId"],
            received_at=context.received_at,
            transaction_id=str(transaction_id) if transaction_id is not None else None,
            meter_values=read_meter_values(
                p["meterValue"],
                path="meterValue",
                lenient=context.state.lenient,
                station=context.station_id,
            ),
        )
        await self._write(
            partial(record_meter_values, station_id=context.station_id, report=report)
        )
        return {}

    async def start_transaction(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        request = StartRequest(
            evse_number=p["connectorId"],
            uid=p["idTag"],
            meter_start_wh=Decimal(p["meterStart"]),
            received_at=context.received_at,
            station_time=_time(context, p["timestamp"], "timestamp"),
            reservation_id=p.get("reservationId"),
        )
        outcome = await self._write(
            partial(
                start_transaction,
                station_id=context.station_id,
                request=request,
                authorizer=self.services.authorizer,
            )
        )
        if outcome.replayed:
            logger.info(
                "station %s: replayed StartTransaction, same transaction %s",
                context.station_id,
                outcome.transaction_id,
            )
        return {
            "transactionId": int(outcome.transaction_id),
            "idTagInfo": id_tag_info(outcome.authorization),
        }

    async def stop_transaction(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        request = StopRequest(
            transaction_id=str(p["transactionId"]),
            received_at=context.received_at,
            meter_stop_wh=Decimal(p["meterStop"]),
            station_time=_time(context, p["timestamp"], "timestamp"),
            uid=p.get("idTag"),
            reason=p.get("reason"),
            meter_values=read_meter_values(
                p.get("transactionData") or [],
                path="transactionData",
                lenient=context.state.lenient,
                station=context.station_id,
            ),
        )
        outcome = await self._write(
            partial(
                stop_transaction,
                station_id=context.station_id,
                request=request,
                authorizer=self.services.authorizer,
            )
        )
        if not outcome.known:
            logger.warning(
                "station %s: StopTransaction for unknown transaction %s recorded",
                context.station_id,
                request.transaction_id,
            )
        if outcome.authorization is None:
            return {}
        return {"idTagInfo": id_tag_info(outcome.authorization)}

    async def data_transfer(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        await self._log(
            context,
            "data_transfer",
            f"DataTransfer from vendor {p['vendorId']!r} (messageId {p.get('messageId')!r})",
            dict(p),
        )
        # No vendor extensions are installed; OCPP's answer for that is UnknownVendorId.
        return {"status": "UnknownVendorId"}

    # Firmware management and the security extension: progress reports, kept in the log

    def _status_report(self, kind: str, title: str) -> Handler:
        async def handle(context: CallContext, call: Call) -> Payload:
            status = call.payload.get("status", "?")
            await self._log(context, kind, f"{title}: {status}", dict(call.payload))
            return {}

        return handle

    async def security_event(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        await self._write(
            lambda uow: _logged(
                uow,
                context.station_id,
                "security",
                f"security event {p['type']}" + (f": {p['techInfo']}" if p.get("techInfo") else ""),
                context.received_at,
                dict(p),
                occurred_at=_time(context, p["timestamp"], "timestamp"),
            )
        )
        return {}

    async def sign_certificate(self, context: CallContext, call: Call) -> Payload:
        await self._log(
            context,
            "security",
            "SignCertificate refused: no certificate authority is configured",
            {"certificateType": call.payload.get("certificateType")},
        )
        return {"status": "Rejected"}

    def table(self) -> dict[str, Handler]:
        return {
            "Authorize": self.authorize,
            "BootNotification": self.boot_notification,
            "DataTransfer": self.data_transfer,
            "DiagnosticsStatusNotification": self._status_report("diagnostics", "diagnostics"),
            "FirmwareStatusNotification": self._status_report("firmware", "firmware"),
            "Heartbeat": self.heartbeat,
            "LogStatusNotification": self._status_report("diagnostics", "log upload"),
            "MeterValues": self.meter_values,
            "SecurityEventNotification": self.security_event,
            "SignCertificate": self.sign_certificate,
            "SignedFirmwareStatusNotification": self._status_report("firmware", "signed firmware"),
            "StartTransaction": self.start_transaction,
            "StatusNotification": self.status_notification,
            "StopTransaction": self.stop_transaction,
        }


async def _logged(
    uow: UnitOfWork,
    station_id: str,
    kind: str,
    summary: str,
    received_at: datetime,
    details: Payload | None,
    *,
    occurred_at: datetime | None = None,
) -> None:
    log_station_event(
        uow,
        station_id,
        kind,
        summary,
        received_at=received_at,
        occurred_at=occurred_at,
        details=details,
    )


def handlers(services: StationServices) -> Mapping[str, Handler]:
    """The dispatch table of OCPP 1.6 actions a station sends us."""
    return _Handlers(services).table()
