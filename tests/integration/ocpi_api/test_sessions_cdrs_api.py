"""Sessions and CDRs through the operator API: a started node, real HTTP, real databases.

Sessions are made the way stations make them, through the core charging services on the
node's own database (``start_transaction``, ``record_meter_values``, ``stop_transaction``),
priced by official OCPI tariff examples assigned to the EVSEs the station reported. Covered:
``GET /api/sessions`` (filters, pages, bad values), ``GET /api/sessions/{id}``, ``POST
/api/sessions/{id}/close``, ``GET /api/cdrs`` (filters, pages), ``GET /api/cdrs/{id}`` (the
explanation) and ``POST /api/cdrs/{id}/credit``. Every answer is checked against
``openapi.json``. Amounts are priced by hand in the tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from charging_support import start_decided, stop_decided
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cpms.cdrs import credit_cdr
from cpms.charging import (
    ENERGY_REGISTER,
    MeterReport,
    MeterValue,
    Sample,
    StartRequest,
    StopRequest,
    record_meter_values,
)
from cpms.config import Settings
from cpms.errors import Conflict
from cpms.locations import assign_tariffs, import_locations
from cpms.runtime import Runtime
from cpms.sessions import lost_race_is_conflict
from cpms.station_lifecycle import StatusReport, record_status
from cpms.stations import create_station
from cpms.tariffs import import_tariffs
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWork

from support import ADMIN_TOKEN, TIME_UNIT

OPENAPI_FILE = Path(__file__).resolve().parents[3] / "ocpi_api" / "operator" / "openapi.json"
NO_BODY: Any = object()
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TAG = "TAG-0001"
T = TypeVar("T")

# --------------------------------------------------------------------------- the client


def _openapi() -> dict[str, Any]:
    return json.loads(OPENAPI_FILE.read_text("utf-8"))


def _template(document: dict[str, Any], path: str) -> str:
    """The documented path template that ``path`` (below /api, no query) is an instance of."""
    segments = path.split("/")
    for template in document["paths"]:
        parts = template.split("/")
        if len(parts) == len(segments) and all(
            part == segment or (part.startswith("{") and part.endswith("}"))
            for part, segment in zip(parts, segments, strict=True)
        ):
            return template
    raise AssertionError(f"{path} matches no documented path")


def _validator(document: dict[str, Any], pointer: str) -> Draft202012Validator:
    registry: Registry = Registry().with_resource(
        "urn:cpms:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"urn:cpms:openapi#/{pointer}"}, registry=registry)


def _documented_problems(method: str, path: str, status: int, answer: Any) -> list[str]:
    """Where ``answer`` breaks what openapi.json documents for ``method path`` and ``status``."""
    document = _openapi()
    template = _template(document, path)
    responses = document["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} does not document {status}"
    response = responses[str(status)]
    pointer = f"paths/{template.replace('/', '~1')}/{method.lower()}/responses/{status}"
    if "$ref" in response:
        pointer = response["$ref"][2:]
    validator = _validator(document, f"{pointer}/content/application~1json/schema")
    return [error.message for error in validator.iter_errors(answer)]


def _request_problems(method: str, path: str, body: Any) -> list[str]:
    """Where ``body`` breaks the request schema openapi.json documents for ``method path``."""
    document = _openapi()
    template = _template(document, path)
    pointer = (
        f"paths/{template.replace('/', '~1')}/{method.lower()}/requestBody/content/"
        "application~1json/schema"
    )
    return [error.message for error in _validator(document, pointer).iter_errors(body)]


class Api:
    """A thin client of ``/api`` that checks every answer against openapi.json."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = NO_BODY,
        *,
        token: str | None = ADMIN_TOKEN,
        data: str | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return the status and the JSON answer."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not NO_BODY:
            kwargs["json"] = body
        if data is not None:
            kwargs["data"] = data
        async with self.session.request(method, "/api" + path, **kwargs) as response:
            assert response.content_type == "application/json", await response.text()
            answer = await response.json()
            status = response.status
        problems = _documented_problems(method, path.split("?")[0], status, answer)
        assert problems == [], (method, path, status, answer, problems)
        if body is not NO_BODY and 200 <= status < 300:
            accepted = _request_problems(method, path.split("?")[0], body)
            assert accepted == [], ("accepted but undocumented", method, path, accepted)
        return status, answer

    async def expect(self, status: int, method: str, path: str, body: Any = NO_BODY) -> Any:
        """Send one request, assert the status, return the JSON answer."""
        got, answer = await self.call(method, path, body)
        assert got == status, f"{method} {path}: expected {status}, got {got}: {answer}"
        return answer

    async def get(self, path: str) -> Any:
        return await self.expect(200, "GET", path)

    async def refused(self, status: int, method: str, path: str, body: Any = NO_BODY) -> str:
        """Send a request that must be refused with ``status``; return the error message."""
        answer = await self.expect(status, method, path, body)
        assert set(answer) == {"error"}, answer
        assert answer["error"]["message"], answer
        return str(answer["error"]["message"])


