"""The OCPP 2.0.1 dialect of a simulated station.

How each step of ``simulator.station.Station`` is spelled in 2.0.1: BootNotification with its
reason; a StatusNotification per connector of each EVSE (the 1.6 statuses the base keeps, mapped
to connector statuses: while one connector of an EVSE is occupied its others are Unavailable);
Authorize with an idToken; and one TransactionEvent stream per transaction (Started, Updated,
Ended), each numbered by its seqNo when queued and flagged ``offline`` when it happened while the
station was not connected, so a CSMS can order what the offline queue replays. A change of
charging state within a transaction (Charging, SuspendedEV, ...) is a TransactionEvent, not a
StatusNotification.

It answers the calls a 2.0.1 CSMS may make, each with its effect, over a small device model
(components and variables) for GetVariables, SetVariables and the reports. Where 2.0.1 differs
from the 1.6 habit, the station follows 2.0.1: UnlockConnector does not end an authorized
transaction (F05.FR.02), a BootNotification is triggered only while the boot is not yet
accepted (F06.FR.17), and Reset OnIdle waits until no transaction runs (Scheduled).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulator.link import Reply
from simulator.ocppj import Call
from simulator.signing import SIGNING_METHOD
from simulator.smart_charging import MAX, TX, TX_DEFAULT, Period, Profile, limit_w
from simulator.station import MeterSample, Outlet, QueuedMessage, Reservation, Station, Transaction

__all__ = ["Station201", "Variable", "read_profile"]

_CONNECTOR_STATUS = {
    "Available": "Available",
    "Preparing": "Occupied",
    "Charging": "Occupied",
    "SuspendedEV": "Occupied",
    "SuspendedEVSE": "Occupied",
    "Finishing": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
_CHARGING_STATE = {
    "Preparing": "EVConnected",
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
    "Finishing": "EVConnected",
}
_ENDINGS = {
    # 1.6 Reason: (triggerReason, stoppedReason). ReasonEnumType has no UnlockCommand.
    "Local": ("StopAuthorized", "Local"),
    "Remote": ("RemoteStop", "Remote"),
    "EVDisconnected": ("EVCommunicationLost", "EVDisconnected"),
    "UnlockCommand": ("UnlockCommand", "Other"),
    "SoftReset": ("ResetCommand", "ImmediateReset"),
    "HardReset": ("ResetCommand", "ImmediateReset"),
    "Reboot": ("AbnormalCondition", "Reboot"),
    "DeAuthorized": ("Deauthorized", "DeAuthorized"),
    "EmergencyStop": ("AbnormalCondition", "EmergencyStop"),
    "PowerLoss": ("AbnormalCondition", "PowerLoss"),
}
_PURPOSES = {"ChargingStationMaxProfile": MAX, "TxDefaultProfile": TX_DEFAULT, "TxProfile": TX}
_RECURRENCE = {"Daily": 86_400.0, "Weekly": 604_800.0}
_TRIGGERABLE = {
    "BootNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "StatusNotification",
    "TransactionEvent",
}
REPORT_ITEMS = 10
"""Variables per NotifyReport; a longer report is split (seqNo 0, 1, ...; tbc but on the last)."""
STEP_PAUSE = 0.3
"""Seconds between the steps of a firmware update or a log upload."""


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _fixed(payload: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: payload


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def read_profile(doc: dict[str, Any]) -> Profile:
    """A 2.0.1 ``ChargingProfileType`` as the station's profile (its first schedule)."""
    schedule = doc["chargingSchedule"][0]
    kind = doc["chargingProfileKind"]
    starts = schedule.get("startSchedule")
    return Profile(
        id=int(doc["id"]),
        purpose=_PURPOSES[doc["chargingProfilePurpose"]],
        stack_level=int(doc["stackLevel"]),
        unit=schedule["chargingRateUnit"],
        periods=tuple(
            Period(float(p["startPeriod"]), float(p["limit"]), p.get("numberPhases"))
            for p in schedule["chargingSchedulePeriod"]
        ),
        starts=_parse_time(starts) if starts and kind != "Relative" else None,
        transaction_id=doc.get("transactionId"),
        recurring_s=_RECURRENCE.get(doc.get("recurrencyKind", "")) if kind == "Recurring" else None,
    )


@dataclass(slots=True)
class Variable:
    """One variable of the station's device model (OCPP 2.0.1 Part 1, section 4)."""

    component: str
    name: str
    value: str = ""
    data_type: str = "string"
    """DataEnumType: ``string``, ``integer``, ``decimal``, ``boolean``, ``MemberList``, ..."""
    read_only: bool = False
    evse: int | None = None
    unit: str | None = None
    max_limit: float | None = None

    @property
    def monitorable(self) -> bool:
        return self.data_type in ("integer", "decimal")


