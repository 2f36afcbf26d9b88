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
from collections.abc import Mapping
from decimal import Decimal

from cpms.authorization import Authorization, AuthorizationStatus
from cpms.charging import (
    MeterReport,
    StartRequest,
    StationStart,
    StationStop,
    StopRequest,
    start_transactions,
    stop_transactions,
)
from cpms.station_lifecycle import (
    BootReport,
    StatusReport,
)
from ocpp_gateway.handler_base import HandlerBase, Payload, station_time
from ocpp_gateway.rpc import Call, OcppVersion
from ocpp_gateway.server import CallContext, Handler
from ocpp_gateway.services import StationServices
from ocpp_gateway.status_mapping import ocpi_status
from ocpp_gateway.v16.meter_values import read_meter_values

__all__ = ["handlers", "id_tag_info"]

logger = logging.getLogger("ocpp_gateway.v16")


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


class _Handlers(HandlerBase):
    # Core profile

    async def authorize(self, context: CallContext, call: Call) -> Payload:
        decision = await self._authorize(context, call.payload["idTag"])
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
        return await self._boot(context, report)

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
            station_time=station_time(context, p.get("timestamp"), "timestamp"),
            error_code=None if error_code == "NoError" else error_code,
            details={"ocpp_status": p["status"], **details},
        )
        self._seen(context)
        await self._record_status(context, report)
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
        await self._record_meter_report(context, report)
        return {}

    async def start_transaction(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        request = StartRequest(
            evse_number=p["connectorId"],
            uid=p["idTag"],
            meter_start_wh=Decimal(p["meterStart"]),
            received_at=context.received_at,
            station_time=station_time(context, p["timestamp"], "timestamp"),
            reservation_id=p.get("reservationId"),
        )
        authorization = await self._authorize(context, p["idTag"])
        # Grouped: a reconnect storm replays thousands of starts within seconds.
        outcome = await self.services.committer.run_grouped(
            start_transactions,
            StationStart(
                context.station_id, request, authorization, self.services.authorizer.operator
            ),
        )
        if outcome.replayed:
            logger.info(
                "station %s: replayed StartTransaction, same transaction %s",
                context.station_id,
                outcome.transaction_id,
            )
        return {
            "transactionId": int(outcome.transaction_id),
            "idTagInfo": id_tag_info(authorization),
        }

    async def stop_transaction(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        request = StopRequest(
            transaction_id=str(p["transactionId"]),
            received_at=context.received_at,
            meter_stop_wh=Decimal(p["meterStop"]),
            station_time=station_time(context, p["timestamp"], "timestamp"),
            uid=p.get("idTag"),
            reason=p.get("reason"),
            meter_values=read_meter_values(
                p.get("transactionData") or [],
                path="transactionData",
                lenient=context.state.lenient,
                station=context.station_id,
            ),
        )
        # An empty idTag names nobody (some firmware sends "" rather than leaving it out).
        authorization = await self._authorize_if(context, request.uid or None)
        # Grouped, like starts: a reconnect storm replays two stops a station.
        outcome = await self.services.committer.run_grouped(
            stop_transactions, StationStop(context.station_id, request, authorization)
        )
        if not outcome.known:
            logger.warning(
                "station %s: StopTransaction for unknown transaction %s recorded",
                context.station_id,
                request.transaction_id,
            )
        if authorization is None:
            return {}
        return {"idTagInfo": id_tag_info(authorization)}

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
        await self._log(
            context,
            "security",
            f"security event {p['type']}" + (f": {p['techInfo']}" if p.get("techInfo") else ""),
            dict(p),
            occurred_at=station_time(context, p["timestamp"], "timestamp"),
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


def handlers(services: StationServices) -> Mapping[str, Handler]:
    """The dispatch table of OCPP 1.6 actions a station sends us."""
    return _Handlers(services).table()
