"""The demo site: two tariffs, a published location, its stations and EVSEs, and RFID cards.

``cpms demo`` (``cpms.runtime.demo``) runs a node with a fleet of simulated stations. Before
they connect, ``prepare_demo`` describes them to the core the way an operator would, through
the same services as the CLI and the operator API: an AC and a DC tariff, location ``DEMO``
(published, so eMSPs see it over OCPI), each station of the ``DemoPlan`` with its EVSEs wired
to the numbers the station uses on the wire, and cards ``DEMO0001``.. the drivers present.

It is idempotent: what exists is kept as it is (the operator may have changed it since), what
is missing is added, nothing is added twice. So a second ``make run`` on the same database
starts the same site again, and a larger fleet only adds its new stations.

The plan is protocol-neutral: stations and their EVSEs by OCPP number, each with connector
specs. The composition root builds it from the simulated fleet; this module knows no
simulator and no OCPP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from cpms.admission import AdmissionPolicy
from cpms.cdrs import CdrFilter, list_cdrs
from cpms.documents import format_datetime
from cpms.errors import NotFound
from cpms.locations import EvseWiring, add_evse, get_location, import_locations
from cpms.model import Evse, utcnow
from cpms.partners import invite_partner, list_partners, unregister_partner
from cpms.sessions import SessionFilter, list_sessions
from cpms.stations import create_station, get_station
from cpms.tariffs import get_tariff, import_tariffs
from cpms.tokens import create_token, get_token
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "AC_TARIFF_ID",
    "DC_TARIFF_ID",
    "DEMO_LOCATION_ID",
    "DEMO_PARTNER_NAME",
    "DEMO_SETTINGS",
    "DEMO_STATION_PREFIX",
    "DEMO_TOKENS",
    "ConnectorPlan",
    "DemoFigures",
    "DemoPlan",
    "DemoSetup",
    "EvsePlan",
    "StationPlan",
    "demo_figures",
    "invite_demo_partner",
    "prepare_demo",
]

UowFactory = Callable[[], UnitOfWork]

#: Setting defaults of ``cpms demo`` (they lose to every flag, variable and config key):
#: stations and cards nobody created may join in, so ``cpms simulate`` works against it too.
DEMO_SETTINGS: Mapping[str, Any] = {
    "station_admission": AdmissionPolicy.OPEN,
    "accept_unknown_tokens": True,
}
DEMO_LOCATION_ID = "DEMO"
DEMO_STATION_PREFIX = "DEMO-"
AC_TARIFF_ID = "DEMO-AC"
DC_TARIFF_ID = "DEMO-DC"
DEMO_TOKENS = tuple(f"DEMO{number:04d}" for number in range(1, 6))
DEMO_PARTNER_NAME = "demo eMSP"
_VAT = 21.0  # the Netherlands, where the demo site is
_CAPABILITIES = ["REMOTE_START_STOP_CAPABLE", "RFID_READER"]


@dataclass(frozen=True, slots=True)
class ConnectorPlan:
    """One connector as a station model describes it."""

    standard: str
    """OCPI ConnectorType, e.g. IEC_62196_T2."""
    format: str
    """SOCKET or CABLE."""
    power_type: str
    """AC_1_PHASE, AC_2_PHASE, AC_3_PHASE or DC."""
    max_power_w: float
    voltage_v: float
    """Line to neutral on AC (as OCPI's max_voltage), the nominal voltage on DC."""

    @property
    def phases(self) -> int:
        return {"AC_1_PHASE": 1, "AC_2_PHASE": 2, "AC_3_PHASE": 3}.get(self.power_type, 1)

    def to_ocpi(self, connector_id: str, *, last_updated: str) -> dict[str, Any]:
        """The OCPI Connector, priced by the AC or the DC demo tariff."""
        return {
            "id": connector_id,
            "standard": self.standard,
            "format": self.format,
            "power_type": self.power_type,
            "max_voltage": round(self.voltage_v),
            "max_amperage": round(self.max_power_w / (self.voltage_v * self.phases)),
            "max_electric_power": round(self.max_power_w),
            "tariff_ids": [DC_TARIFF_ID if self.power_type == "DC" else AC_TARIFF_ID],
            "last_updated": last_updated,
        }


@dataclass(frozen=True, slots=True)
class EvsePlan:
    """One EVSE under the number its station uses (OCPP 1.6 connectorId, 2.0.1 evseId)."""

    number: int
    connectors: tuple[ConnectorPlan, ...]


@dataclass(frozen=True, slots=True)
class StationPlan:
    """One station and its EVSEs."""

    id: str
    evses: tuple[EvsePlan, ...]


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """What the demo site holds; ``country_code`` and ``party_id`` are ours (settings)."""

    country_code: str
    party_id: str
    stations: tuple[StationPlan, ...]
    location_id: str = DEMO_LOCATION_ID
    tokens: tuple[str, ...] = DEMO_TOKENS


@dataclass(slots=True)
class DemoSetup:
    """What ``prepare_demo`` found: ids, what it added, and what it had to leave alone."""

    location_id: str
    tariff_ids: tuple[str, ...]
    station_ids: tuple[str, ...]
    tokens: tuple[str, ...]
    created: list[str] = field(default_factory=list)
    """What was added, e.g. ``station DEMO-00001``, ``EVSE DEMO-00001-1``."""
    notes: list[str] = field(default_factory=list)
    """What could not be set up as planned, and why (the demo runs all the same)."""


async def prepare_demo(uow: UowFactory, plan: DemoPlan) -> DemoSetup:
    """Create whatever of the demo site is missing; see the module docstring."""
    now = format_datetime(utcnow())
    setup = DemoSetup(
        location_id=plan.location_id,
        tariff_ids=(AC_TARIFF_ID, DC_TARIFF_ID),
        station_ids=tuple(station.id for station in plan.stations),
        tokens=plan.tokens,
    )
    missing = [doc for doc in _tariffs(plan, now) if not await _tariff_exists(uow, doc["id"])]
    if missing:
        await import_tariffs(uow(), missing)
        setup.created += [f"tariff {doc['id']}" for doc in missing]
    try:
        await get_location(uow(), plan.location_id)
    except NotFound:
        await import_locations(uow(), [_location(plan, now)])
        setup.created.append(f"location {plan.location_id}")
    for station in plan.stations:
        await _prepare_station(uow, plan, station, setup, now)
    for uid in plan.tokens:
        try:
            await get_token(uow(), uid, country_code=plan.country_code, party_id=plan.party_id)
        except NotFound:
            fields = {"uid": uid, "whitelist": "ALLOWED", "visual_number": f"Demo card {uid}"}
            await create_token(
                uow(), fields, country_code=plan.country_code, party_id=plan.party_id
            )
            setup.created.append(f"token {uid}")
    return setup


async def _tariff_exists(uow: UowFactory, tariff_id: str) -> bool:
    try:
        await get_tariff(uow(), tariff_id)
    except NotFound:
        return False
    return True


async def _prepare_station(
    uow: UowFactory, plan: DemoPlan, station: StationPlan, setup: DemoSetup, now: str
) -> None:
    try:
        stored = await get_station(uow(), station.id)
    except NotFound:
        await create_station(uow(), station.id, location_id=plan.location_id)
        setup.created.append(f"station {station.id}")
    else:
        if stored.location_id != plan.location_id:
            # The operator moved it; its EVSEs are theirs to describe now.
            setup.notes.append(
                f"station {station.id} is at location {stored.location_id}, not "
                f"{plan.location_id}: its EVSEs are left as they are"
            )
            return
    async with uow() as work:
        wired = set(
            await work.session.scalars(
                select(Evse.ocpp_evse_id).where(Evse.station_id == station.id)
            )
        )
    for evse in station.evses:
        if evse.number in wired:
            continue  # described before (perhaps changed since by the operator): kept
        uid = await _free_evse_uid(uow, f"{station.id}-{evse.number}")
        document = _evse(plan, station.id, evse, uid, now)
        await add_evse(uow(), plan.location_id, document, EvseWiring(station.id, evse.number))
        setup.created.append(f"EVSE {uid}")


async def _free_evse_uid(uow: UowFactory, wanted: str) -> str:
    """``wanted``, or ``wanted~2``, ``~3``...: an EVSE uid is never reused (FIELD-NOTES 16)."""
    async with uow() as work:
        taken = set(
            await work.session.scalars(
                select(Evse.uid).where(Evse.uid.startswith(wanted, autoescape=True))
            )
        )
    uid, suffix = wanted, 1
    while uid in taken:
        suffix += 1
        uid = f"{wanted}~{suffix}"
    return uid


def _evse(plan: DemoPlan, station_id: str, evse: EvsePlan, uid: str, now: str) -> dict[str, Any]:
    readable = "".join(c for c in station_id.upper() if c.isascii() and c.isalnum())[:30]
    return {
        "uid": uid,
        # eMI3, like the EVSEs a station reports before anyone described them.
        "evse_id": f"{plan.country_code}*{plan.party_id}*E{readable}*{evse.number}",
        "status": "UNKNOWN",
        "capabilities": list(_CAPABILITIES),
        "physical_reference": str(evse.number),
        "connectors": [
            connector.to_ocpi(str(index), last_updated=now)
            for index, connector in enumerate(evse.connectors, 1)
        ],
        "last_updated": now,
    }


def _tariffs(plan: DemoPlan, now: str) -> list[dict[str, Any]]:
    def tariff(tariff_id: str, text: str, components: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "country_code": plan.country_code,
            "party_id": plan.party_id,
            "id": tariff_id,
            "currency": "EUR",
            "type": "REGULAR",
            "tariff_alt_text": [{"language": "en", "text": text}],
            "elements": [{"price_components": components}],
            "last_updated": now,
        }

    return [
        tariff(
            AC_TARIFF_ID,
            "AC: EUR 0.35 per kWh, and EUR 1.20 per hour parked after charging (excl. 21% VAT)",
            [
                {"type": "ENERGY", "price": 0.35, "vat": _VAT, "step_size": 1},
                {"type": "PARKING_TIME", "price": 1.20, "vat": _VAT, "step_size": 60},
            ],
        ),
        tariff(
            DC_TARIFF_ID,
            "DC fast charging: EUR 0.59 per kWh (excl. 21% VAT)",
            [{"type": "ENERGY", "price": 0.59, "vat": _VAT, "step_size": 1}],
        ),
    ]


def _location(plan: DemoPlan, now: str) -> dict[str, Any]:
    return {
        "country_code": plan.country_code,
        "party_id": plan.party_id,
        "id": plan.location_id,
        "publish": True,
        "name": "CPMS demo site",
        "address": "Piet Heinkade 1",
        "city": "Amsterdam",
        "postal_code": "1019 BR",
        "country": "NLD",
        "coordinates": {"latitude": "52.377956", "longitude": "4.911350"},
        "parking_type": "PARKING_LOT",
        "evses": [],
        "operator": {"name": "CPMS demo"},
        "facilities": ["CAFE"],
        "time_zone": "Europe/Amsterdam",
        "opening_times": {"twentyfourseven": True},
        "charging_when_closed": True,
        "last_updated": now,
    }


async def invite_demo_partner(uow: UowFactory) -> tuple[int, str]:
    """Invite the demo eMSP; return its id and token A.

    A token A is shown once and kept hashed, so every start issues a new one; the unused
    invitations of earlier starts are withdrawn first, so only the token shown works.
    """
    for partner in await list_partners(uow()):
        if (
            partner.name == DEMO_PARTNER_NAME
            and partner.state == "INVITED"
            and partner.token_a_hash
        ):
            await unregister_partner(uow(), partner.id)
    return await invite_partner(uow(), DEMO_PARTNER_NAME)


@dataclass(frozen=True, slots=True)
class DemoFigures:
    """What the demo site has produced so far, as stored."""

    sessions_completed: int
    cdrs: int


async def demo_figures(uow: UowFactory, location_id: str = DEMO_LOCATION_ID) -> DemoFigures:
    """Count completed sessions at ``location_id`` and issued CDRs (credit CDRs aside)."""
    async with uow() as work:
        completed = await list_sessions(
            work, SessionFilter(status="COMPLETED", location_id=location_id), limit=1
        )
        cdrs = await list_cdrs(work, CdrFilter(credit=False), limit=1)
    return DemoFigures(sessions_completed=completed.total, cdrs=cdrs.total)
