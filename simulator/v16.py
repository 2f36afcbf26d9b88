"""The OCPP 1.6J dialect of a simulated station.

How each step of ``simulator.station.Station`` is spelled in 1.6 (BootNotification,
StatusNotification per connector and for connector 0, Authorize, StartTransaction, MeterValues,
StopTransaction with its transaction data), and the answers to every call a 1.6 central system
may make, each with its effect: a remote start leads to a real transaction, unlock ends one,
reset reboots, a charging profile limits the power, a reservation reserves.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from typing import Any

from simulator.link import Reply
from simulator.ocppj import Call
from simulator.smart_charging import MAX, TX, TX_DEFAULT, Period, Profile
from simulator.station import MeterSample, Outlet, QueuedMessage, Station, Transaction
from simulator.templates import ConnectorSpec, Template

__all__ = ["Station16"]

_PURPOSES = {"ChargePointMaxProfile": MAX, "TxDefaultProfile": TX_DEFAULT, "TxProfile": TX}
_RECURRENCE = {"Daily": 86_400.0, "Weekly": 604_800.0}
_TRIGGERABLE = {
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
}


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_profile(doc: dict[str, Any]) -> Profile:
    """A 1.6 ``csChargingProfiles`` as the station's profile."""
    schedule = doc["chargingSchedule"]
    starts = schedule.get("startSchedule")
    kind = doc.get("chargingProfileKind", "Absolute")
    return Profile(
        id=int(doc["chargingProfileId"]),
        purpose=_PURPOSES[doc["chargingProfilePurpose"]],
        stack_level=int(doc.get("stackLevel", 0)),
        unit=schedule.get("chargingRateUnit", "A"),
        periods=tuple(
            Period(float(p["startPeriod"]), float(p["limit"]), p.get("numberPhases"))
            for p in schedule.get("chargingSchedulePeriod", [])
        ),
        starts=_parse_time(starts) if starts and kind != "Relative" else None,
        transaction_id=str(doc["transactionId"]) if "transactionId" in doc else None,
        recurring_s=_RECURRENCE.get(doc.get("recurrencyKind", "")) if kind == "Recurring" else None,
    )