# --------------------------------------------------------------------------- the site


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared test settings, with the stuck-session sweep off: sessions here start in 2025
    and would otherwise count as stuck; closing them is for the tests to do."""
    return settings.replace(stuck_session_after=0.0)


@dataclass(frozen=True, slots=True)
class Site:
    """The node's database, with what a charging session needs, and ways to charge there.

    LOC1 (the official location example) has station CP1, whose EVSE 1 (``CP1-1``) is priced
    by the official example tariff "17" (FLAT 0.50 at 20 % VAT plus 0.25/kWh at 10 % VAT),
    EVSE 2 (``CP1-2``) by tariff "12" (2.00/h at 10 % VAT, step_size 60 s) and EVSE 3 by no
    tariff. LOC2 has station CP2, its EVSE 1 unpriced. Local token ``TAG`` is valid.
    """

    runtime: Runtime

    async def run(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        async with self.runtime.uow() as unit:
            result = await work(unit)
            await unit.commit()
        return result

    async def start(
        self, evse: int, at: datetime, meter_wh: int, *, station: str = "CP1"
    ) -> tuple[str, str]:
        """Start charging; return (session id, transaction id)."""
        request = StartRequest(
            evse_number=evse,
            uid=TAG,
            meter_start_wh=Decimal(meter_wh),
            received_at=at,
            station_time=at,
        )
        outcome = await self.run(
            lambda u: start_decided(u, station, request, self.runtime.authorizer)
        )
        return outcome.session_id, outcome.transaction_id

    async def meter(
        self, transaction_id: str, evse: int, at: datetime, wh: int, *, station: str = "CP1"
    ) -> None:
        sample = Sample(ENERGY_REGISTER, Decimal(wh), Decimal(wh), unit="Wh")
        report = MeterReport(evse, at, (MeterValue(at, (sample,)),), transaction_id)
        await self.run(lambda u: record_meter_values(u, station, report))

    async def stop(
        self, transaction_id: str, at: datetime, meter_wh: int, *, station: str = "CP1"
    ) -> None:
        request = StopRequest(transaction_id, at, Decimal(meter_wh), at)
        await self.run(lambda u: stop_decided(u, station, request, self.runtime.authorizer))


async def _report_evse(site: Site, station: str, number: int) -> None:
    report = StatusReport(evse_number=number, status="AVAILABLE", received_at=T0)
    await site.run(lambda u: record_status(u, station, report))


@pytest.fixture
async def site(runtime: Runtime, examples_dir: Path) -> Site:
    """The charging site described by ``Site``."""
    site = Site(runtime)
    uow = runtime.uow
    loc1 = json.loads((examples_dir / "location_example.json").read_text("utf-8"))
    loc2 = dict(loc1, id="LOC2")
    del loc2["evses"]
    await import_locations(uow(), [loc1, loc2])
    await create_station(uow(), "CP1", location_id="LOC1")
    await create_station(uow(), "CP2", location_id="LOC2")
    for number in (1, 2, 3):
        await _report_evse(site, "CP1", number)
    await _report_evse(site, "CP2", 1)
    tariffs = ["tariff_9_025kwh_start.json", "tariff_1_simple_2hour.json"]
    await import_tariffs(uow(), [json.loads((examples_dir / n).read_text()) for n in tariffs])
    await assign_tariffs(uow(), "LOC1", "CP1-1", "1", ["17"])
    await assign_tariffs(uow(), "LOC1", "CP1-2", "1", ["12"])
    settings = runtime.settings
    await create_token(
        uow(), {"uid": TAG}, country_code=settings.country_code, party_id=settings.party_id
    )
    return site


@dataclass(frozen=True, slots=True)
class Charged:
    """The sessions ``charged`` made (ids), each described where it is made."""

    energy: str
    timed: str
    open_cp1: str
    open_cp1_transaction: str
    open_cp2: str


@pytest.fixture
async def charged(site: Site) -> Charged:
    """Four sessions: two COMPLETED on CP1, one ACTIVE on CP1 and one ACTIVE on CP2.

    - ``energy`` on EVSE 1 (tariff 17), 12:00 to 13:00, register 1000 -> 6000 -> 11000 Wh:
      10 kWh. By hand: FLAT 0.50 + 10 x 0.25 = 3.00 excl. VAT; 0.50 x 1.2 + 2.50 x 1.1 =
      0.60 + 2.75 = 3.35 incl. VAT. Last updated 13:00.
    - ``timed`` on EVSE 2 (tariff 12), 12:10 to 12:40:30 (1830 s), 0 -> 2000 Wh. By hand:
      step_size 60 s rounds 1830 s up to 1860 s = 31 min; 31/60 h x 2.00 = 1.0333 -> 1.03
      excl. VAT; x 1.1 = 1.1367 -> 1.14 incl. VAT. Last updated 12:40:30.
    - ``open_cp1`` on EVSE 3 (no tariff) from 12:20, 500 -> 1500 Wh at 12:50: never stopped.
    - ``open_cp2`` on CP2 from 12:30, nothing since.
    """
    energy, tx_energy = await site.start(1, T0, 1000)
    await site.meter(tx_energy, 1, T0 + timedelta(minutes=30), 6000)
    await site.stop(tx_energy, T0 + timedelta(minutes=60), 11000)
    timed, tx_timed = await site.start(2, T0 + timedelta(minutes=10), 0)
    await site.stop(tx_timed, T0 + timedelta(minutes=40, seconds=30), 2000)
    open_cp1, tx_open = await site.start(3, T0 + timedelta(minutes=20), 500)
    await site.meter(tx_open, 3, T0 + timedelta(minutes=50), 1500)
    open_cp2, _ = await site.start(1, T0 + timedelta(minutes=30), 0, station="CP2")
    return Charged(energy, timed, open_cp1, tx_open, open_cp2)


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[Api]:
    """A client of the runtime's operator API, with the operator token."""
    async with aiohttp.ClientSession(base_url=runtime.base_url()) as session:
        yield Api(session)


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sessions"),
        ("GET", "/sessions/S1"),
        ("POST", "/sessions/S1/close"),
        ("GET", "/cdrs"),
        ("GET", "/cdrs/C1"),
        ("POST", "/cdrs/C1/credit"),
    ],
)
async def test_every_session_and_cdr_route_needs_the_operator_token(
    api: Api, method: str, path: str
) -> None:
    for token in (None, ADMIN_TOKEN + "x"):
        status, answer = await api.call(method, path, token=token)
        assert status == 401, (method, path, token, answer)
        assert answer["error"]["code"] == "unauthorized"