class Station201(Station):
    """A station speaking OCPP 2.0.1."""

    subprotocol = "ocpp2.0.1"
    version = "2.0.1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.variables = self._device_model()
        self.monitors: dict[int, dict[str, Any]] = {}
        self.local_list_version = 0
        self.local_list: dict[str, dict[str, Any]] = {}
        self.network_profiles: dict[int, dict[str, Any]] = {}
        self.costs: dict[str, float] = {}
        """The last totalCost the CSMS gave, by transactionId (CostUpdated, TransactionEvent)."""
        self.firmware_status = "Idle"
        self.log_status = "Idle"
        self._token_types: dict[str, str] = {}
        self._charging_states: dict[str, str] = {}
        self._profile_docs: dict[int, tuple[int, dict[str, Any]]] = {}
        """Charging profiles as the CSMS sent them, with the evseId they were set for."""
        self._boot_reason = "PowerUp"
        self._next_boot_reason = "PowerUp"
        self._transaction_ended = asyncio.Event()

    def _device_model(self) -> list[Variable]:
        measurands = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC"
        signs = "true" if self.signer is not None else "false"
        model = [
            Variable(
                "ChargingStation", "AvailabilityState", data_type="OptionList", read_only=True
            ),
            Variable("ChargingStation", "Model", self.template.model, read_only=True),
            Variable("ChargingStation", "VendorName", self.template.vendor, read_only=True),
            Variable("OCPPCommCtrlr", "HeartbeatInterval", data_type="integer", unit="s"),
            Variable("SampledDataCtrlr", "TxUpdatedInterval", data_type="integer", unit="s"),
            Variable("SampledDataCtrlr", "TxStartedMeasurands", measurands, "MemberList"),
            Variable("SampledDataCtrlr", "TxUpdatedMeasurands", measurands, "MemberList"),
            Variable("SampledDataCtrlr", "TxEndedMeasurands", measurands, "MemberList"),
            Variable("SampledDataCtrlr", "SignReadings", signs, "boolean", read_only=True),
            Variable("AuthCtrlr", "AuthorizeRemoteStart", "false", "boolean"),
            Variable("AuthCtrlr", "LocalAuthorizeOffline", "true", "boolean"),
            Variable("LocalAuthListCtrlr", "Enabled", "true", "boolean", read_only=True),
            Variable("ReservationCtrlr", "Enabled", "true", "boolean", read_only=True),
            Variable("SmartChargingCtrlr", "Enabled", "true", "boolean", read_only=True),
            Variable("SmartChargingCtrlr", "RateUnit", "A,W", "MemberList", read_only=True),
            Variable("SmartChargingCtrlr", "ProfileStackLevel", "10", "integer", read_only=True),
            Variable("TxCtrlr", "EVConnectionTimeOut", "60", "integer", unit="s"),
            Variable("TxCtrlr", "StopTxOnEVSideDisconnect", "true", "boolean", read_only=True),
            Variable("TxCtrlr", "TxStartPoint", "PowerPathClosed", "MemberList", read_only=True),
            Variable("TxCtrlr", "TxStopPoint", "EVConnected,Authorized", "MemberList", True),
        ]
        for outlet in self.outlets.values():
            most = max(connector.max_power_w for connector in outlet.connectors)
            phases = max(connector.phases for connector in outlet.connectors)
            model += [
                Variable("EVSE", "AvailabilityState", "", "OptionList", True, outlet.number),
                Variable("EVSE", "Power", "", "decimal", True, outlet.number, "W", most),
                Variable("EVSE", "SupplyPhases", str(phases), "integer", True, outlet.number),
            ]
        return model

    # Reports -----------------------------------------------------------------------------

    def _boot_body(self, reason: str) -> dict[str, Any]:
        return {
            "reason": reason,
            "chargingStation": {
                "model": self.template.model,
                "vendorName": self.template.vendor,
                "serialNumber": self.serial,
                "firmwareVersion": self.firmware,
            },
        }

    def boot_payload(self) -> dict[str, Any]:
        # A new boot begins unless the last answer was Pending or Rejected (then it is a retry
        # of the same boot, with the same reason).
        if self.boot_status in (None, "Accepted"):
            self._boot_reason, self._next_boot_reason = self._next_boot_reason, "Unknown"
        return self._boot_body(self._boot_reason)

    def _connector_statuses(self, outlet: Outlet) -> list[str]:
        status = _CONNECTOR_STATUS.get(outlet.status, "Unavailable")
        return [
            "Unavailable" if status == "Occupied" and index != outlet.connector_index else status
            for index in range(len(outlet.connectors))
        ]

    def _status_notification(
        self, outlet: Outlet, connector_id: int, status: str
    ) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp(self.now()),
            "connectorStatus": status,
            "evseId": outlet.number,
            "connectorId": connector_id,
        }

    def status_messages(self, outlet: Outlet | None) -> list[tuple[str, dict[str, Any]]]:
        if outlet is None:
            return []  # 2.0.1 has no connector 0
        return [
            ("StatusNotification", self._status_notification(outlet, connector_id, status))
            for connector_id, status in enumerate(self._connector_statuses(outlet), 1)
        ]

    def set_status(self, outlet: Outlet, status: str) -> None:
        """Report the connectors whose 2.0.1 status changed, and a new charging state."""
        if outlet.status == status:
            return
        before = self._connector_statuses(outlet)
        outlet.status = status
        after = self._connector_statuses(outlet)
        for connector_id, (was, now) in enumerate(zip(before, after, strict=True), 1):
            if was != now:
                payload = self._status_notification(outlet, connector_id, now)
                self._enqueue(QueuedMessage("StatusNotification", _fixed(payload), durable=False))
        tx, state = outlet.transaction, _CHARGING_STATE.get(status)
        if tx is not None and state is not None and self._charging_states.get(tx.local_id) != state:
            self._charging_states[tx.local_id] = state
            self._event(
                outlet, tx, "Updated", "ChargingStateChanged", info={"chargingState": state}
            )

    def _id_token(self, id_tag: str) -> dict[str, Any]:
        return {"idToken": id_tag, "type": self._token_types.get(id_tag, "ISO14443")}

    def authorize_payload(self, id_tag: str) -> dict[str, Any]:
        return {"idToken": self._id_token(id_tag)}

    def authorized(self, answer: dict[str, Any]) -> bool:
        return answer.get("idTokenInfo", {}).get("status") == "Accepted"

    def _meter_value(self, outlet: Outlet, sample: MeterSample) -> dict[str, Any]:
        context = sample.context
        energy: dict[str, Any] = {
            "value": round(sample.register_wh, 1),
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unitOfMeasure": {"unit": "Wh"},
        }
        if sample.signed is not None:
            energy["signedMeterValue"] = {
                "signedMeterData": sample.signed.base64,
                "signingMethod": SIGNING_METHOD,
                "encodingMethod": "OCMF",
                "publicKey": sample.signed.public_key,
            }
        values = [
            energy,
            {
                "value": round(sample.flow.power_w, 1),
                "context": context,
                "measurand": "Power.Active.Import",
                "unitOfMeasure": {"unit": "W"},
            },
        ]
        phases = ("L1", "L2", "L3")[: sample.flow.phases] if sample.flow.phases else (None,)
        for phase in phases:
            current: dict[str, Any] = {
                "value": round(sample.flow.current_a, 2),
                "context": context,
                "measurand": "Current.Import",
                "unitOfMeasure": {"unit": "A"},
            }
            if phase is not None:
                current["phase"] = phase
            values.append(current)
        if sample.soc is not None and outlet.connector.is_dc:
            values.append(
                {
                    "value": round(sample.soc, 1),
                    "context": context,
                    "measurand": "SoC",
                    "location": "EV",
                    "unitOfMeasure": {"unit": "Percent"},
                }
            )
        return {"timestamp": self.timestamp(sample.at), "sampledValue": values}

    def _event(
        self,
        outlet: Outlet,
        tx: Transaction,
        event_type: str,
        trigger: str,
        *,
        sample: MeterSample | None = None,
        info: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Queue a TransactionEvent of ``tx``, numbered now and flagged if made offline."""
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": self.timestamp(sample.at if sample is not None else self.now()),
            "triggerReason": trigger,
            "seqNo": tx.next_seq_no(),
            "transactionInfo": {"transactionId": tx.local_id, **(info or {})},
            "evse": {"id": outlet.number, "connectorId": outlet.connector_index + 1},
            **(extra or {}),
        }
        if sample is not None:
            payload["meterValue"] = [self._meter_value(outlet, sample)]
        if not self.booted.is_set():
            payload["offline"] = True

        def answered(answer: dict[str, Any]) -> None:
            if answer.get("totalCost") is not None:
                self.costs[tx.local_id] = float(answer["totalCost"])
            token_info = answer.get("idTokenInfo")
            if (
                token_info is not None
                and token_info.get("status") != "Accepted"
                and outlet.transaction is tx
            ):
                self.spawn(self.stop_transaction(outlet.number, "DeAuthorized"))

        self._enqueue(
            QueuedMessage("TransactionEvent", _fixed(payload), answered, reorderable=True)
        )

    def started(self, outlet: Outlet, tx: Transaction, sample: MeterSample) -> None:
        # The base sets the outlet Charging right after; say so now, not in a second event.
        self._charging_states[tx.local_id] = "Charging"
        info: dict[str, Any] = {"chargingState": "Charging"}
        if tx.remote_start_id is not None:
            info["remoteStartId"] = tx.remote_start_id
        extra: dict[str, Any] = {"idToken": self._id_token(tx.id_tag)}
        if tx.reservation_id is not None:
            extra["reservationId"] = tx.reservation_id
        if sample.flow.phases:
            extra["numberOfPhasesUsed"] = sample.flow.phases
        self._event(outlet, tx, "Started", tx.trigger, sample=sample, info=info, extra=extra)

    def metered(self, outlet: Outlet, tx: Transaction, sample: MeterSample) -> None:
        self._event(outlet, tx, "Updated", "MeterValuePeriodic", sample=sample)

    def ended(self, outlet: Outlet, tx: Transaction, sample: MeterSample, reason: str) -> None:
        trigger, stopped = _ENDINGS.get(reason, ("AbnormalCondition", "Other"))
        self._charging_states.pop(tx.local_id, None)
        plugged = outlet.vehicle is not None and reason != "EVDisconnected"
        info = {
            "stoppedReason": stopped,
            "chargingState": "EVConnected" if plugged else "Idle",
            "timeSpentCharging": max(0, int((sample.at - tx.started_at).total_seconds())),
        }
        extra = {"idToken": self._id_token(tx.id_tag)} if reason == "Local" else {}
        self._event(outlet, tx, "Ended", trigger, sample=sample, info=info, extra=extra)
        self._transaction_ended.set()

    def reservation_ended(self, outlet: Outlet, reservation: Reservation, why: str) -> None:
        payload = {
            "reservationId": reservation.id,
            "reservationUpdateStatus": why if why in ("Expired", "Removed") else "Removed",
        }
        self._enqueue(QueuedMessage("ReservationStatusUpdate", _fixed(payload), durable=False))

    # The device model --------------------------------------------------------------------

    def _find(
        self, component: dict[str, Any], variable: dict[str, Any]
    ) -> tuple[Variable | None, str]:
        """The variable a request names, or None and why: UnknownComponent, UnknownVariable."""
        evse = component.get("evse", {}).get("id")
        mine = [v for v in self.variables if v.component == component["name"] and v.evse == evse]
        if not mine or component.get("instance") is not None:
            return None, "UnknownComponent"
        for candidate in mine:
            if candidate.name == variable["name"] and variable.get("instance") is None:
                return candidate, "Accepted"
        return None, "UnknownVariable"

    def _value(self, variable: Variable) -> str:
        """A variable's value now; some follow the station's state."""
        if variable.name == "HeartbeatInterval":
            return _seconds(self.heartbeat_interval)
        if variable.name == "TxUpdatedInterval":
            return _seconds(self.meter_interval)
        if variable.name == "AvailabilityState":
            if variable.evse is not None:
                return _CONNECTOR_STATUS.get(self.outlets[variable.evse].status, "Unavailable")
            operative = any(o.operative for o in self.outlets.values())
            return "Available" if operative else "Unavailable"
        if variable.name == "Power" and variable.evse is not None:
            flow = self.outlets[variable.evse].flow
            return f"{flow.power_w if flow is not None else 0.0:.1f}"
        return variable.value

    def _write(self, variable: Variable, value: str) -> str:
        """Set a variable (and what it governs); the SetVariableStatus."""
        if variable.read_only:
            return "Rejected"
        if variable.data_type == "integer":
            try:
                number = int(value)
            except ValueError:
                return "Rejected"
            # An interval of 0 would switch the reports off; the simulator keeps them.
            if number < 0 or (number == 0 and variable.unit == "s"):
                return "Rejected"
            if variable.name == "HeartbeatInterval":
                self.heartbeat_interval = float(number)
            elif variable.name == "TxUpdatedInterval":
                self.meter_interval = float(number)
        elif variable.data_type == "boolean":
            if value.lower() not in ("true", "false"):
                return "Rejected"
            value = value.lower()
        variable.value = value
        return "Accepted"

    def _flag(self, component: str, name: str) -> bool:
        variable, _ = self._find({"name": component}, {"name": name})
        return variable is not None and variable.value == "true"

    def _report_data(self, variable: Variable) -> dict[str, Any]:
        component: dict[str, Any] = {"name": variable.component}
        if variable.evse is not None:
            component["evse"] = {"id": variable.evse}
        characteristics: dict[str, Any] = {
            "dataType": variable.data_type,
            "supportsMonitoring": variable.monitorable,
        }
        if variable.unit is not None:
            characteristics["unit"] = variable.unit
        if variable.max_limit is not None:
            characteristics["maxLimit"] = variable.max_limit
        return {
            "component": component,
            "variable": {"name": variable.name},
            "variableAttribute": [
                {
                    "type": "Actual",
                    "value": self._value(variable),
                    "mutability": "ReadOnly" if variable.read_only else "ReadWrite",
                }
            ],
            "variableCharacteristics": characteristics,
        }

    async def _send_report(self, request_id: int, chosen: list[Variable]) -> None:
        parts = [chosen[i : i + REPORT_ITEMS] for i in range(0, len(chosen), REPORT_ITEMS)]
        for seq_no, part in enumerate(parts):
            if self.link is None:
                return
            await self.link.call(
                "NotifyReport",
                {
                    "requestId": request_id,
                    "generatedAt": self.timestamp(self.now()),
                    "seqNo": seq_no,
                    "tbc": seq_no < len(parts) - 1,
                    "reportData": [self._report_data(v) for v in part],
                },
            )

    # The CSMS's calls --------------------------------------------------------------------

    async def handle(self, call: Call) -> Reply:
        handler = getattr(self, f"_on_{call.action}", None)
        if handler is None:
            raise NotImplementedError(call.action)
        result: Reply = await handler(call.payload)
        return result

    async def _on_RequestStartTransaction(self, p: dict[str, Any]) -> Reply:
        id_tag = p["idToken"]["idToken"]
        evse_id = p.get("evseId")
        outlet = self.outlets.get(evse_id) if evse_id else self.remote_start_outlet(id_tag)
        if outlet is None or outlet.transaction is not None or not outlet.operative:
            return Reply({"status": "Rejected"})
        reservation = outlet.reservation
        if reservation is not None and reservation.id_tag.lower() != id_tag.lower():
            return Reply({"status": "Rejected"})
        profile = None
        if "chargingProfile" in p:
            try:
                profile = read_profile(p["chargingProfile"])
            except (KeyError, ValueError, IndexError):
                return Reply({"status": "Rejected"})
            if profile.purpose != TX:
                return Reply({"status": "Rejected"})
            self.limits_changed(outlet)
            outlet.profiles.append(profile)
            self._profile_docs[profile.id] = (outlet.number, p["chargingProfile"])
        self._token_types[id_tag] = p["idToken"]["type"]

        async def start() -> None:
            started = await self.start_remotely(
                outlet,
                id_tag,
                authorize_first=self._flag("AuthCtrlr", "AuthorizeRemoteStart"),
                remote_start_id=p["remoteStartId"],
            )
            if not started and profile is not None:
                outlet.profiles = [q for q in outlet.profiles if q is not profile]

        return Reply({"status": "Accepted"}, start)

    async def _on_RequestStopTransaction(self, p: dict[str, Any]) -> Reply:
        return self.remote_stop(lambda tx: tx.local_id == p["transactionId"])

    async def _on_UnlockConnector(self, p: dict[str, Any]) -> Reply:
        outlet = self.outlets.get(p["evseId"])
        if outlet is None or not _has_connector(outlet, p["connectorId"]):
            return Reply({"status": "UnknownConnector"})
        index = p["connectorId"] - 1
        if outlet.transaction is not None:
            return Reply({"status": "OngoingAuthorizedTransaction"})  # F05.FR.02
        if outlet.vehicle is not None and outlet.connector_index == index:
            await self.unplug(outlet.number)
        return Reply({"status": "Unlocked"})

    async def _on_Reset(self, p: dict[str, Any]) -> Reply:
        immediate = p["type"] == "Immediate"
        if p.get("evseId"):
            # An EVSE restarts on its own: its transaction ends, the station stays connected.
            outlet = self.outlets.get(p["evseId"])
            if outlet is None:
                return Reply({"status": "Rejected"})
            if outlet.transaction is not None and not immediate:
                return Reply({"status": "Scheduled"})

            async def reset_evse(number: int = outlet.number) -> None:
                await self.stop_transaction(number, "HardReset")

            return Reply({"status": "Accepted"}, reset_evse)
        busy = any(o.transaction is not None for o in self.outlets.values())

        async def reboot() -> None:
            while not immediate and any(o.transaction is not None for o in self.outlets.values()):
                self._transaction_ended.clear()
                await self._transaction_ended.wait()
            self._next_boot_reason = "RemoteReset"
            await self.reboot("HardReset" if immediate else "SoftReset")

        return Reply({"status": "Scheduled" if busy and not immediate else "Accepted"}, reboot)

    async def _on_ChangeAvailability(self, p: dict[str, Any]) -> Reply:
        evse = p.get("evse")
        if evse is None or evse["id"] == 0:
            outlets = list(self.outlets.values())
        else:
            outlet = self.outlets.get(evse["id"])
            if outlet is None or not _has_connector(outlet, evse.get("connectorId")):
                return Reply({"status": "Rejected"})
            outlets = [outlet]
        status = self.change_availability(outlets, p["operationalStatus"] == "Operative")
        return Reply({"status": status})

    async def _on_GetVariables(self, p: dict[str, Any]) -> Reply:
        results = []
        for item in p["getVariableData"]:
            result: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
            if "attributeType" in item:
                result["attributeType"] = item["attributeType"]
            variable, status = self._find(item["component"], item["variable"])
            if variable is not None and item.get("attributeType", "Actual") != "Actual":
                status = "NotSupportedAttributeType"
            result["attributeStatus"] = status
            if status == "Accepted" and variable is not None:
                result["attributeValue"] = self._value(variable)
            results.append(result)
        return Reply({"getVariableResult": results})

    async def _on_SetVariables(self, p: dict[str, Any]) -> Reply:
        results = []
        for item in p["setVariableData"]:
            result: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
            if "attributeType" in item:
                result["attributeType"] = item["attributeType"]
            variable, status = self._find(item["component"], item["variable"])
            if variable is not None:
                if item.get("attributeType", "Actual") != "Actual":
                    status = "NotSupportedAttributeType"
                else:
                    status = self._write(variable, item["attributeValue"])
            result["attributeStatus"] = status
            results.append(result)
        return Reply({"setVariableResult": results})

    async def _on_GetBaseReport(self, p: dict[str, Any]) -> Reply:
        base = p["reportBase"]
        if base == "ConfigurationInventory":
            chosen = [v for v in self.variables if not v.read_only]
        elif base == "SummaryInventory":
            chosen = [v for v in self.variables if v.name == "AvailabilityState"]
        else:
            chosen = list(self.variables)

        async def report() -> None:
            await self._send_report(p["requestId"], chosen)

        return Reply({"status": "Accepted"}, report)

    async def _on_GetReport(self, p: dict[str, Any]) -> Reply:
        wanted = p.get("componentVariable")
        chosen = [
            v
            for v in self.variables
            if wanted is None or any(_names(v, component_variable) for component_variable in wanted)
        ]
        criteria = set(p.get("componentCriteria") or ())
        if criteria and criteria <= {"Problem"}:
            chosen = []  # every component is active, available and enabled; none has a problem
        if not chosen:
            return Reply({"status": "EmptyResultSet"})

        async def report() -> None:
            await self._send_report(p["requestId"], chosen)

        return Reply({"status": "Accepted"}, report)

    async def _on_SetNetworkProfile(self, p: dict[str, Any]) -> Reply:
        self.network_profiles[p["configurationSlot"]] = p["connectionData"]
        return Reply({"status": "Accepted"})

    async def _on_ClearCache(self, p: dict[str, Any]) -> Reply:
        return Reply({"status": "Accepted"})

    async def _on_DataTransfer(self, p: dict[str, Any]) -> Reply:
        return Reply({"status": "UnknownVendorId"})

    async def _on_TriggerMessage(self, p: dict[str, Any]) -> Reply:
        requested = p["requestedMessage"]
        if requested not in _TRIGGERABLE:
            return Reply({"status": "NotImplemented"})
        outlets = list(self.outlets.values())
        connector_id = None
        if "evse" in p:
            outlet = self.outlets.get(p["evse"]["id"])
            connector_id = p["evse"].get("connectorId")
            if outlet is None or not _has_connector(outlet, connector_id):
                return Reply({"status": "Rejected"})
            outlets = [outlet]
        if requested == "BootNotification" and self.boot_status == "Accepted":
            return Reply({"status": "Rejected"})  # F06.FR.17
        running = [o for o in outlets if o.transaction is not None]
        if requested == "TransactionEvent" and not running:
            return Reply({"status": "Rejected"})

        async def send() -> None:
            if requested == "TransactionEvent":
                for outlet in running:
                    if outlet.transaction is not None:
                        sample = self.sample(outlet, "Trigger")
                        self._event(outlet, outlet.transaction, "Updated", "Trigger", sample=sample)
                return
            link = self.link
            if link is None:
                return
            if requested == "BootNotification":
                await self.send_boot(link, self._boot_body("Triggered"))
            elif requested == "Heartbeat":
                await link.call("Heartbeat", {})
            elif requested == "StatusNotification":
                for outlet in outlets:
                    for number, status in enumerate(self._connector_statuses(outlet), 1):
                        if connector_id is None or number == connector_id:
                            payload = self._status_notification(outlet, number, status)
                            await link.call("StatusNotification", payload)
            elif requested == "MeterValues":
                for outlet in outlets:
                    value = self._meter_value(outlet, self.sample(outlet, "Trigger"))
                    await link.call("MeterValues", {"evseId": outlet.number, "meterValue": [value]})
            elif requested == "FirmwareStatusNotification":
                await link.call("FirmwareStatusNotification", {"status": self.firmware_status})
            else:
                await link.call("LogStatusNotification", {"status": self.log_status})

        return Reply({"status": "Accepted"}, send)

    def _bound(self, profile_id: int) -> bool:
        """Whether a profile the CSMS set is still in force (a TxProfile ends with its tx)."""
        return any(q.id == profile_id for o in self.outlets.values() for q in o.profiles)

    async def _on_SetChargingProfile(self, p: dict[str, Any]) -> Reply:
        evse_id, doc = p["evseId"], p["chargingProfile"]
        try:
            profile = read_profile(doc)
        except (KeyError, ValueError, IndexError):
            return Reply({"status": "Rejected"})  # also ChargingStationExternalConstraints
        outlets = list(self.outlets.values()) if evse_id == 0 else []
        if evse_id in self.outlets:
            outlets = [self.outlets[evse_id]]
        if not outlets or (profile.purpose == MAX and evse_id != 0):
            return Reply({"status": "Rejected"})
        if profile.purpose == TX:
            tx = outlets[0].transaction
            if evse_id == 0 or tx is None or profile.transaction_id not in (None, tx.local_id):
                return Reply({"status": "Rejected"})
            profile = dataclasses.replace(profile, transaction_id=tx.local_id)
            doc = {**doc, "transactionId": tx.local_id}
        targets = {outlet.number for outlet in outlets}
        for outlet in self.outlets.values():
            self.limits_changed(outlet)
            # Profile ids are the station's; purpose and stack level are per EVSE.
            outlet.profiles = [
                q
                for q in outlet.profiles
                if q.id != profile.id
                and not (
                    outlet.number in targets
                    and q.purpose == profile.purpose
                    and q.stack_level == profile.stack_level
                )
            ]
        for outlet in outlets:
            outlet.profiles.append(profile)
        self._profile_docs[profile.id] = (evse_id, doc)
        return Reply({"status": "Accepted"})

    async def _on_GetChargingProfiles(self, p: dict[str, Any]) -> Reply:
        criterion = p["chargingProfile"]
        found: dict[int, list[dict[str, Any]]] = {}
        for profile_id, (evse_id, doc) in sorted(self._profile_docs.items()):
            if not self._bound(profile_id):
                continue
            if (
                (p.get("evseId") is None or evse_id == p["evseId"])
                and criterion.get("chargingProfilePurpose", doc["chargingProfilePurpose"])
                == doc["chargingProfilePurpose"]
                and criterion.get("stackLevel", doc["stackLevel"]) == doc["stackLevel"]
                and profile_id in criterion.get("chargingProfileId", [profile_id])
                and "CSO" in criterion.get("chargingLimitSource", ["CSO"])
            ):
                found.setdefault(evse_id, []).append(doc)
        if not found:
            return Reply({"status": "NoProfiles"})

        async def report() -> None:
            for index, (evse_id, docs) in enumerate(found.items()):
                if self.link is None:
                    return
                await self.link.call(
                    "ReportChargingProfiles",
                    {
                        "requestId": p["requestId"],
                        "chargingLimitSource": "CSO",
                        "evseId": evse_id,
                        "chargingProfile": docs,
                        "tbc": index < len(found) - 1,
                    },
                )

        return Reply({"status": "Accepted"}, report)

    async def _on_ClearChargingProfile(self, p: dict[str, Any]) -> Reply:
        profile_id = p.get("chargingProfileId")
        criteria = p.get("chargingProfileCriteria") or {}

        def matches(profile: Profile) -> bool:
            if profile_id is not None:
                return profile.id == profile_id
            evse_id = self._profile_docs.get(profile.id, (None, {}))[0]
            purpose = criteria.get("chargingProfilePurpose")
            return (
                criteria.get("evseId", evse_id) == evse_id
                and (purpose is None or _PURPOSES.get(purpose) == profile.purpose)
                and criteria.get("stackLevel", profile.stack_level) == profile.stack_level
            )

        cleared = set()
        for outlet in self.outlets.values():
            kept = [q for q in outlet.profiles if not matches(q)]
            if len(kept) != len(outlet.profiles):
                cleared |= {q.id for q in outlet.profiles if matches(q)}
                self.limits_changed(outlet)
                outlet.profiles = kept
        for gone in cleared:
            self._profile_docs.pop(gone, None)
        return Reply({"status": "Accepted" if cleared else "Unknown"})

    async def _on_GetCompositeSchedule(self, p: dict[str, Any]) -> Reply:
        evse_id, unit = p["evseId"], p.get("chargingRateUnit", "W")
        if evse_id != 0 and evse_id not in self.outlets:
            return Reply({"status": "Rejected"})
        outlet = self.outlets[evse_id or 1]
        connector = outlet.connector
        if evse_id == 0:
            # The station as a whole: what its EVSEs could give, under its maximum profile.
            watts: float = sum(
                max(c.max_power_w for c in o.connectors) for o in self.outlets.values()
            )
            cap = limit_w(
                [q for q in outlet.profiles if q.purpose == MAX],
                now=self.now(), voltage_v=connector.voltage_v, phases=connector.phases,
                transaction_id=None, tx_started=None,
            )  # fmt: skip
        else:
            watts, cap = connector.max_power_w, self._limit(outlet)
        if cap is not None:
            watts = min(watts, cap)
        value = watts if unit == "W" else watts / (connector.voltage_v * max(connector.phases, 1))
        return Reply(
            {
                "status": "Accepted",
                "schedule": {
                    "evseId": evse_id,
                    "duration": int(p["duration"]),
                    "scheduleStart": self.timestamp(self.now()),
                    "chargingRateUnit": unit,
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(value, 1)}],
                },
            }
        )

    async def _on_ReserveNow(self, p: dict[str, Any]) -> Reply:
        evse_id = p.get("evseId")
        if evse_id is not None:
            outlet = self.outlets.get(evse_id)
            if outlet is None:
                return Reply({"status": "Rejected"})
        else:
            outlet = self.free_outlet()
            if outlet is None:
                operative = any(o.operative for o in self.outlets.values())
                return Reply({"status": "Occupied" if operative else "Unavailable"})
        refusal = self.reservation_refusal(outlet, p["id"])
        if refusal is not None:
            return Reply({"status": refusal})
        if outlet.reservation is None:
            self.cancel_reservation(p["id"])  # the same reservation elsewhere moves here
        id_tag = p["idToken"]["idToken"]
        self._token_types[id_tag] = p["idToken"]["type"]
        self.reserve(outlet, p["id"], id_tag, _parse_time(p["expiryDateTime"]))
        return Reply({"status": "Accepted"})

    async def _on_CancelReservation(self, p: dict[str, Any]) -> Reply:
        found = self.cancel_reservation(p["reservationId"])
        return Reply({"status": "Accepted" if found else "Rejected"})

    async def _on_SendLocalList(self, p: dict[str, Any]) -> Reply:
        if p["updateType"] == "Full":
            self.local_list = {}
        for entry in p.get("localAuthorizationList", []):
            id_tag = entry["idToken"]["idToken"]
            if "idTokenInfo" in entry:
                self.local_list[id_tag] = entry["idTokenInfo"]
                self._token_types[id_tag] = entry["idToken"]["type"]
            else:
                self.local_list.pop(id_tag, None)
        self.local_list_version = int(p["versionNumber"])
        return Reply({"status": "Accepted"})

    async def _on_GetLocalListVersion(self, p: dict[str, Any]) -> Reply:
        return Reply({"versionNumber": self.local_list_version})

    async def _notify_firmware(self, status: str, request_id: int) -> None:
        self.firmware_status = status
        if self.link is not None:
            await self.link.call(
                "FirmwareStatusNotification", {"status": status, "requestId": request_id}
            )

    async def _on_UpdateFirmware(self, p: dict[str, Any]) -> Reply:
        request_id, firmware = p["requestId"], p["firmware"]

        async def wait_until(text: str | None) -> None:
            if text is not None:
                wait = (_parse_time(text) - self.now()).total_seconds()
                await asyncio.sleep(max(0.0, min(wait, 60.0)))

        async def update() -> None:
            await wait_until(firmware["retrieveDateTime"])
            for status in ("Downloading", "Downloaded"):
                await self._notify_firmware(status, request_id)
                await asyncio.sleep(STEP_PAUSE)
            await wait_until(firmware.get("installDateTime"))
            for status in ("Installing", "InstallRebooting"):
                await self._notify_firmware(status, request_id)
                await asyncio.sleep(STEP_PAUSE)
            self.firmware = f"{self.template.firmware}+{self.rng.randrange(100, 999)}"
            self._next_boot_reason = "FirmwareUpdate"
            await self.reboot("Reboot")
            await self.booted.wait()
            await self._notify_firmware("Installed", request_id)
            self.firmware_status = "Idle"

        return Reply({"status": "Accepted"}, update)

    async def _on_GetLog(self, p: dict[str, Any]) -> Reply:
        name = f"{p['logType'].lower()}-{self.id}-{self.now():%Y%m%d%H%M%S}.log"

        async def upload() -> None:
            for status in ("Uploading", "Uploaded"):
                self.log_status = status
                if self.link is not None:
                    await self.link.call(
                        "LogStatusNotification", {"status": status, "requestId": p["requestId"]}
                    )
                await asyncio.sleep(STEP_PAUSE)
            self.log_status = "Idle"

        return Reply({"status": "Accepted", "filename": name}, upload)

    async def _on_GetTransactionStatus(self, p: dict[str, Any]) -> Reply:
        wanted = p.get("transactionId")
        waiting = [
            item.payload()["transactionInfo"]["transactionId"]
            for item in self.queued_messages()
            if item.action == "TransactionEvent"
        ]
        answer: dict[str, Any] = {
            "messagesInQueue": any(wanted in (None, tx_id) for tx_id in waiting)
        }
        if wanted is not None:
            answer["ongoingIndicator"] = any(
                o.transaction is not None and o.transaction.local_id == wanted
                for o in self.outlets.values()
            )
        return Reply(answer)

    async def _on_CostUpdated(self, p: dict[str, Any]) -> Reply:
        self.costs[p["transactionId"]] = float(p["totalCost"])
        return Reply({})

    async def _on_SetVariableMonitoring(self, p: dict[str, Any]) -> Reply:
        results = []
        for item in p["setMonitoringData"]:
            variable, status = self._find(item["component"], item["variable"])
            result: dict[str, Any] = {
                key: item[key] for key in ("type", "severity", "component", "variable")
            }
            monitor_id = item.get("id")
            if variable is not None:
                if not variable.monitorable or (
                    monitor_id is not None and monitor_id not in self.monitors
                ):
                    status = "Rejected"
                else:
                    monitor_id = monitor_id or max(self.monitors, default=0) + 1
                    self.monitors[monitor_id] = {**item, "id": monitor_id}
                    result["id"] = monitor_id
            result["status"] = status
            results.append(result)
        return Reply({"setMonitoringResult": results})

    async def _on_ClearVariableMonitoring(self, p: dict[str, Any]) -> Reply:
        results = [
            {"id": i, "status": "Accepted" if self.monitors.pop(i, None) else "NotFound"}
            for i in p["id"]
        ]
        return Reply({"clearMonitoringResult": results})


def _has_connector(outlet: Outlet, connector_id: int | None) -> bool:
    """Whether ``connector_id`` (None: not named) is one of the EVSE's connectors."""
    return connector_id is None or 1 <= connector_id <= len(outlet.connectors)


def _names(variable: Variable, wanted: dict[str, Any]) -> bool:
    """Whether a GetReport ``componentVariable`` entry names ``variable``."""
    component = wanted["component"]
    evse = component.get("evse", {}).get("id")
    named = wanted.get("variable")
    return (
        component["name"] == variable.component
        and (evse is None or evse == variable.evse)
        and (named is None or named["name"] == variable.name)
    )