class Station16(Station):
    """A station speaking OCPP 1.6J."""

    subprotocol = "ocpp1.6"
    version = "1.6"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.configuration: dict[str, tuple[str, bool]] = {
            "HeartbeatInterval": (str(int(self.heartbeat_interval)), False),
            "MeterValueSampleInterval": (str(int(self.meter_interval)), False),
            "MeterValuesSampledData": (
                "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC",
                False,
            ),
            "AuthorizeRemoteTxRequests": ("false", False),
            "LocalAuthorizeOffline": ("true", False),
            "ConnectionTimeOut": ("60", False),
            "NumberOfConnectors": (str(len(self.outlets)), True),
            "SupportedFeatureProfiles": (
                "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,"
                "RemoteTrigger",
                True,
            ),
            "ChargeProfileMaxStackLevel": ("10", True),
            "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),
        }
        self.local_list_version = 0

    def _outlet_layout(self, template: Template) -> list[tuple[ConnectorSpec, ...]]:
        return [(connector,) for evse in template.evses for connector in evse.connectors]

    # Reports -----------------------------------------------------------------------------

    def boot_payload(self) -> dict[str, Any]:
        return {
            "chargePointVendor": self.template.vendor,
            "chargePointModel": self.template.model,
            "chargePointSerialNumber": self.serial,
            "firmwareVersion": self.firmware,
            "meterType": "SIM-METER",
        }

    def status_messages(self, outlet: Outlet | None) -> list[tuple[str, dict[str, Any]]]:
        if outlet is None:
            operative = any(o.operative for o in self.outlets.values())
            status, connector_id = ("Available" if operative else "Unavailable"), 0
        else:
            status, connector_id = outlet.status, outlet.number
        return [
            (
                "StatusNotification",
                {
                    "connectorId": connector_id,
                    "errorCode": "NoError",
                    "status": status,
                    "timestamp": self.timestamp(self.now()),
                },
            )
        ]

    def authorize_payload(self, id_tag: str) -> dict[str, Any]:
        return {"idTag": id_tag}

    def authorized(self, answer: dict[str, Any]) -> bool:
        return answer.get("idTagInfo", {}).get("status") == "Accepted"

    def _meter_value(self, outlet: Outlet, sample: MeterSample) -> dict[str, Any]:
        context = sample.context
        values: list[dict[str, Any]] = [
            {
                "value": f"{sample.register_wh:.1f}",
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "location": "Outlet",
                "unit": "Wh",
            },
            {
                "value": f"{sample.flow.power_w:.1f}",
                "context": context,
                "measurand": "Power.Active.Import",
                "unit": "W",
            },
        ]
        phases = ("L1", "L2", "L3")[: sample.flow.phases] if sample.flow.phases else (None,)
        for phase in phases:
            current = {
                "value": f"{sample.flow.current_a:.2f}",
                "context": context,
                "measurand": "Current.Import",
                "unit": "A",
            }
            if phase is not None:
                current["phase"] = phase
            values.append(current)
        if sample.soc is not None and outlet.connector.is_dc:
            values.append(
                {
                    "value": f"{sample.soc:.0f}",
                    "context": context,
                    "measurand": "SoC",
                    "unit": "Percent",
                }
            )
        if sample.signed is not None:
            values.append(
                {
                    "value": sample.signed.ocmf,
                    "context": context,
                    "format": "SignedData",
                    "measurand": "Energy.Active.Import.Register",
                    "unit": "Wh",
                }
            )
        return {"timestamp": self.timestamp(sample.at), "sampledValue": values}

    def started(self, outlet: Outlet, tx: Transaction, sample: MeterSample) -> None:
        payload: dict[str, Any] = {
            "connectorId": outlet.number,
            "idTag": tx.id_tag,
            "meterStart": round(sample.register_wh),
            "timestamp": self.timestamp(sample.at),
        }
        if tx.reservation_id is not None:
            payload["reservationId"] = tx.reservation_id

        def answered(answer: dict[str, Any]) -> None:
            tx.server_id = answer.get("transactionId")
            if answer.get("idTagInfo", {}).get("status") != "Accepted" and outlet.transaction is tx:
                self.spawn(self.stop_transaction(outlet.number, "DeAuthorized"))

        self._enqueue(QueuedMessage("StartTransaction", lambda: payload, answered))

    def metered(self, outlet: Outlet, tx: Transaction, sample: MeterSample) -> None:
        value = self._meter_value(outlet, sample)
        self._enqueue(
            QueuedMessage(
                "MeterValues",
                lambda: {
                    "connectorId": outlet.number,
                    "transactionId": tx.server_id if tx.server_id is not None else -1,
                    "meterValue": [value],
                },
                reorderable=True,
            )
        )

    def ended(self, outlet: Outlet, tx: Transaction, sample: MeterSample, reason: str) -> None:
        end = self._meter_value(outlet, sample)
        payload: dict[str, Any] = {
            "idTag": tx.id_tag,
            "meterStop": round(sample.register_wh),
            "timestamp": self.timestamp(sample.at),
            "reason": reason,
            "transactionData": [end],
        }
        self._enqueue(
            QueuedMessage(
                "StopTransaction",
                lambda: (
                    payload | {"transactionId": tx.server_id if tx.server_id is not None else -1}
                ),
            )
        )

    # The central system's calls ----------------------------------------------------------

    async def handle(self, call: Call) -> Reply:
        handler = getattr(self, f"_on_{call.action}", None)
        if handler is None:
            raise NotImplementedError(call.action)
        result: Reply = await handler(call.payload)
        return result

    def _outlets_for(self, connector_id: int) -> list[Outlet]:
        if connector_id == 0:
            return list(self.outlets.values())
        outlet = self.outlets.get(connector_id)
        return [outlet] if outlet is not None else []

    async def _on_RemoteStartTransaction(self, p: dict[str, Any]) -> Reply:
        number = p.get("connectorId")
        outlet = self.outlets.get(number) if number else self.remote_start_outlet(p["idTag"])
        if outlet is None or outlet.transaction is not None or not outlet.operative:
            return Reply({"status": "Rejected"})
        if (
            outlet.reservation is not None
            and outlet.reservation.id_tag.lower() != p["idTag"].lower()
        ):
            return Reply({"status": "Rejected"})
        if "chargingProfile" in p:
            profile = read_profile(p["chargingProfile"])
            if profile.purpose != TX:
                return Reply({"status": "Rejected"})
            outlet.profiles.append(profile)

        async def start() -> None:
            asks = self.configuration["AuthorizeRemoteTxRequests"][0] == "true"
            await self.start_remotely(outlet, p["idTag"], authorize_first=asks)

        return Reply({"status": "Accepted"}, start)

    async def _on_RemoteStopTransaction(self, p: dict[str, Any]) -> Reply:
        return self.remote_stop(lambda tx: tx.server_id == p["transactionId"])

    async def _on_UnlockConnector(self, p: dict[str, Any]) -> Reply:
        outlet = self.outlets.get(p["connectorId"])
        if outlet is None:
            return Reply({"status": "NotSupported"})
        if outlet.transaction is not None:
            await self.stop_transaction(outlet.number, "UnlockCommand")
        if outlet.vehicle is not None:
            await self.unplug(outlet.number)
        return Reply({"status": "Unlocked"})

    async def _on_Reset(self, p: dict[str, Any]) -> Reply:
        reason = "HardReset" if p.get("type") == "Hard" else "SoftReset"

        async def reboot() -> None:
            await self.reboot(reason)

        return Reply({"status": "Accepted"}, reboot)

    async def _on_ChangeAvailability(self, p: dict[str, Any]) -> Reply:
        outlets = self._outlets_for(p["connectorId"])
        if not outlets:
            return Reply({"status": "Rejected"})
        status = self.change_availability(outlets, p["type"] == "Operative")
        if p["connectorId"] == 0:
            for action, payload in self.status_messages(None):
                self._enqueue(QueuedMessage(action, lambda payload=payload: payload, durable=False))
        return Reply({"status": status})

    async def _on_ChangeConfiguration(self, p: dict[str, Any]) -> Reply:
        key, value = p["key"], p["value"]
        if key not in self.configuration:
            return Reply({"status": "NotSupported"})
        if self.configuration[key][1]:
            return Reply({"status": "Rejected"})
        if key in ("HeartbeatInterval", "MeterValueSampleInterval", "ConnectionTimeOut"):
            try:
                seconds = int(value)
            except ValueError:
                return Reply({"status": "Rejected"})
            if seconds <= 0:
                return Reply({"status": "Rejected"})
            if key == "HeartbeatInterval":
                self.heartbeat_interval = float(seconds)
            elif key == "MeterValueSampleInterval":
                self.meter_interval = float(seconds)
        self.configuration[key] = (value, False)
        return Reply({"status": "Accepted"})

    async def _on_GetConfiguration(self, p: dict[str, Any]) -> Reply:
        # The intervals in force: the boot answer may have set the heartbeat's.
        self.configuration["HeartbeatInterval"] = (str(int(self.heartbeat_interval)), False)
        self.configuration["MeterValueSampleInterval"] = (str(int(self.meter_interval)), False)
        wanted = p.get("key") or list(self.configuration)
        known = [
            {"key": k, "readonly": self.configuration[k][1], "value": self.configuration[k][0]}
            for k in wanted
            if k in self.configuration
        ]
        unknown = [k for k in wanted if k not in self.configuration]
        answer: dict[str, Any] = {"configurationKey": known}
        if unknown:
            answer["unknownKey"] = unknown
        return Reply(answer)

    async def _on_ClearCache(self, p: dict[str, Any]) -> Reply:
        return Reply({"status": "Accepted"})

    async def _on_DataTransfer(self, p: dict[str, Any]) -> Reply:
        return Reply({"status": "UnknownVendorId"})

    async def _on_TriggerMessage(self, p: dict[str, Any]) -> Reply:
        requested = p["requestedMessage"]
        number = p.get("connectorId")
        if requested not in _TRIGGERABLE:
            return Reply({"status": "NotImplemented"})
        if number is not None and number != 0 and number not in self.outlets:
            return Reply({"status": "Rejected"})

        async def send() -> None:
            link = self.link
            if link is None:
                return
            if requested == "BootNotification":
                await self.send_boot(link, self.boot_payload())
            elif requested == "Heartbeat":
                await link.call("Heartbeat", {})
            elif requested == "StatusNotification":
                targets = [self.outlets[number]] if number else [None, *self.outlets.values()]
                for outlet in targets:
                    for action, payload in self.status_messages(outlet):
                        await link.call(action, payload)
            elif requested == "MeterValues":
                for outlet in [self.outlets[number]] if number else self.outlets.values():
                    sample = self.sample(outlet, "Trigger")
                    message: dict[str, Any] = {
                        "connectorId": outlet.number,
                        "meterValue": [self._meter_value(outlet, sample)],
                    }
                    if outlet.transaction is not None and outlet.transaction.server_id is not None:
                        message["transactionId"] = outlet.transaction.server_id
                    await link.call("MeterValues", message)
            elif requested == "FirmwareStatusNotification":
                await link.call("FirmwareStatusNotification", {"status": "Idle"})
            else:
                await link.call("DiagnosticsStatusNotification", {"status": "Idle"})

        return Reply({"status": "Accepted"}, send)

    async def _on_SetChargingProfile(self, p: dict[str, Any]) -> Reply:
        outlets = self._outlets_for(p["connectorId"])
        try:
            profile = read_profile(p["csChargingProfiles"])
        except (KeyError, ValueError):
            return Reply({"status": "Rejected"})
        if not outlets or (profile.purpose == MAX and p["connectorId"] != 0):
            return Reply({"status": "Rejected"})
        if profile.purpose == TX:
            if p["connectorId"] == 0 or outlets[0].transaction is None:
                return Reply({"status": "Rejected"})
            tx = outlets[0].transaction
            # 1.6 names the transaction by the CSMS's id; the station keeps its own.
            if profile.transaction_id is not None and profile.transaction_id != str(tx.server_id):
                return Reply({"status": "Rejected"})
            profile = dataclasses.replace(profile, transaction_id=tx.local_id)
        for outlet in outlets:
            self.limits_changed(outlet)
            outlet.profiles = [
                q
                for q in outlet.profiles
                if not (
                    q.id == profile.id
                    or (q.purpose == profile.purpose and q.stack_level == profile.stack_level)
                )
            ]
            outlet.profiles.append(profile)
        return Reply({"status": "Accepted"})

    async def _on_ClearChargingProfile(self, p: dict[str, Any]) -> Reply:
        number = p.get("connectorId")
        purpose = _PURPOSES.get(p.get("chargingProfilePurpose", ""))
        cleared = False
        for outlet in self._outlets_for(number) if number is not None else self.outlets.values():
            kept = []
            for profile in outlet.profiles:
                matches = (
                    (p.get("id") is None or profile.id == p["id"])
                    and (purpose is None or profile.purpose == purpose)
                    and (p.get("stackLevel") is None or profile.stack_level == p["stackLevel"])
                )
                if matches:
                    cleared = True
                else:
                    kept.append(profile)
            if len(kept) != len(outlet.profiles):
                self.limits_changed(outlet)
                outlet.profiles = kept
        return Reply({"status": "Accepted" if cleared else "Unknown"})

    async def _on_GetCompositeSchedule(self, p: dict[str, Any]) -> Reply:
        number = p["connectorId"]
        outlets = self._outlets_for(number)
        if not outlets:
            return Reply({"status": "Rejected"})
        outlet = outlets[0]
        unit = p.get("chargingRateUnit", "W")
        limit = self._limit(outlet)
        watts = limit if limit is not None else outlet.connector.max_power_w
        per_amp = outlet.connector.voltage_v * max(outlet.connector.phases, 1)
        value = watts if unit == "W" else watts / per_amp
        return Reply(
            {
                "status": "Accepted",
                "connectorId": number,
                "scheduleStart": self.timestamp(self.now()),
                "chargingSchedule": {
                    "duration": int(p["duration"]),
                    "chargingRateUnit": unit,
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(value, 1)}],
                },
            }
        )

    async def _on_ReserveNow(self, p: dict[str, Any]) -> Reply:
        outlet = self.outlets.get(p["connectorId"])
        if outlet is None:
            outlet = self.free_outlet() if p["connectorId"] == 0 else None
            if outlet is None:
                return Reply({"status": "Rejected" if p["connectorId"] else "Occupied"})
        refusal = self.reservation_refusal(outlet, p["reservationId"])
        if refusal is not None:
            return Reply({"status": refusal})
        self.reserve(outlet, p["reservationId"], p["idTag"], _parse_time(p["expiryDate"]))
        return Reply({"status": "Accepted"})

    async def _on_CancelReservation(self, p: dict[str, Any]) -> Reply:
        found = self.cancel_reservation(p["reservationId"])
        return Reply({"status": "Accepted" if found else "Rejected"})

    async def _on_SendLocalList(self, p: dict[str, Any]) -> Reply:
        self.local_list_version = int(p["listVersion"])
        return Reply({"status": "Accepted"})

    async def _on_GetLocalListVersion(self, p: dict[str, Any]) -> Reply:
        return Reply({"listVersion": self.local_list_version})

    async def _on_UpdateFirmware(self, p: dict[str, Any]) -> Reply:
        async def update() -> None:
            wait = (_parse_time(p["retrieveDate"]) - self.now()).total_seconds()
            await asyncio.sleep(max(0.0, min(wait, 60.0)))
            for status in ("Downloading", "Downloaded", "Installing"):
                if self.link is not None:
                    await self.link.call("FirmwareStatusNotification", {"status": status})
                await asyncio.sleep(0.5)
            self.firmware = f"{self.template.firmware}+{self.rng.randrange(100, 999)}"
            await self.reboot("Reboot")
            await self.booted.wait()
            if self.link is not None:
                await self.link.call("FirmwareStatusNotification", {"status": "Installed"})

        return Reply({}, update)

    async def _on_GetDiagnostics(self, p: dict[str, Any]) -> Reply:
        name = f"diagnostics-{self.id}-{self.now():%Y%m%d%H%M%S}.log"

        async def upload() -> None:
            for status in ("Uploading", "Uploaded"):
                if self.link is not None:
                    await self.link.call("DiagnosticsStatusNotification", {"status": status})
                await asyncio.sleep(0.5)

        return Reply({"fileName": name}, upload)