# --------------------------------------------------------------------------- sessions


async def test_a_finished_session_shows_its_energy_periods_cost_and_cdr(
    api: Api, charged: Charged
) -> None:
    session = await api.get(f"/sessions/{charged.energy}")

    assert session["id"] == charged.energy
    assert session["status"] == "COMPLETED"
    assert (session["start_date_time"], session["end_date_time"]) == (
        "2025-03-01T12:00:00Z",
        "2025-03-01T13:00:00Z",
    )
    assert session["kwh"] == 10.0
    assert session["total_cost"] == {"excl_vat": 3.0, "incl_vat": 3.35}
    assert (session["station_id"], session["location_id"], session["evse_uid"]) == (
        "CP1",
        "LOC1",
        "CP1-1",
    )
    assert session["connector_id"] == "1"
    assert session["cdr_token"]["uid"] == TAG
    assert session["auth_method"] == "WHITELIST"
    assert session["currency"] == "EUR"
    assert session["tariff_id"] == "17"
    assert session["transaction_id"]
    assert session["stop_reason"] == "Local"
    assert session["flags"] == []
    assert session["last_updated"] == "2025-03-01T13:00:00Z"
    periods = session["charging_periods"]
    assert periods, session
    assert {period["tariff_id"] for period in periods} == {"17"}
    energy = sum(
        d["volume"] for period in periods for d in period["dimensions"] if d["type"] == "ENERGY"
    )
    assert energy == pytest.approx(10.0)
    assert session["cdr_id"] is not None
    cdr = await api.get(f"/cdrs/{session['cdr_id']}")
    assert cdr["session_id"] == charged.energy


