"""Answers to what an OCPP 2.0.1 station reports beyond boot, status and transactions.

``handlers(services)`` is the part of the 2.0.1 dispatch table for every station-to-CSMS message
except BootNotification, Heartbeat, StatusNotification, Authorize, TransactionEvent and
MeterValues (``ocpp_gateway.v201.handlers``). Each handler is a thin shell over a core service,
written through the group committer and answered once durable; payloads arrive already checked
against the 2.0.1 schema, and every answer is one the 2.0.1 response schema accepts.

- NotifyReport and NotifyMonitoringReport: the station's device model and monitors
  (``cpms.device_model``), part by part.
- NotifyEvent: each event to the station log (kind ``event``).
- ReservationStatusUpdate: an Expired or Removed reservation is ended
  (``cpms.reservations.end_reported_reservation``) and logged (kind ``reservation``).
- DataTransfer, FirmwareStatusNotification, LogStatusNotification, SecurityEventNotification
  and SignCertificate are the 1.6 handlers themselves: the 1.6 security extension is these
  2.0.1 messages backported, with the same fields and answers (UnknownVendorId, no
  certificate authority so Rejected), kept in the log as 1.6 keeps them.
- The rest are kept in the log with their payload (``_KEPT``): firmware publishing, customer
  information, display messages, and smart charging (charging profiles and limits, the EV's
  needs and schedule). We compute no charging schedules, so NotifyEVChargingNeeds is answered
  Rejected: K15.FR.03/04 reserve Accepted for a CSMS able to provide a schedule (it must then
  send one, K15.FR.07). NotifyEVChargingSchedule is Accepted: K16.FR.06/07 reject only a
  schedule outside the limits of one we sent, and we sent none. Get15118EVCertificate and
  GetCertificateStatus are answered Failed: no ISO 15118 certificate service or OCSP
  responder is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cpms.device_model import (
    Characteristics,
    ComponentVariable,
    ReportedAttribute,
    ReportedMonitor,
    ReportedVariable,
    store_monitoring_report,
    store_report,
)
from cpms.reservations import end_reported_reservation
from cpms.station_lifecycle import log_station_event
from cpms.unit_of_work import UnitOfWork
from ocpp_gateway.handler_base import HandlerBase, Payload, station_time
from ocpp_gateway.rpc import Call
from ocpp_gateway.server import CallContext, Handler
from ocpp_gateway.services import StationServices
from ocpp_gateway.v16 import handlers as v16_handlers

__all__ = ["SHARED_WITH_V16", "handlers"]

SHARED_WITH_V16 = (
    "DataTransfer",
    "FirmwareStatusNotification",
    "LogStatusNotification",
    "SecurityEventNotification",
    "SignCertificate",
)
"""Actions whose 2.0.1 handler is the 1.6 one (see the module docstring)."""

_RESERVATION_ENDS = {"Expired": True, "Removed": False}
"""ReservationUpdateStatusEnumType -> ``expired`` of ``end_reported_reservation``."""


# Reading payloads and labelling log entries ------------------------------------------------


def _address(component: Payload, variable: Payload) -> ComponentVariable:
    evse = component.get("evse") or {}
    return ComponentVariable(
        component=component["name"],
        component_instance=component.get("instance"),
        evse_id=evse.get("id"),
        connector_id=evse.get("connectorId"),
        variable=variable["name"],
        variable_instance=variable.get("instance"),
    )


def _on_evse(p: Payload) -> str:
    return f"EVSE {p['evseId']}" if p.get("evseId") else "the station"


def _count(items: Sequence[Any] | None, noun: str) -> str:
    n = len(items or ())
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _part(p: Payload) -> str:
    return f"part {p['seqNo']}" + (", more follows" if p.get("tbc") else ", the last")


# Messages kept in the log with their payload -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Kept:
    """A message whose only effect is an entry in the station's log, and its fixed answer."""

    kind: str
    summary: Callable[[Payload], str]
    answer: Payload = field(default_factory=dict)
    details: Callable[[Payload], Payload] = dict
    """What of the payload to keep (all of it, unless it holds bulky opaque data)."""


_KEPT: dict[str, _Kept] = {
    "PublishFirmwareStatusNotification": _Kept(
        "firmware", lambda p: f"publish firmware: {p['status']}"
    ),
    "NotifyCustomerInformation": _Kept(
        "customer_information",
        lambda p: f"customer information of request {p['requestId']} ({_part(p)})",
    ),
    "NotifyDisplayMessages": _Kept(
        "display_message",
        lambda p: (
            f"display messages of request {p['requestId']}: "
            + _count(p.get("messageInfo"), "message")
        ),
    ),
    "ReportChargingProfiles": _Kept(
        "smart_charging",
        lambda p: (
            f"charging profiles of request {p['requestId']} on {_on_evse(p)} "
            f"({p['chargingLimitSource']}): " + _count(p["chargingProfile"], "profile")
        ),
    ),
    "NotifyChargingLimit": _Kept(
        "smart_charging",
        lambda p: (
            f"charging limit of {p['chargingLimit']['chargingLimitSource']} on "
            + _on_evse(p)
            + (" (grid critical)" if p["chargingLimit"].get("isGridCritical") else "")
        ),
    ),
    "ClearedChargingLimit": _Kept(
        "smart_charging",
        lambda p: f"charging limit of {p['chargingLimitSource']} cleared on {_on_evse(p)}",
    ),
    "NotifyEVChargingNeeds": _Kept(
        "smart_charging",
        lambda p: (
            f"EV charging needs on {_on_evse(p)} "
            f"({p['chargingNeeds']['requestedEnergyTransfer']}): Rejected, no schedule is computed"
        ),
        answer={"status": "Rejected"},
    ),
    "NotifyEVChargingSchedule": _Kept(
        "smart_charging",
        lambda p: f"EV charging schedule on {_on_evse(p)}: Accepted",
        answer={"status": "Accepted"},
    ),
    "Get15118EVCertificate": _Kept(
        "security",
        lambda p: (
            f"Get15118EVCertificate ({p['action']}) Failed: no ISO 15118 certificate "
            "service is configured"
        ),
        answer={"status": "Failed", "exiResponse": ""},
        # The EXI request is kilobytes of base64 nobody here can read.
        details=lambda p: {k: v for k, v in p.items() if k != "exiRequest"},
    ),
    "GetCertificateStatus": _Kept(
        "security",
        lambda p: "GetCertificateStatus Failed: no OCSP responder is consulted",
        answer={"status": "Failed"},
    ),
}


