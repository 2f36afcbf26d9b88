"""A charging preference accepted mid-session bills the rest of the session with its tariff.

A real node, a raw OCPP 1.6 station charging for the eMSP peer's card on an EVSE that takes
charging preferences and lists a REGULAR tariff ("REG", 40/kWh) and a PROFILE_CHEAP one
("CHEAP", 10/kWh). The session starts with REG; mid-session the eMSP PUTs
ChargingPreferences CHEAP (ACCEPTED), later REGULAR again. The energy before the first PUT is
billed with REG, after it with CHEAP, after the second with REG: the running Session (GET by
the eMSP) and the CDR carry periods with each ``tariff_id``, the CDR lists both tariffs, the
running cost is the CDR's, and the total is the sum of each period's energy at its own
tariff's price. A preference whose tariff is the one in force changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from e2e.ocpp16.node import iso
from ocpi_models import check
from ocpi_peer import EmspPeer
from ocpi_support import cpo_url, register_directly
from raw_station import RawStation, raw_station
from sqlalchemy import select

from cpms.documents import format_datetime
from cpms.locations import assign_tariffs, change_evse, import_locations
from cpms.model import Session, utcnow
from cpms.runtime import Runtime
from cpms.stations import create_station
from cpms.tariffs import import_tariffs
from cpms.tokens import put_partner_token

from support import EXAMPLES

CARD = "PREF-CARD"
EVSE = "CP1-1"
PRICES = {"REG": Decimal("40.00"), "CHEAP": Decimal("10.00")}
"""Per kWh. Dear, so the few Wh a station can believably add in a second or two (time after
the PUT is real time) make a difference of cents."""
STEP_S = 2.0
"""Seconds of charging after each preference (10 Wh: 18 kW, below the connector's 22 kW)."""


def tariff(tariff_id: str, kind: str) -> dict[str, Any]:
    return {
        "country_code": "DE",
        "party_id": "ALL",
        "id": tariff_id,
        "currency": "EUR",
        "type": kind,
        "elements": [
            {
                "price_components": [
                    {"type": "ENERGY", "price": float(PRICES[tariff_id]), "step_size": 1}
                ]
            }
        ],
        "last_updated": "2026-01-01T00:00:00Z",
    }


@dataclass
class Charging:
    """A session running on connector 1 for the peer's card."""

    runtime: Runtime
    peer: EmspPeer
    station: RawStation
    transaction_id: int
    session_id: str

    async def meter(self, register_wh: int) -> str:
        """Send a reading taken now; return its timestamp."""
        now = iso(utcnow())
        payload = {
            "connectorId": 1,
            "transactionId": self.transaction_id,
            "meterValue": [
                {
                    "timestamp": now,
                    "sampledValue": [{"value": str(register_wh), "unit": "Wh"}],
                }
            ],
        }
        assert await self.station.result("MeterValues", payload) == {}
        return now

    async def prefer(self, profile: str) -> str:
        url = f"{cpo_url(self.runtime, 'sessions')}/{self.session_id}/charging_preferences"
        status, envelope, _ = await self.peer.call("PUT", url, body={"profile_type": profile})
        assert (status, envelope["status_code"]) == (200, 1000), envelope
        return str(envelope["data"])

    async def served(self, module: str) -> dict[str, Any]:
        """The session or its CDR as the eMSP reads them from us."""
        query = "?date_from=2000-01-01T00:00:00Z" if module == "sessions" else ""
        status, envelope, _ = await self.peer.call("GET", cpo_url(self.runtime, module) + query)
        assert (status, envelope["status_code"]) == (200, 1000), envelope
        [item] = [i for i in envelope["data"] if self.session_id in (i["id"], i.get("session_id"))]
        return dict(item)

    async def stored(self) -> Session:
        async with self.runtime.uow() as uow:
            session = await uow.session.scalar(select(Session).where(Session.id == self.session_id))
        assert session is not None
        return session


@pytest.fixture
async def charging(runtime: Runtime, emsp_peer: EmspPeer) -> AsyncIterator[Charging]:
    uow = runtime.uow
    partner_id = await register_directly(runtime, emsp_peer)
    location = json.loads((EXAMPLES / "location_example.json").read_text())
    location["id"] = "SITE"
    del location["evses"]
    await import_locations(uow(), [location])
    await create_station(uow(), "CP1", location_id="SITE")
    await import_tariffs(uow(), [tariff("REG", "REGULAR"), tariff("CHEAP", "PROFILE_CHEAP")])
    token = {
        "country_code": emsp_peer.country_code,
        "party_id": emsp_peer.party_id,
        "uid": CARD,
        "type": "RFID",
        "contract_id": f"DE-EMS-{CARD}",
        "issuer": emsp_peer.name,
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": format_datetime(utcnow()),
    }
    await put_partner_token(
        uow(),
        partner_id,
        token,
        country_code=emsp_peer.country_code,
        party_id=emsp_peer.party_id,
        uid=CARD,
        type_="RFID",
    )
    async with raw_station(runtime.ocpp_port, "CP1") as station:
        await station.boot()
        await station.result(
            "StatusNotification", {"connectorId": 1, "status": "Available", "errorCode": "NoError"}
        )
        await change_evse(uow(), "SITE", EVSE, {"capabilities": ["CHARGING_PREFERENCES_CAPABLE"]})
        await assign_tariffs(uow(), "SITE", EVSE, "1", ["REG", "CHEAP"])
        answer = await station.result(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": CARD,
                "meterStart": 0,
                "timestamp": iso(utcnow() - timedelta(hours=1)),
            },
        )
        assert answer["idTagInfo"]["status"] == "Accepted", answer
        transaction_id = int(answer["transactionId"])
        async with uow() as unit:
            session_id = await unit.session.scalar(
                select(Session.id).where(Session.transaction_id == str(transaction_id))
            )
        assert session_id is not None
        yield Charging(runtime, emsp_peer, station, transaction_id, session_id)