async def test_an_unpriced_running_session_has_no_cost_and_no_cdr(
    api: Api, charged: Charged
) -> None:
    session = await api.get(f"/sessions/{charged.open_cp1}")
    assert session["status"] == "ACTIVE"
    assert session["end_date_time"] is None
    assert session["kwh"] == 1.0  # 500 -> 1500 Wh
    assert session["total_cost"] is None
    assert session["tariff_id"] is None
    assert session["cdr_id"] is None
    assert session["stop_reason"] is None


async def test_an_unknown_session_is_404(api: Api) -> None:
    message = await api.refused(404, "GET", "/sessions/NOPE")
    assert "NOPE" in message


async def test_sessions_are_listed_by_start_and_filtered(api: Api, charged: Charged) -> None:
    everything = await api.get("/sessions")
    assert ids(everything) == [charged.energy, charged.timed, charged.open_cp1, charged.open_cp2]
    assert (everything["total"], everything["offset"], everything["limit"]) == (4, 0, 100)

    assert ids(await api.get("/sessions?status=COMPLETED")) == [charged.energy, charged.timed]
    assert ids(await api.get("/sessions?status=ACTIVE")) == [charged.open_cp1, charged.open_cp2]
    assert ids(await api.get("/sessions?status=PENDING")) == []
    assert ids(await api.get("/sessions?station_id=CP2")) == [charged.open_cp2]
    assert ids(await api.get("/sessions?location_id=LOC1")) == [
        charged.energy,
        charged.timed,
        charged.open_cp1,
    ]
    both = await api.get("/sessions?station_id=CP1&status=ACTIVE")
    assert ids(both) == [charged.open_cp1]
    assert both["total"] == 1


async def test_sessions_are_filtered_by_last_updated_from_inclusive_to_exclusive(
    api: Api, charged: Charged
) -> None:
    # Last updated: energy 13:00, timed 12:40:30, open_cp1 12:50, open_cp2 12:30.
    since = await api.get("/sessions?date_from=2025-03-01T12:50:00Z")
    assert ids(since) == [charged.energy, charged.open_cp1]
    before = await api.get("/sessions?date_to=2025-03-01T12:50:00Z")
    assert ids(before) == [charged.timed, charged.open_cp2]
    window = await api.get("/sessions?date_from=2025-03-01T12:35:00Z&date_to=2025-03-01T12:55:00Z")
    assert ids(window) == [charged.timed, charged.open_cp1]


