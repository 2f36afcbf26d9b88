"""Answers to the CALLs of an OCPP 2.0.1 station's life and transactions, over the 1.6 core.

Covers blocks B (BootNotification, Heartbeat), C (Authorize), E (TransactionEvent), G
(StatusNotification), I (the cost in TransactionEvent answers, and CostUpdated after them) and
J (MeterValues). Everything else a 2.0.1 station reports (device model, monitoring, firmware,
logs, smart charging, security, reservations, data transfer) is answered by
``ocpp_gateway.v201.reports``; ``handlers(services)`` merges both into one dispatch table.

Like 1.6, each handler is a thin shell: payload (already checked against the 2.0.1 schema) to
core request, core service, core outcome to the 2.0.1 answer. The transaction rules (seqNo,
replays, events out of order, offline) are the core's (``cpms.transaction_events``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from functools import partial
from typing import Any

from cpms.authorization import Authorization, AuthorizationStatus
from cpms.charging import MeterReport
from cpms.station_lifecycle import (
    BootReport,
    StatusReport,
)
from cpms.transaction_events import (
    TransactionEventOutcome,
    TransactionEventReport,
    record_transaction_event,
)
from ocpp_gateway.handler_base import HandlerBase, Payload, station_time
from ocpp_gateway.rpc import Call, OcppVersion
from ocpp_gateway.server import CallContext, Handler
from ocpp_gateway.services import StationServices
from ocpp_gateway.status_mapping import ocpi_status
from ocpp_gateway.v201 import reports
from ocpp_gateway.v201.meter_values import read_meter_values

__all__ = ["handlers", "id_token_info"]

logger = logging.getLogger("ocpp_gateway.v201")

_ID_TOKEN_STATUS = {
    AuthorizationStatus.ALLOWED: "Accepted",
    AuthorizationStatus.BLOCKED: "Blocked",
    AuthorizationStatus.EXPIRED: "Expired",
    AuthorizationStatus.NO_CREDIT: "NoCredit",
    AuthorizationStatus.NOT_ALLOWED: "Invalid",
    AuthorizationStatus.UNKNOWN: "Unknown",
}
GROUP_TOKEN_TYPE = "Central"
"""The IdTokenEnumType of the group tokens we hand out: our own central identifiers."""
_CONNECTOR_STATUSES = "v201.connector_statuses"
"""Where a connection remembers each connector's last status, by EVSE (``ConnectionState.memo``)."""
EVSE_STATUS_PRECEDENCE = ("Occupied", "Reserved", "Available", "Faulted", "Unavailable")
"""Which connector's status an EVSE shows: the first in this order any of its connectors has.

2.0.1 reports status per connector, OCPI per EVSE, and while one connector of an EVSE is in
use a station reports its others Unavailable: the EVSE is then in use, not inoperative. An
EVSE with one usable connector is usable.
"""
_SENT_COSTS = "v201.sent_costs"
"""Where a connection remembers the last cost it sent per transaction (``ConnectionState.memo``)."""


def id_token_info(authorization: Authorization) -> Payload:
    """The 2.0.1 ``IdTokenInfoType`` of a core authorization decision."""
    info: Payload = {"status": _ID_TOKEN_STATUS[authorization.status]}
    if authorization.group_id:
        info["groupIdToken"] = {"idToken": authorization.group_id[:36], "type": GROUP_TOKEN_TYPE}
    return info


def _precedence(status: str) -> int:
    try:
        return EVSE_STATUS_PRECEDENCE.index(status)
    except ValueError:  # a lenient station's own word: shown only when nothing else is known
        return len(EVSE_STATUS_PRECEDENCE)


def _cost(value: Decimal) -> float:
    # 2.0.1 totalCost is a JSON number; money is Decimal inside, rounded to cents outside.
    return float(value.quantize(Decimal("0.01")))