def priced(periods: list[dict[str, Any]]) -> Decimal:
    """What the periods cost at each one's own tariff: energy x that tariff's price."""
    total = Decimal(0)
    for period in periods:
        [energy] = [d["volume"] for d in period["dimensions"] if d["type"] == "ENERGY"]
        total += Decimal(str(energy)) * PRICES[period["tariff_id"]]
    return total


async def test_a_preference_accepted_mid_session_bills_the_rest_with_its_tariff(
    charging: Charging,
) -> None:
    await charging.meter(1_000)  # 1 kWh in the first hour, with REG
    assert await charging.prefer("CHEAP") == "ACCEPTED"
    await asyncio.sleep(STEP_S)
    await charging.meter(1_010)  # then 10 Wh with CHEAP
    running = await charging.served("sessions")
    stored = await charging.stored()
    assert await charging.prefer("REGULAR") == "ACCEPTED"
    await asyncio.sleep(STEP_S)
    last = await charging.meter(1_020)  # and 10 Wh with REG again
    await charging.station.result(
        "StopTransaction",
        {
            "transactionId": charging.transaction_id,
            "idTag": CARD,
            "meterStop": 1_020,
            "timestamp": last,  # no parking after the last reading: three periods
            "reason": "EVDisconnected",
        },
    )
    ended = await charging.served("sessions")
    cdr = await charging.served("cdrs")

    # Mid-session: the periods so far, each with its tariff; the cost is theirs.
    check("Session", running)
    assert [p["tariff_id"] for p in running["charging_periods"]] == ["REG", "CHEAP"], running[
        "charging_periods"
    ]
    [switch] = stored.tariff_switches or []
    assert switch["tariff_id"] == "CHEAP"
    assert running["charging_periods"][1]["start_date_time"] == switch["from"]
    assert stored.tariff_id == "REG"  # the tariff it started with
    assert Decimal(str(running["total_cost"]["excl_vat"])) == round(
        priced(running["charging_periods"]), 2
    )
    # The CDR: both tariffs, three periods, the cost of each at its own tariff.
    check("Cdr", cdr)
    assert [t["id"] for t in cdr["tariffs"]] == ["REG", "CHEAP"]
    assert [t["type"] for t in cdr["tariffs"]] == ["REGULAR", "PROFILE_CHEAP"]
    periods = cdr["charging_periods"]
    assert [p["tariff_id"] for p in periods] == ["REG", "CHEAP", "REG"]
    assert periods == ended["charging_periods"]
    assert cdr["total_energy"] == 1.02
    total = Decimal(str(cdr["total_cost"]["excl_vat"]))
    assert total == round(priced(periods), 2)
    assert total == Decimal(str(ended["total_cost"]["excl_vat"]))  # running cost = CDR cost
    # About 1.01 kWh REG (40.40) and 10 Wh CHEAP (0.10), give or take the Wh of the
    # interval the node took to answer each PUT: not all REG (40.80) nor all CHEAP after the
    # first PUT (40.20).
    assert Decimal("40.20") < total < Decimal("40.80")
    assert charging.peer.problems == []


async def test_a_preference_for_the_tariff_in_force_changes_nothing(charging: Charging) -> None:
    first = await charging.meter(100)
    assert await charging.prefer("REGULAR") == "ACCEPTED"
    await asyncio.sleep(0.5)
    second = await charging.meter(101)
    # The running cost is re-priced with the first reading of each clock minute (and after a
    # switch, of which there is none here): the second reading counts if it opened a minute.
    new_minute = first[:16] != second[:16]  # "YYYY-MM-DDTHH:MM"

    stored = await charging.stored()
    running = await charging.served("sessions")

    assert stored.tariff_switches is None
    assert [t["id"] for t in stored.tariffs or []] == ["REG"]
    assert {p["tariff_id"] for p in running["charging_periods"]} == {"REG"}
    assert running["total_cost"]["excl_vat"] == (4.04 if new_minute else 4.0)