async def test_session_pages_partition_the_list_and_stay_put_as_sessions_update(
    api: Api, site: Site, charged: Charged
) -> None:
    async def pages() -> list[list[str]]:
        found = []
        for offset in (0, 2, 4):
            page = await api.get(f"/sessions?offset={offset}&limit=2")
            assert (page["total"], page["offset"], page["limit"]) == (4, offset, 2)
            found.append(ids(page))
        return found

    everything = ids(await api.get("/sessions"))
    assert await pages() == [everything[0:2], everything[2:4], []]
    # Ordered by last update, the third would now move to the end; by start it stays put.
    await site.meter(charged.open_cp1_transaction, 3, T0 + timedelta(hours=3), 7000)
    assert (await api.get(f"/sessions/{charged.open_cp1}"))["kwh"] == 6.5  # 500 -> 7000 Wh
    assert await pages() == [everything[0:2], everything[2:4], []]
    assert (await api.get("/sessions?limit=5000"))["limit"] == 1000


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("status=FINISHED", "status"),
        ("status=completed", "status"),
        ("date_from=yesterday", "date_from"),
        ("date_to=2025-03-01", "date_to"),
        ("date_from=2025-03-01T12:00:00%2B01:00", "date_from"),
        ("flag=Closed-By-Rule", "flag"),
        ("limit=0", "limit"),
        ("offset=x", "offset"),
    ],
)
async def test_bad_session_query_values_are_refused_with_400_naming_the_parameter(
    api: Api, query: str, parameter: str
) -> None:
    status, answer = await api.call("GET", f"/sessions?{query}")
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid_request"
    assert parameter in answer["error"]["message"]


# --------------------------------------------------------------------------- closing


async def test_closing_an_open_session_ends_it_at_its_last_reading_and_issues_a_cdr(
    api: Api, site: Site, charged: Charged
) -> None:
    closed = await api.expect(
        200, "POST", f"/sessions/{charged.open_cp1}/close", {"note": "station replaced"}
    )

    assert closed["id"] == charged.open_cp1
    assert closed["status"] == "COMPLETED"
    assert closed["end_date_time"] == "2025-03-01T12:50:00Z"  # its last trusted reading
    assert closed["flags"] == ["closed_by_operator"]
    assert closed["stop_reason"] == "ClosedByOperator"
    assert closed["cdr_id"] is not None
    assert closed == await api.get(f"/sessions/{charged.open_cp1}")
    cdr = await api.get(f"/cdrs/{closed['cdr_id']}")
    assert cdr["session_id"] == charged.open_cp1
    assert "closed by the operator" in cdr["remark"]
    assert cdr["end_date_time"] == "2025-03-01T12:50:00Z"
    assert cdr["total_energy"] == 1.0
    assert cdr["total_cost"] == {"excl_vat": 0.0, "incl_vat": 0.0}  # EVSE 3 has no tariff
    assert any("no tariff" in line for line in cdr["explanation"]), cdr["explanation"]

    flagged = await api.get("/sessions?flag=closed_by_operator")
    assert ids(flagged) == [charged.open_cp1]
    assert ids(await api.get("/sessions?flag=closed_by_rule")) == []
    log = await api.get("/stations/CP1/events?kind=session_closed")
    assert [entry["details"]["note"] for entry in log["items"]] == ["station replaced"]
    assert log["items"][0]["details"]["session_id"] == charged.open_cp1