class _Handlers(HandlerBase):
    # B: Provisioning

    async def boot_notification(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        station = p["chargingStation"]
        modem = station.get("modem") or {}
        report = BootReport(
            vendor=station["vendorName"],
            model=station["model"],
            serial_number=station.get("serialNumber"),
            firmware_version=station.get("firmwareVersion"),
            iccid=modem.get("iccid"),
            imsi=modem.get("imsi"),
            reason=p["reason"],
        )
        return await self._boot(context, report)

    # C: Authorization

    async def authorize(self, context: CallContext, call: Call) -> Payload:
        decision = await self._authorize(context, call.payload["idToken"]["idToken"])
        return {"idTokenInfo": id_token_info(decision)}

    # G: Availability

    async def status_notification(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        by_evse: dict[int, dict[int, str]] = context.state.memo.setdefault(_CONNECTOR_STATUSES, {})
        connectors = by_evse.setdefault(p["evseId"], {})
        connectors[p["connectorId"]] = p["connectorStatus"]
        shown = min(connectors.values(), key=_precedence)
        report = StatusReport(
            evse_number=p["evseId"],
            connector_number=p["connectorId"],
            status=ocpi_status(OcppVersion.V201, shown),
            received_at=context.received_at,
            station_time=station_time(context, p["timestamp"], "timestamp"),
            details={"ocpp_status": p["connectorStatus"], "connector": p["connectorId"]},
        )
        self._seen(context)
        await self._record_status(context, report)
        return {}

    # J: Meter values

    async def meter_values(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        report = MeterReport(
            evse_number=p["evseId"],
            received_at=context.received_at,
            meter_values=read_meter_values(
                p["meterValue"],
                path="meterValue",
                lenient=context.state.lenient,
                station=context.station_id,
            ),
        )
        await self._record_meter_report(context, report)
        return {}

    # E: Transactions (and I: their cost)

    async def transaction_event(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        info = p["transactionInfo"]
        evse = p.get("evse") or {}
        id_token = p.get("idToken")
        report = TransactionEventReport(
            event_type=p["eventType"],
            transaction_id=info["transactionId"],
            seq_no=p["seqNo"],
            trigger_reason=p["triggerReason"],
            received_at=context.received_at,
            station_time=station_time(context, p["timestamp"], "timestamp"),
            evse_number=evse.get("id"),
            connector_number=evse.get("connectorId"),
            uid=id_token["idToken"] if id_token is not None else None,
            charging_state=info.get("chargingState"),
            stopped_reason=info.get("stoppedReason"),
            offline=bool(p.get("offline", False)),
            reservation_id=p.get("reservationId"),
            meter_values=read_meter_values(
                p.get("meterValue") or [],
                path="meterValue",
                lenient=context.state.lenient,
                station=context.station_id,
            ),
        )
        authorization = await self._authorize_if(context, report.uid)
        outcome = await self._write(
            partial(
                record_transaction_event,
                station_id=context.station_id,
                report=report,
                authorization=authorization,
                operator=self.services.authorizer.operator,
            )
        )
        if outcome.replayed:
            logger.info(
                "station %s: replayed TransactionEvent %s #%s, nothing changed",
                context.station_id,
                report.transaction_id,
                report.seq_no,
            )
        answer: Payload = {}
        if outcome.authorization is not None:
            answer["idTokenInfo"] = id_token_info(outcome.authorization)
        if outcome.ended:
            if outcome.total_cost is not None:
                answer["totalCost"] = _cost(outcome.total_cost)
            context.state.memo.get(_SENT_COSTS, {}).pop(report.transaction_id, None)
        else:
            self._send_running_cost(context, report.transaction_id, outcome)
        return answer

    @staticmethod
    def _send_running_cost(
        context: CallContext, transaction_id: str, outcome: TransactionEventOutcome
    ) -> None:
        """Tell the station the running cost once it changed (CostUpdated, after the answer)."""
        if outcome.total_cost is None:
            return
        cost = _cost(outcome.total_cost)
        sent: dict[str, float] = context.state.memo.setdefault(_SENT_COSTS, {})
        if sent.get(transaction_id) == cost:
            return
        sent[transaction_id] = cost
        context.follow_up("CostUpdated", {"totalCost": cost, "transactionId": transaction_id})

    def table(self) -> dict[str, Handler]:
        return {
            "Authorize": self.authorize,
            "BootNotification": self.boot_notification,
            "Heartbeat": self.heartbeat,
            "MeterValues": self.meter_values,
            "StatusNotification": self.status_notification,
            "TransactionEvent": self.transaction_event,
        }


def handlers(services: StationServices) -> Mapping[str, Handler]:
    """The dispatch table of every OCPP 2.0.1 action a station sends us."""
    table: dict[str, Any] = dict(reports.handlers(services))
    table.update(_Handlers(services).table())
    return table