class _Reports(HandlerBase):
    # The device model

    async def notify_report(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        report = [
            ReportedVariable(
                where=_address(item["component"], item["variable"]),
                attributes=[
                    ReportedAttribute(
                        type=attribute.get("type", "Actual"),
                        value=attribute.get("value"),
                        mutability=attribute.get("mutability", "ReadWrite"),
                        persistent=attribute.get("persistent", False),
                        constant=attribute.get("constant", False),
                    )
                    for attribute in item["variableAttribute"]
                ],
                characteristics=_characteristics(item.get("variableCharacteristics")),
            )
            for item in p.get("reportData") or []
        ]
        await self._write(
            partial(
                store_report,
                station_id=context.station_id,
                request_id=p["requestId"],
                seq_no=p["seqNo"],
                tbc=p.get("tbc", False),
                report_data=report,
                received_at=context.received_at,
            )
        )
        return {}

    async def notify_monitoring_report(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        monitors = [
            ReportedMonitor(
                monitor_id=monitoring["id"],
                where=_address(item["component"], item["variable"]),
                type=monitoring["type"],
                value=float(monitoring["value"]),
                severity=monitoring["severity"],
                transaction_only=monitoring["transaction"],
            )
            for item in p.get("monitor") or []
            for monitoring in item["variableMonitoring"]
        ]
        await self._write(
            partial(
                store_monitoring_report,
                station_id=context.station_id,
                request_id=p["requestId"],
                seq_no=p["seqNo"],
                tbc=p.get("tbc", False),
                monitors=monitors,
                received_at=context.received_at,
            )
        )
        return {}

    # Into the log

    async def notify_event(self, context: CallContext, call: Call) -> Payload:
        entries = []
        for index, event in enumerate(call.payload["eventData"]):
            where = _address(event["component"], event["variable"])
            summary = f"{event['trigger']} {where.label} = {event['actualValue']}"
            if event.get("cleared"):
                summary += " (cleared)"
            if event.get("techInfo"):
                summary += f": {event['techInfo']}"
            at = station_time(context, event["timestamp"], f"eventData[{index}].timestamp")
            entries.append((summary, at, dict(event)))

        async def work(uow: UnitOfWork) -> None:  # one write for the whole part
            for summary, at, details in entries:
                log_station_event(
                    uow,
                    context.station_id,
                    "event",
                    summary,
                    received_at=context.received_at,
                    occurred_at=at,
                    details=details,
                )

        await self._write(work)
        return {}

    def _kept(self, kept: _Kept) -> Handler:
        async def handle(context: CallContext, call: Call) -> Payload:
            p = call.payload
            await self._log(context, kept.kind, kept.summary(p), kept.details(p))
            return dict(kept.answer)

        return handle

    # Reservations

    async def reservation_status_update(self, context: CallContext, call: Call) -> Payload:
        p = call.payload
        reservation_id, status = p["reservationId"], p["reservationUpdateStatus"]
        expired = _RESERVATION_ENDS.get(status)

        async def work(uow: UnitOfWork) -> None:
            if expired is None:  # an unknown status a lenient station may send
                outcome = "not a status that ends a reservation: nothing changed"
            else:
                ended = await end_reported_reservation(
                    uow, context.station_id, reservation_id, now=context.received_at,
                    expired=expired,
                )  # fmt: skip
                outcome = (
                    f"ended ({ended.status})"
                    if ended is not None
                    else "no live reservation of this station has that id: nothing to end"
                )
            log_station_event(
                uow,
                context.station_id,
                "reservation",
                f"reservation {reservation_id} {status}: {outcome}",
                received_at=context.received_at,
                details=dict(p),
            )

        await self._write(work)
        return {}

    def table(self) -> dict[str, Handler]:
        v16 = v16_handlers(self.services)
        table: dict[str, Handler] = {action: v16[action] for action in SHARED_WITH_V16}
        table |= {action: self._kept(kept) for action, kept in _KEPT.items()}
        table |= {
            "NotifyEvent": self.notify_event,
            "NotifyMonitoringReport": self.notify_monitoring_report,
            "NotifyReport": self.notify_report,
            "ReservationStatusUpdate": self.reservation_status_update,
        }
        return table


def _characteristics(given: Payload | None) -> Characteristics | None:
    if given is None:
        return None
    low, high = given.get("minLimit"), given.get("maxLimit")
    return Characteristics(
        data_type=given["dataType"],
        supports_monitoring=given["supportsMonitoring"],
        unit=given.get("unit"),
        min_limit=float(low) if low is not None else None,
        max_limit=float(high) if high is not None else None,
        values_list=given.get("valuesList"),
    )


def handlers(services: StationServices) -> dict[str, Handler]:
    """The 2.0.1 actions a station sends us beyond boot, status and transactions."""
    return _Reports(services).table()