async def test_closing_a_priced_session_bills_it_to_its_last_reading(
    api: Api, site: Site, charged: Charged
) -> None:
    # EVSE 1 (tariff 17) again, 14:00, 20000 -> 24000 Wh at 14:30, then silence.
    session_id, transaction_id = await site.start(1, T0 + timedelta(hours=2), 20_000)
    await site.meter(transaction_id, 1, T0 + timedelta(hours=2, minutes=30), 24_000)

    closed = await api.expect(200, "POST", f"/sessions/{session_id}/close")

    assert closed["end_date_time"] == "2025-03-01T14:30:00Z"
    # By hand: 0.50 + 4 x 0.25 = 1.50 excl. VAT; 0.60 + 1.10 = 1.70 incl. VAT.
    assert closed["total_cost"] == {"excl_vat": 1.5, "incl_vat": 1.7}
    cdr = await api.get(f"/cdrs/{closed['cdr_id']}")
    assert cdr["total_cost"] == {"excl_vat": 1.5, "incl_vat": 1.7}
    assert cdr["remark"] == "closed by the operator; ends at the last trusted reading"


async def test_closing_a_session_that_ended_is_a_conflict_and_changes_nothing(
    api: Api, charged: Charged
) -> None:
    before = await api.get(f"/sessions/{charged.energy}")
    message = await api.refused(409, "POST", f"/sessions/{charged.energy}/close")
    assert "ended" in message
    assert await api.get(f"/sessions/{charged.energy}") == before

    await api.expect(200, "POST", f"/sessions/{charged.open_cp2}/close", {})
    await api.refused(409, "POST", f"/sessions/{charged.open_cp2}/close")
    cdrs = await api.get(f"/cdrs?session_id={charged.open_cp2}")
    assert cdrs["total"] == 1, "a second close must not issue a second CDR"


async def test_closing_an_unknown_session_is_404(api: Api) -> None:
    await api.refused(404, "POST", "/sessions/NOPE/close")


@pytest.mark.parametrize(
    "body", [{"note": 5}, {"reason": "x"}, ["note"]], ids=["number", "unknown", "list"]
)
async def test_a_bad_close_body_is_refused_with_400_and_the_session_stays_open(
    api: Api, charged: Charged, body: Any
) -> None:
    await api.refused(400, "POST", f"/sessions/{charged.open_cp1}/close", body)
    assert (await api.get(f"/sessions/{charged.open_cp1}"))["status"] == "ACTIVE"


# --------------------------------------------------------------------------- CDRs


async def test_a_cdr_carries_the_hand_priced_totals_and_its_explanation(
    api: Api, charged: Charged
) -> None:
    session = await api.get(f"/sessions/{charged.energy}")
    cdr = await api.get(f"/cdrs/{session['cdr_id']}")

    assert cdr["id"] == session["cdr_id"]
    assert cdr["total_cost"] == {"excl_vat": 3.0, "incl_vat": 3.35}
    assert cdr["total_fixed_cost"] == {"excl_vat": 0.5, "incl_vat": 0.6}
    assert cdr["total_energy_cost"] == {"excl_vat": 2.5, "incl_vat": 2.75}
    assert cdr["total_energy"] == 10.0
    assert cdr["total_time"] == 1.0
    assert [tariff["id"] for tariff in cdr["tariffs"]] == ["17"]
    assert cdr["cdr_location"]["evse_uid"] == "CP1-1"
    lines = cdr["explanation"]
    assert any(
        line.startswith("period 1: ENERGY 10 kWh x 0.25 EUR/kWh") and "element 1" in line
        for line in lines
    ), lines
    assert any(line.startswith("period 1: FLAT once") and "VAT 20%" in line for line in lines)
    assert "rounded once half-up to 3.00 / 3.35 EUR" in lines[-1]


async def test_a_cdr_explains_the_step_size_rounding(api: Api, charged: Charged) -> None:
    session = await api.get(f"/sessions/{charged.timed}")
    cdr = await api.get(f"/cdrs/{session['cdr_id']}")

    assert cdr["total_cost"] == {"excl_vat": 1.03, "incl_vat": 1.14}
    assert cdr["total_time_cost"] == {"excl_vat": 1.03, "incl_vat": 1.14}
    steps = [line for line in cdr["explanation"] if "step_size" in line]
    assert len(steps) == 1, cdr["explanation"]
    assert "step_size 60 s" in steps[0]
    assert "1830 s rounded up to 1860 s" in steps[0]
    assert "rounded once half-up to 1.03 / 1.14 EUR" in cdr["explanation"][-1]


async def test_cdrs_are_listed_oldest_first_without_explanations_and_filtered(
    api: Api, charged: Charged
) -> None:
    timed = (await api.get(f"/sessions/{charged.timed}"))["cdr_id"]
    energy = (await api.get(f"/sessions/{charged.energy}"))["cdr_id"]

    listed = await api.get("/cdrs")
    # Issued at the stops: timed at 12:40:30, energy at 13:00.
    assert ids(listed) == [timed, energy]
    assert all("explanation" not in item for item in listed["items"])
    assert ids(await api.get(f"/cdrs?session_id={charged.energy}")) == [energy]
    assert ids(await api.get(f"/cdrs?session_id={charged.open_cp1}")) == []
    assert ids(await api.get("/cdrs?credit=false")) == [timed, energy]
    assert ids(await api.get("/cdrs?credit=true")) == []
    assert ids(await api.get("/cdrs?date_from=2025-03-01T12:45:00Z")) == [energy]
    assert ids(await api.get("/cdrs?date_to=2025-03-01T12:45:00Z")) == [timed]
    first = await api.get("/cdrs?limit=1")
    second = await api.get("/cdrs?limit=1&offset=1")
    assert (ids(first), ids(second), first["total"]) == ([timed], [energy], 2)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("credit=yes", "credit"),
        ("credit=True", "credit"),
        ("date_from=13:00", "date_from"),
        ("date_to=2025-13-01T00:00:00Z", "date_to"),
        ("offset=-1", "offset"),
    ],
)
async def test_bad_cdr_query_values_are_refused_with_400_naming_the_parameter(
    api: Api, query: str, parameter: str
) -> None:
    status, answer = await api.call("GET", f"/cdrs?{query}")
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid_request"
    assert parameter in answer["error"]["message"]


async def test_an_unknown_cdr_is_404(api: Api) -> None:
    await api.refused(404, "GET", "/cdrs/NOPE")
    await api.refused(404, "POST", "/cdrs/NOPE/credit", {"reason": "wrong tariff"})


# --------------------------------------------------------------------------- credits


async def test_crediting_a_cdr_negates_every_amount_and_leaves_the_session_without_a_cdr(
    api: Api, charged: Charged
) -> None:
    original = (await api.get(f"/sessions/{charged.energy}"))["cdr_id"]

    answer = await api.expect(201, "POST", f"/cdrs/{original}/credit", {"reason": "wrong tariff"})

    credit = answer["credit"]
    assert answer["replacement"] is None
    assert credit["id"] == f"{original}-C"
    assert (credit["credit"], credit["credit_reference_id"]) == (True, original)
    assert credit["remark"] == "wrong tariff"
    assert credit["total_cost"] == {"excl_vat": -3.0, "incl_vat": -3.35}
    assert credit["total_fixed_cost"] == {"excl_vat": -0.5, "incl_vat": -0.6}
    assert credit["total_energy_cost"] == {"excl_vat": -2.5, "incl_vat": -2.75}
    assert credit["session_id"] == charged.energy
    assert any("wrong tariff" in line for line in credit["explanation"])
    assert await api.get(f"/cdrs/{credit['id']}") == credit
    assert (await api.get(f"/sessions/{charged.energy}"))["cdr_id"] is None
    assert ids(await api.get("/cdrs?credit=true")) == [credit["id"]]
    unchanged = await api.get(f"/cdrs/{original}")
    assert unchanged["total_cost"] == {"excl_vat": 3.0, "incl_vat": 3.35}
    assert "credit" not in unchanged


async def test_crediting_with_reissue_prices_the_session_again_under_a_new_cdr(
    api: Api, charged: Charged
) -> None:
    original = (await api.get(f"/sessions/{charged.timed}"))["cdr_id"]

    answer = await api.expect(
        201, "POST", f"/cdrs/{original}/credit", {"reason": "meter replaced", "reissue": True}
    )

    credit, replacement = answer["credit"], answer["replacement"]
    assert credit["total_cost"] == {"excl_vat": -1.03, "incl_vat": -1.14}
    assert replacement is not None
    assert replacement["id"] not in (original, credit["id"])
    assert replacement["session_id"] == charged.timed
    assert replacement["total_cost"] == {"excl_vat": 1.03, "incl_vat": 1.14}
    assert "credit" not in replacement
    assert any("step_size 60 s" in line for line in replacement["explanation"])
    assert (await api.get(f"/sessions/{charged.timed}"))["cdr_id"] == replacement["id"]
    of_session = await api.get(f"/cdrs?session_id={charged.timed}")
    assert set(ids(of_session)) == {original, credit["id"], replacement["id"]}
    # The replacement stands, so it can be credited in turn.
    await api.expect(201, "POST", f"/cdrs/{replacement['id']}/credit", {"reason": "again"})


async def test_a_cdr_is_credited_once_and_a_credit_never(api: Api, charged: Charged) -> None:
    original = (await api.get(f"/sessions/{charged.energy}"))["cdr_id"]
    await api.expect(201, "POST", f"/cdrs/{original}/credit", {"reason": "first"})

    again = await api.refused(409, "POST", f"/cdrs/{original}/credit", {"reason": "second"})
    assert "credited already" in again
    of_credit = await api.refused(409, "POST", f"/cdrs/{original}-C/credit", {"reason": "x"})
    assert "credit" in of_credit
    assert (await api.get("/cdrs?credit=true"))["total"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": 7},
        {"reason": "x", "reissue": "yes"},
        {"reason": "x", "note": "y"},
        [],
    ],
    ids=["none", "empty", "blank", "number", "reissue-not-bool", "unknown-field", "list"],
)
async def test_a_credit_without_a_good_reason_is_refused_with_400_and_changes_nothing(
    api: Api, charged: Charged, body: Any
) -> None:
    original = (await api.get(f"/sessions/{charged.energy}"))["cdr_id"]
    await api.refused(400, "POST", f"/cdrs/{original}/credit", body)
    assert (await api.get("/cdrs?credit=true"))["total"] == 0
    assert (await api.get(f"/sessions/{charged.energy}"))["cdr_id"] == original


async def test_a_credit_body_that_is_not_json_is_refused_with_400(
    api: Api, charged: Charged
) -> None:
    original = (await api.get(f"/sessions/{charged.energy}"))["cdr_id"]
    status, answer = await api.call("POST", f"/cdrs/{original}/credit", data="{reason")
    assert status == 400
    assert answer["error"]["code"] == "invalid_json"


async def test_of_two_credits_racing_past_their_checks_the_loser_gets_a_conflict(
    api: Api, runtime: Runtime, charged: Charged
) -> None:
    original = (await api.get(f"/sessions/{charged.energy}"))["cdr_id"]
    now = datetime.now(UTC)

    async def second_credit() -> None:
        """What the credit handler does, while another credit of the CDR is not committed."""
        async with (
            runtime.uow() as unit,
            lost_race_is_conflict(f"CDR {original} was credited meanwhile"),
        ):
            await credit_cdr(unit, original, reason="second", now=now)
            await unit.commit()

    async with runtime.uow() as first:
        await credit_cdr(first, original, reason="first", now=now)  # written, not committed
        racing = asyncio.create_task(second_credit())
        # Give the second credit time to pass its checks and wait on the first's write.
        await asyncio.sleep(0.3 * TIME_UNIT)
        await first.commit()
    with pytest.raises(Conflict):
        await asyncio.wait_for(racing, 15 * TIME_UNIT)

    credits = await api.get("/cdrs?credit=true")
    assert [credit["remark"] for credit in credits["items"]] == ["first"]
