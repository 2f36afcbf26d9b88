"""Integration tests of the operator API (``/api``): a started node, real HTTP, real databases.

Every test talks to a ``runtime`` (conftest: OCPP and HTTP on 127.0.0.1, free ports, a fresh
SQLite file and, with ``CPMS_TEST_POSTGRES_URL``, a fresh PostgreSQL database) through an
``aiohttp.ClientSession``. Documents are the official OCPI 2.2.1 examples where one fits
(``examples_dir``; the defective ones, see DEFECTS.md, are the negative vectors). Nothing of
ours is mocked.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cpms.documents import parse_datetime
from cpms.model import ChargingStation
from cpms.passwords import verify_password
from cpms.runtime import Runtime
from ocpi_api.app import create_app
from ocpi_api.context import HttpContext

from support import ADMIN_TOKEN

OPENAPI_FILE = Path(__file__).resolve().parents[3] / "ocpi_api" / "operator" / "openapi.json"
NO_BODY: Any = object()

# --------------------------------------------------------------------------- the client


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, kept to check answers against the OpenAPI document."""

    method: str
    path: str
    sent: Any
    status: int
    body: Any


@dataclass(slots=True)
class Api:
    """A thin client of ``/api`` that records every exchange."""

    session: aiohttp.ClientSession
    exchanges: list[Exchange] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = NO_BODY,
        *,
        token: str | None = ADMIN_TOKEN,
        headers: dict[str, str] | None = None,
        data: str | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return the status and the JSON answer (None when empty)."""
        sent = dict(headers or {})
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        kwargs: dict[str, Any] = {"headers": sent}
        if body is not NO_BODY:
            kwargs["json"] = body
        if data is not None:
            kwargs["data"] = data
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(method, "/api" + path, **kwargs) as response:
            text = await response.text()
            if response.content_type == "application/json":
                answer = json.loads(text)
            else:  # only an unexpected failure (a plain-text 500) answers otherwise
                answer = text or None
            self.exchanges.append(
                Exchange(method, "/api" + path.split("?")[0], body, response.status, answer)
            )
            return response.status, answer

    async def expect(self, status: int, method: str, path: str, body: Any = NO_BODY) -> Any:
        """Send one request, assert the status, return the JSON answer."""
        got, answer = await self.call(method, path, body)
        assert got == status, f"{method} {path}: expected {status}, got {got}: {answer}"
        return answer

    async def get(self, path: str) -> Any:
        return await self.expect(200, "GET", path)


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[Api]:
    """A client of the runtime's operator API, with the operator token."""
    async with aiohttp.ClientSession(base_url=runtime.base_url()) as session:
        yield Api(session)


# --------------------------------------------------------------------------- documents


def example(examples_dir: Path, name: str) -> Any:
    """One official OCPI 2.2.1 example, parsed."""
    return json.loads((examples_dir / name).read_text("utf-8"))


def without_last_updated(value: Any) -> Any:
    """``value`` with every ``last_updated`` key left out, at any depth."""
    if isinstance(value, dict):
        return {k: without_last_updated(v) for k, v in value.items() if k != "last_updated"}
    if isinstance(value, list):
        return [without_last_updated(item) for item in value]
    return value


def last_updated_values(value: Any) -> Iterator[str]:
    """Every ``last_updated`` value in ``value``, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "last_updated":
                yield item
            else:
                yield from last_updated_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from last_updated_values(item)


def moment(text: str) -> datetime:
    return parse_datetime(text, "last_updated")


def connector_doc(connector_id: str, **changes: Any) -> dict[str, Any]:
    """A valid OCPI Connector document of our own."""
    return {
        "id": connector_id,
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 32,
        "last_updated": "2024-01-01T00:00:00Z",
        **changes,
    }


def evse_doc(uid: str, *connector_ids: str) -> dict[str, Any]:
    """A valid OCPI EVSE document of our own, with one connector per id (default "1")."""
    return {
        "uid": uid,
        "evse_id": f"NL*CPM*E{uid}",
        "status": "AVAILABLE",
        "connectors": [connector_doc(c) for c in connector_ids or ("1",)],
        "last_updated": "2024-01-01T00:00:00Z",
    }


def location_doc(examples_dir: Path, location_id: str) -> dict[str, Any]:
    """The official location example under another id, without EVSEs."""
    document = example(examples_dir, "location_example.json")
    document["id"] = location_id
    del document["evses"]
    return document


def valid_tariff_examples(examples_dir: Path) -> list[dict[str, Any]]:
    """Every official tariff example that is valid (all but tariff_put_example, DEFECTS 2)."""
    names = sorted(
        path.name
        for path in examples_dir.glob("tariff*.json")
        if path.name != "tariff_put_example.json"
    )
    assert len(names) == 19, names
    return [example(examples_dir, name) for name in names]


async def import_loc1(api: Api, examples_dir: Path) -> dict[str, Any]:
    """Import the official location example (LOC1, EVSEs 3256 with 2 connectors, 3257 with 1)."""
    document = example(examples_dir, "location_example.json")
    await api.expect(201, "POST", "/locations", document)
    return document


async def create_station(api: Api, station_id: str, location_id: str, **fields: Any) -> Any:
    return await api.expect(
        201, "POST", "/stations", {"id": station_id, "location_id": location_id, **fields}
    )


def documented_as_invalid(method: str, template: str, body: Any) -> bool:
    """Tell whether openapi.json's request schema of ``method template`` refuses ``body``."""
    return not request_validator(openapi_document(), method, template).is_valid(body)


def error_of(answer: Any) -> dict[str, Any]:
    """The error object of an error answer, checked for the documented shape."""
    assert isinstance(answer, dict), answer
    assert set(answer) == {"error"}, answer
    error = answer["error"]
    assert set(error) <= {"code", "message", "path", "problems"}, error
    assert isinstance(error["code"], str), error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    return error


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("path", ["/locations", "/stations/CP1", "/tariffs", "/tokens", "/nope"])
async def test_a_request_without_a_token_is_refused_with_401(api: Api, path: str) -> None:
    status, answer = await api.call("GET", path, token=None)
    assert status == 401
    assert error_of(answer)["code"] == "unauthorized"


async def test_a_wrong_token_is_refused_with_401(api: Api) -> None:
    status, answer = await api.call("GET", "/locations", token="not-the-operator-token")
    assert status == 401
    assert error_of(answer)["code"] == "unauthorized"
    status, _ = await api.call("POST", "/tokens", {"uid": "X1"}, token=ADMIN_TOKEN + "x")
    assert status == 401
    assert (await api.get("/tokens"))["total"] == 0, "a refused request must change nothing"


@pytest.mark.parametrize(
    "authorization",
    [
        f"Basic {ADMIN_TOKEN}",
        f"Token {ADMIN_TOKEN}",
        ADMIN_TOKEN,
        "Bearer ",
        f"Bearer{ADMIN_TOKEN}",
    ],
)
async def test_a_non_bearer_authorization_is_refused_with_401(api: Api, authorization: str) -> None:
    status, answer = await api.call(
        "GET", "/locations", token=None, headers={"Authorization": authorization}
    )
    assert status == 401
    assert error_of(answer)["code"] == "unauthorized"


async def test_the_bearer_scheme_is_matched_without_regard_to_case(api: Api) -> None:
    status, answer = await api.call(
        "GET", "/locations", token=None, headers={"Authorization": f"bearer {ADMIN_TOKEN}"}
    )
    assert status == 200, answer


async def test_health_answers_without_a_token_with_database_and_listeners(
    api: Api, runtime: Runtime
) -> None:
    status, health = await api.call("GET", "/health", token=None)
    assert status == 200, health
    assert health["status"] == "ok"
    assert health["node"] == "test-node"
    assert health["database"]["ok"] is True
    assert health["database"]["engine"] == runtime.engine.dialect.name
    assert health["database"]["revision"]
    ocpp, http = health["listeners"]["ocpp"], health["listeners"]["http"]
    assert ocpp["listening"] is True
    assert ocpp["port"] == runtime.ocpp_port
    assert ocpp["connected_stations"] == 0
    assert http["listening"] is True
    assert http["port"] == runtime.http_port


async def test_the_openapi_document_is_served_without_a_token(api: Api) -> None:
    status, document = await api.call("GET", "/openapi.json", token=None)
    assert status == 200
    assert document == json.loads(OPENAPI_FILE.read_text("utf-8"))
    status, _ = await api.call("GET", "/openapi.json", token="wrong")
    assert status == 200, "a wrong token must not hide the public description"


# --------------------------------------------------------------------------- locations


async def test_importing_the_official_location_example_creates_it_then_updates_it(
    api: Api, examples_dir: Path
) -> None:
    document = example(examples_dir, "location_example.json")
    assert await api.expect(201, "POST", "/locations", document) == {
        "created": ["LOC1"],
        "updated": [],
    }
    assert await api.expect(200, "POST", "/locations", document) == {
        "created": [],
        "updated": ["LOC1"],
    }
    assert (await api.get("/locations"))["total"] == 1


async def test_an_imported_location_reads_back_as_sent_except_last_updated(
    api: Api, examples_dir: Path
) -> None:
    before = datetime.now().astimezone()
    document = await import_loc1(api, examples_dir)
    stored = await api.get("/locations/LOC1")
    assert without_last_updated(stored) == without_last_updated(document)
    # last_updated is the time of the import, on the location, its EVSEs and connectors.
    stamps = list(last_updated_values(stored))
    assert len(stamps) == 1 + 2 + 3
    assert all(moment(stamp) >= before.replace(microsecond=0) for stamp in stamps), stamps


async def test_several_official_location_examples_import_in_one_post(
    api: Api, examples_dir: Path
) -> None:
    names = [
        "location_example.json",
        "location_example_parking_garage_opening_hours.json",
        "location_example_uc2_destination_charger.json",
        "location_example_uc4_limited_visibility.json",
        "location_example_uc5_home_charge_point.json",
    ]
    documents = [example(examples_dir, name) for name in names]
    result = await api.expect(201, "POST", "/locations", documents)
    assert result == {"created": [d["id"] for d in documents], "updated": []}
    listed = await api.get("/locations")
    assert listed["total"] == len(documents)
    for document in documents:
        stored = await api.get(f"/locations/{document['id']}")
        assert without_last_updated(stored) == without_last_updated(document), document["id"]


async def test_a_list_naming_one_location_twice_creates_it_then_replaces_it(
    api: Api, examples_dir: Path
) -> None:
    published = example(examples_dir, "location_example_uc2_destination_charger.json")
    unpublished = example(
        examples_dir, "location_example_uc3_destination_charger_not_published.json"
    )
    assert published["id"] == unpublished["id"]
    result = await api.expect(200, "POST", "/locations", [published, unpublished])
    assert result == {"created": [published["id"]], "updated": [published["id"]]}
    stored = await api.get(f"/locations/{published['id']}")
    assert without_last_updated(stored) == without_last_updated(unpublished)


async def test_an_import_with_one_bad_document_changes_nothing_and_names_its_index(
    api: Api, examples_dir: Path
) -> None:
    good = example(examples_dir, "location_example.json")
    bad = example(examples_dir, "location_example_uc2_destination_charger.json")
    bad["evses"][0]["status"] = "BROKEN"
    status, answer = await api.call("POST", "/locations", [good, bad])
    assert status == 422, answer
    error = error_of(answer)
    assert error["code"] == "invalid_document"
    assert error["path"] == "[1].evses[0].status", error
    status, _ = await api.call("GET", "/locations/LOC1")
    assert status == 404, "the good document of a failed import must not be stored"


@pytest.mark.parametrize("body", [[], "LOC1", [{"id": "LOC1"}, 3]])
async def test_an_import_that_is_not_an_object_or_a_list_of_objects_is_refused_with_400(
    api: Api, body: Any
) -> None:
    status, answer = await api.call("POST", "/locations", body)
    assert status == 400, answer
    assert error_of(answer)["code"] == "invalid_request"


async def test_patching_a_location_name_changes_only_the_name_and_bumps_last_updated(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    before = await api.get("/locations/LOC1")
    patched = await api.expect(200, "PATCH", "/locations/LOC1", {"name": "Gent Zuid-Oost"})
    assert patched["name"] == "Gent Zuid-Oost"
    assert moment(patched["last_updated"]) > moment(before["last_updated"])
    expected = without_last_updated(before) | {"name": "Gent Zuid-Oost"}
    assert without_last_updated(patched) == expected
    assert await api.get("/locations/LOC1") == patched


async def test_patching_a_location_name_leaves_the_last_updated_of_its_evses_alone(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    before = await api.get("/locations/LOC1")
    patched = await api.expect(200, "PATCH", "/locations/LOC1", {"name": "Gent Zuid-Oost"})
    assert list(last_updated_values(patched["evses"])) == list(last_updated_values(before["evses"]))


async def test_patching_a_location_with_evses_is_refused_with_422(
    api: Api, examples_dir: Path
) -> None:
    document = await import_loc1(api, examples_dir)
    status, answer = await api.call("PATCH", "/locations/LOC1", {"evses": document["evses"]})
    assert status == 422, answer
    error = error_of(answer)
    assert error["code"] == "invalid_document"
    assert error["path"] == "evses"
    stored = await api.get("/locations/LOC1")
    assert without_last_updated(stored) == without_last_updated(document)


async def test_changing_the_id_of_a_location_is_refused_with_422_naming_id(
    api: Api, examples_dir: Path
) -> None:
    document = await import_loc1(api, examples_dir)
    other = copy.deepcopy(document) | {"id": "LOC2"}
    status, answer = await api.call("PUT", "/locations/LOC1", other)
    assert status == 422, answer
    assert error_of(answer)["path"] == "id"
    status, answer = await api.call("PATCH", "/locations/LOC1", {"id": "LOC2"})
    assert status == 422, answer
    assert error_of(answer)["path"] == "id"
    status, _ = await api.call("GET", "/locations/LOC2")
    assert status == 404


async def test_putting_a_location_replaces_it_and_keeps_left_out_evses_as_removed(
    api: Api, examples_dir: Path
) -> None:
    document = await import_loc1(api, examples_dir)
    replacement = copy.deepcopy(document)
    replacement["name"] = "Gent Sint-Pieters"
    replacement["evses"] = replacement["evses"][:1]
    stored = await api.expect(200, "PUT", "/locations/LOC1", replacement)
    assert stored["name"] == "Gent Sint-Pieters"
    assert [(e["uid"], e["status"]) for e in stored["evses"]] == [
        ("3256", "AVAILABLE"),
        ("3257", "REMOVED"),
    ]


async def test_deleting_a_location_retires_it_unpublished_with_its_evses_removed(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    retired = await api.expect(200, "DELETE", "/locations/LOC1")
    assert retired["publish"] is False
    assert [evse["status"] for evse in retired["evses"]] == ["REMOVED", "REMOVED"]
    assert await api.get("/locations/LOC1") == retired, "a retired location is kept"
    assert await api.expect(200, "DELETE", "/locations/LOC1") == retired, "idempotent"


async def test_a_location_with_an_active_station_cannot_be_retired(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    await create_station(api, "CP1", "LOC1")
    status, answer = await api.call("DELETE", "/locations/LOC1")
    assert status == 409, answer
    error = error_of(answer)
    assert error["code"] == "conflict"
    assert "CP1" in error["message"]
    assert (await api.get("/locations/LOC1"))["publish"] is True
    await api.expect(200, "DELETE", "/stations/CP1")
    assert (await api.expect(200, "DELETE", "/locations/LOC1"))["publish"] is False


async def test_an_unknown_location_is_404(api: Api) -> None:
    for method, body in (("GET", NO_BODY), ("PATCH", {"name": "x"}), ("DELETE", NO_BODY)):
        status, answer = await api.call(method, "/locations/NOPE", body)
        assert status == 404, (method, answer)
        assert error_of(answer)["code"] == "not_found"
    status, answer = await api.call("POST", "/locations/NOPE/evses", evse_doc("E1"))
    assert status == 404, answer


async def test_location_pages_partition_the_list_in_a_stable_order(
    api: Api, examples_dir: Path
) -> None:
    first = [location_doc(examples_dir, f"P{n}") for n in (3, 1, 5, 2, 4)]
    await api.expect(201, "POST", "/locations", first)
    await api.expect(201, "POST", "/locations", location_doc(examples_dir, "P0"))
    # Oldest first; one import is one moment, ordered by id within it.
    expected = ["P1", "P2", "P3", "P4", "P5", "P0"]

    async def page(offset: int, limit: int) -> list[str]:
        answer = await api.get(f"/locations?offset={offset}&limit={limit}")
        assert (answer["total"], answer["offset"], answer["limit"]) == (6, offset, limit)
        return [location["id"] for location in answer["items"]]

    pages = [await page(offset, 2) for offset in (0, 2, 4)]
    assert pages == [expected[0:2], expected[2:4], expected[4:6]]
    await api.expect(200, "PATCH", "/locations/P1", {"name": "changed"})
    assert [await page(offset, 2) for offset in (0, 2, 4)] == pages, "a change must not reorder"
    assert await page(6, 2) == []
    everything = await api.get("/locations")
    assert (everything["offset"], everything["limit"]) == (0, 100)
    assert [location["id"] for location in everything["items"]] == expected
    assert (await api.get("/locations?limit=5000"))["limit"] == 1000


@pytest.mark.parametrize("query", ["offset=-1", "limit=0", "limit=ten", "offset=1.5"])
async def test_bad_paging_figures_are_refused_with_400(api: Api, query: str) -> None:
    for path in ("/locations", "/stations", "/tariffs", "/tokens"):
        status, answer = await api.call("GET", f"{path}?{query}")
        assert status == 400, (path, answer)
        assert error_of(answer)["code"] == "invalid_request"


# --------------------------------------------------------------------------- bad documents


async def test_the_defective_official_evse_example_is_refused_with_422_naming_the_field(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    before = await api.get("/locations/LOC1")
    evse = example(examples_dir, "location_put_example_add_evse.json")
    status, answer = await api.call("POST", "/locations/LOC1/evses", evse)
    assert status == 422, answer
    error = error_of(answer)
    assert error["code"] == "invalid_document"
    # DEFECTS.md 1: `floor` (not floor_level), a numeric physical_reference, and a connector
    # without power_type, max_voltage, max_amperage and last_updated.
    offending = ("floor", "physical_reference", "power_type", "max_voltage", "max_amperage")
    named = f"{error.get('path', '')} {error['message']}"
    assert any(name in named for name in offending), error
    assert await api.get("/locations/LOC1") == before


async def test_the_official_tariff_put_example_is_refused_with_422_naming_last_updated(
    api: Api, examples_dir: Path
) -> None:
    tariff = example(examples_dir, "tariff_put_example.json")
    status, answer = await api.call("POST", "/tariffs", tariff)
    assert status == 422, answer
    error = error_of(answer)
    assert error["code"] == "invalid_document"
    assert "last_updated" in f"{error.get('path', '')} {error['message']}", error
    assert (await api.get("/tariffs?include_retired=true"))["total"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/locations"),
        ("PATCH", "/locations/LOC1"),
        ("POST", "/locations/LOC1/evses"),
        ("POST", "/stations"),
        ("POST", "/tariffs"),
        ("POST", "/tokens"),
        ("PATCH", "/tokens/ABC"),
    ],
)
async def test_a_body_that_is_not_json_is_refused_with_400(
    api: Api, method: str, path: str
) -> None:
    status, answer = await api.call(method, path, data='{"id": "LOC1",')
    assert status == 400, answer
    assert error_of(answer)["code"] == "invalid_json"


# --------------------------------------------------------------------------- EVSEs


async def test_an_evse_wired_to_a_station_shows_its_wiring(api: Api, examples_dir: Path) -> None:
    await import_loc1(api, examples_dir)
    await create_station(api, "CP1", "LOC1")
    body = evse_doc("NEW1") | {"station_id": "CP1", "ocpp_evse_id": 1}
    added = await api.expect(201, "POST", "/locations/LOC1/evses", body)
    assert added["station_id"] == "CP1"
    assert added["ocpp_evse_id"] == 1
    assert without_last_updated(added) == without_last_updated(body)
    assert await api.get("/locations/LOC1/evses/NEW1") == added
    location = await api.get("/locations/LOC1")
    assert [evse["uid"] for evse in location["evses"]] == ["3256", "3257", "NEW1"]
    assert location["evses"][2] == added
    assert "station_id" not in location["evses"][0], "an unwired EVSE names no station"


async def test_wiring_an_evse_needs_a_known_station_at_its_location_and_a_number(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    await api.expect(201, "POST", "/locations", location_doc(examples_dir, "LOC2"))
    await create_station(api, "CP2", "LOC2")
    await create_station(api, "CP1", "LOC1")
    cases = [
        ({"station_id": "NOPE", "ocpp_evse_id": 1}, 404),
        ({"station_id": "CP2", "ocpp_evse_id": 1}, 400),
        ({"station_id": "CP1"}, 400),
        ({"station_id": "CP1", "ocpp_evse_id": 0}, 400),
        ({"station_id": "CP1", "ocpp_evse_id": "1"}, 400),
        ({"station_id": 7, "ocpp_evse_id": 1}, 400),
    ]
    for wiring, status in cases:
        got, answer = await api.call("POST", "/locations/LOC1/evses", evse_doc("NEW1") | wiring)
        assert got == status, (wiring, answer)
    assert len((await api.get("/locations/LOC1"))["evses"]) == 2


async def test_a_second_evse_on_the_same_station_evse_number_is_a_conflict(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    await create_station(api, "CP1", "LOC1")
    wiring = {"station_id": "CP1", "ocpp_evse_id": 1}
    await api.expect(201, "POST", "/locations/LOC1/evses", evse_doc("NEW1") | wiring)
    status, answer = await api.call("POST", "/locations/LOC1/evses", evse_doc("NEW2") | wiring)
    assert status == 409, answer
    assert error_of(answer)["code"] == "conflict"
    status, _ = await api.call("GET", "/locations/LOC1/evses/NEW2")
    assert status == 404
    await api.expect(
        201, "POST", "/locations/LOC1/evses", evse_doc("NEW2") | wiring | {"ocpp_evse_id": 2}
    )


async def test_an_evse_uid_that_exists_is_a_conflict_at_any_location(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    await api.expect(201, "POST", "/locations", location_doc(examples_dir, "LOC2"))
    status, answer = await api.call("POST", "/locations/LOC1/evses", evse_doc("3256"))
    assert status == 409, answer
    assert error_of(answer)["code"] == "conflict"
    status, answer = await api.call("POST", "/locations/LOC2/evses", evse_doc("3257"))
    assert status == 409, answer
    assert (await api.get("/locations/LOC2")).get("evses") == []


async def test_patching_an_evse_changes_that_field_only(api: Api, examples_dir: Path) -> None:
    await import_loc1(api, examples_dir)
    before = await api.get("/locations/LOC1/evses/3256")
    patched = await api.expect(200, "PATCH", "/locations/LOC1/evses/3256", {"floor_level": "-3"})
    assert patched["floor_level"] == "-3"
    assert without_last_updated(patched) == without_last_updated(before) | {"floor_level": "-3"}
    assert moment(patched["last_updated"]) > moment(before["last_updated"])
    assert await api.get("/locations/LOC1/evses/3256") == patched


async def test_patching_an_evse_with_connectors_or_another_uid_is_refused_with_422(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    for change, path in (
        ({"connectors": [connector_doc("9")]}, "connectors"),
        ({"uid": "X"}, "uid"),
    ):
        status, answer = await api.call("PATCH", "/locations/LOC1/evses/3256", change)
        assert status == 422, answer
        assert error_of(answer)["path"] == path


async def test_patching_only_the_ocpp_evse_id_keeps_the_station(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    await create_station(api, "CP1", "LOC1")
    wiring = {"station_id": "CP1", "ocpp_evse_id": 1}
    await api.expect(201, "POST", "/locations/LOC1/evses", evse_doc("NEW1") | wiring)
    patched = await api.expect(200, "PATCH", "/locations/LOC1/evses/NEW1", {"ocpp_evse_id": 2})
    assert (patched.get("station_id"), patched.get("ocpp_evse_id")) == ("CP1", 2)


async def test_deleting_an_evse_sets_it_removed_and_keeps_it_listed(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    removed = await api.expect(200, "DELETE", "/locations/LOC1/evses/3257")
    assert removed["status"] == "REMOVED"
    location = await api.get("/locations/LOC1")
    assert [(e["uid"], e["status"]) for e in location["evses"]] == [
        ("3256", "AVAILABLE"),
        ("3257", "REMOVED"),
    ]
    assert await api.get("/locations/LOC1/evses/3257") == removed


async def test_an_unknown_evse_or_connector_is_404(api: Api, examples_dir: Path) -> None:
    await import_loc1(api, examples_dir)
    for path in (
        "/locations/LOC1/evses/NOPE",
        "/locations/LOC1/evses/NOPE/connectors/1",
        "/locations/LOC1/evses/3256/connectors/9",
    ):
        for method in ("GET", "DELETE"):
            status, answer = await api.call(method, path)
            assert status == 404, (method, path, answer)
            error_of(answer)


# --------------------------------------------------------------------------- connectors


async def test_a_connector_can_be_added_and_patched(api: Api, examples_dir: Path) -> None:
    await import_loc1(api, examples_dir)
    added = await api.expect(
        201, "POST", "/locations/LOC1/evses/3257/connectors", connector_doc("2")
    )
    assert without_last_updated(added) == without_last_updated(connector_doc("2"))
    patched = await api.expect(
        200, "PATCH", "/locations/LOC1/evses/3257/connectors/2", {"max_amperage": 16}
    )
    assert without_last_updated(patched) == without_last_updated(
        connector_doc("2", max_amperage=16)
    )
    evse = await api.get("/locations/LOC1/evses/3257")
    assert [c["id"] for c in evse["connectors"]] == ["1", "2"]
    assert evse["connectors"][1] == patched


async def test_adding_a_connector_whose_id_the_evse_has_is_a_conflict(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    status, answer = await api.call(
        "POST", "/locations/LOC1/evses/3257/connectors", connector_doc("1")
    )
    assert status == 409, answer
    status, answer = await api.call(
        "POST", "/locations/LOC1/evses/3257/connectors", connector_doc("2", format="PLUG")
    )
    assert status == 422, answer
    assert error_of(answer)["path"] == "format"


async def test_a_connector_can_be_removed(api: Api, examples_dir: Path) -> None:
    await import_loc1(api, examples_dir)
    status, answer = await api.call("DELETE", "/locations/LOC1/evses/3256/connectors/2")
    assert status == 204, answer
    evse = await api.get("/locations/LOC1/evses/3256")
    assert [c["id"] for c in evse["connectors"]] == ["1"]


async def test_the_last_connector_of_an_evse_cannot_be_removed(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    status, answer = await api.call("DELETE", "/locations/LOC1/evses/3257/connectors/1")
    assert status == 409, answer
    assert error_of(answer)["code"] == "conflict"
    await api.get("/locations/LOC1/evses/3257/connectors/1")


async def test_assigning_an_unknown_tariff_is_404(api: Api, examples_dir: Path) -> None:
    await import_loc1(api, examples_dir)
    path = "/locations/LOC1/evses/3256/connectors/1/tariffs"
    status, answer = await api.call("PUT", path, {"tariff_ids": ["NOPE"]})
    assert status == 404, answer
    assert "NOPE" in error_of(answer)["message"]
    connector = await api.get("/locations/LOC1/evses/3256/connectors/1")
    assert connector["tariff_ids"] == ["11"]


@pytest.mark.parametrize("body", [{}, {"tariff_ids": "14"}, {"tariff_ids": [14]}, []])
async def test_a_tariff_assignment_must_be_a_list_of_ids(
    api: Api, examples_dir: Path, body: Any
) -> None:
    await import_loc1(api, examples_dir)
    status, answer = await api.call("PUT", "/locations/LOC1/evses/3256/connectors/1/tariffs", body)
    assert status == 400, answer


def ranged_tariff(
    examples_dir: Path, tariff_id: str, start: str | None, end: str | None
) -> dict[str, Any]:
    """The official REGULAR tariff example under another id, valid from ``start`` to ``end``."""
    document = example(examples_dir, "tariff_4_complex.json") | {"id": tariff_id}
    if start is not None:
        document["start_date_time"] = start
    if end is not None:
        document["end_date_time"] = end
    return document


async def test_two_tariffs_of_one_type_valid_at_the_same_time_are_refused_with_400(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    tariffs = [
        ranged_tariff(examples_dir, "T2024", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
        ranged_tariff(examples_dir, "T2024H2", "2024-07-01T00:00:00Z", None),
        ranged_tariff(examples_dir, "TALWAYS", None, None),
    ]
    await api.expect(201, "POST", "/tariffs", tariffs)
    path = "/locations/LOC1/evses/3256/connectors/1/tariffs"
    for pair in (["T2024", "T2024H2"], ["TALWAYS", "T2024"], ["T2024", "T2024"]):
        status, answer = await api.call("PUT", path, {"tariff_ids": pair})
        assert status == 400, (pair, answer)
        assert error_of(answer)["code"] == "invalid_request"
    assert (await api.get(path.removesuffix("/tariffs")))["tariff_ids"] == ["11"]


async def test_assigned_tariffs_appear_on_the_connector_in_order(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    tariffs = [
        ranged_tariff(examples_dir, "T2024", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
        ranged_tariff(examples_dir, "T2025", "2025-01-01T00:00:00Z", None),
        example(examples_dir, "tariff_3_alt_url.json"),  # id 13, PROFILE_CHEAP
    ]
    await api.expect(201, "POST", "/tariffs", tariffs)
    path = "/locations/LOC1/evses/3256/connectors/1"
    assigned = await api.expect(
        200, "PUT", f"{path}/tariffs", {"tariff_ids": ["T2025", "13", "T2024"]}
    )
    assert assigned["tariff_ids"] == ["T2025", "13", "T2024"]
    assert (await api.get(path))["tariff_ids"] == ["T2025", "13", "T2024"]
    await api.expect(200, "DELETE", "/tariffs/13")
    assert (await api.get(path))["tariff_ids"] == ["T2025", "T2024"]
    cleared = await api.expect(200, "PUT", f"{path}/tariffs", {"tariff_ids": []})
    assert cleared.get("tariff_ids", []) == []


async def test_retiring_a_tariff_takes_it_off_every_connector(api: Api, examples_dir: Path) -> None:
    # The official location lists tariffs 11, 13 and 12; the tariff examples hold 12 and 13.
    await import_loc1(api, examples_dir)
    await api.expect(
        201,
        "POST",
        "/tariffs",
        [
            example(examples_dir, "tariff_3_alt_url.json"),
            example(examples_dir, "tariff_1_simple_2hour.json"),
        ],
    )
    before = await api.get("/locations/LOC1/evses/3256/connectors/2")
    assert before["tariff_ids"] == ["13"]
    await api.expect(200, "DELETE", "/tariffs/13")
    after = await api.get("/locations/LOC1/evses/3256/connectors/2")
    assert after.get("tariff_ids", []) == []
    assert moment(after["last_updated"]) > moment(before["last_updated"])
    location = await api.get("/locations/LOC1")
    assert [c["tariff_ids"] for e in location["evses"] for c in e["connectors"]] == [
        ["11"],
        [],
        ["12"],
    ]


async def test_a_retired_tariff_cannot_be_assigned(api: Api, examples_dir: Path) -> None:
    await import_loc1(api, examples_dir)
    await api.expect(201, "POST", "/tariffs", example(examples_dir, "tariff_3_alt_url.json"))
    await api.expect(200, "DELETE", "/tariffs/13")
    path = "/locations/LOC1/evses/3256/connectors/1/tariffs"
    status, answer = await api.call("PUT", path, {"tariff_ids": ["13"]})
    assert status == 400, answer


# --------------------------------------------------------------------------- stations


async def test_a_station_created_with_a_password_never_shows_it_or_its_hash(
    api: Api, runtime: Runtime, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    password = "correct-horse-battery"
    created = await create_station(api, "CP1", "LOC1", password=password)
    assert created["id"] == "CP1"
    assert created["location_id"] == "LOC1"
    assert created["has_password"] is True
    assert created["lenient"] is False
    assert created["registered_by"] == "operator"
    assert created["retired"] is False
    assert created["online"] is False
    async with runtime.uow() as uow:
        station = await uow.session.get(ChargingStation, "CP1")
        assert station is not None
        stored_hash = station.password_hash
    assert stored_hash is not None
    assert verify_password(password, stored_hash)
    answers = [
        created,
        await api.get("/stations/CP1"),
        await api.get("/stations"),
        await api.expect(200, "PATCH", "/stations/CP1", {"lenient": True}),
    ]
    for answer in answers:
        text = json.dumps(answer)
        assert password not in text
        assert stored_hash not in text
        assert stored_hash.rsplit("$", 1)[-1] not in text
        assert "password_hash" not in text
        assert '"password"' not in text


async def test_creating_a_station_twice_is_a_conflict(api: Api, examples_dir: Path) -> None:
    await import_loc1(api, examples_dir)
    await create_station(api, "CP1", "LOC1")
    status, answer = await api.call("POST", "/stations", {"id": "CP1", "location_id": "LOC1"})
    assert status == 409, answer
    assert error_of(answer)["code"] == "conflict"
    await api.expect(200, "DELETE", "/stations/CP1")
    status, _ = await api.call("POST", "/stations", {"id": "CP1", "location_id": "LOC1"})
    assert status == 409, "a retired station's id is not reused"


@pytest.mark.parametrize("station_id", ["CP:1", "CP/1", "", "CP 1", "C" * 49, 12])
async def test_a_station_id_that_cannot_be_an_ocpp_identity_is_refused_with_400(
    api: Api, examples_dir: Path, station_id: Any
) -> None:
    await import_loc1(api, examples_dir)
    body = {"id": station_id, "location_id": "LOC1"}
    status, answer = await api.call("POST", "/stations", body)
    assert status == 400, answer
    assert error_of(answer)["code"] == "invalid_request"
    assert (await api.get("/stations"))["total"] == 0
    assert documented_as_invalid("post", "/stations", body)


@pytest.mark.parametrize(
    "body",
    [
        {"id": "CP1"},
        {"id": "CP1", "location_id": "LOC1", "password": "short"},
        {"id": "CP1", "location_id": "LOC1", "password": 12345678},
        {"id": "CP1", "location_id": "LOC1", "lenient": "yes"},
        {"id": "CP1", "location_id": "LOC1", "colour": "red"},
    ],
)
async def test_a_station_with_a_missing_or_bad_field_is_refused_with_400(
    api: Api, examples_dir: Path, body: dict[str, Any]
) -> None:
    await import_loc1(api, examples_dir)
    status, answer = await api.call("POST", "/stations", body)
    assert status == 400, answer
    assert (await api.get("/stations"))["total"] == 0
    assert documented_as_invalid("post", "/stations", body)


async def test_a_station_at_an_unknown_location_is_404(api: Api) -> None:
    status, answer = await api.call("POST", "/stations", {"id": "CP1", "location_id": "NOPE"})
    assert status == 404, answer
    assert "NOPE" in error_of(answer)["message"]
    status, _ = await api.call("GET", "/stations/CP1")
    assert status == 404


async def test_patching_a_station_changes_its_password_leniency_and_location(
    api: Api, runtime: Runtime, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    await api.expect(201, "POST", "/locations", location_doc(examples_dir, "LOC2"))
    await create_station(api, "CP1", "LOC1", password="first-password")

    async def stored_hash() -> str | None:
        async with runtime.uow() as uow:
            station = await uow.session.get(ChargingStation, "CP1")
            assert station is not None
            return station.password_hash

    patched = await api.expect(200, "PATCH", "/stations/CP1", {"password": "second-password"})
    assert patched["has_password"] is True
    new_hash = await stored_hash()
    assert new_hash is not None
    assert verify_password("second-password", new_hash)
    assert not verify_password("first-password", new_hash)

    patched = await api.expect(200, "PATCH", "/stations/CP1", {"lenient": True})
    assert (patched["lenient"], patched["has_password"]) == (True, True)
    patched = await api.expect(200, "PATCH", "/stations/CP1", {"location_id": "LOC2"})
    assert (patched["location_id"], patched["lenient"]) == ("LOC2", True)
    patched = await api.expect(200, "PATCH", "/stations/CP1", {"password": None})
    assert patched["has_password"] is False
    assert await stored_hash() is None
    assert await api.get("/stations/CP1") == patched

    for body, status in (
        ({"location_id": "NOPE"}, 404),
        ({"password": "short"}, 400),
        ({"lenient": 1}, 400),
        ({"id": "CP2"}, 400),
    ):
        got, answer = await api.call("PATCH", "/stations/CP1", body)
        assert got == status, (body, answer)
        if status == 400:
            assert documented_as_invalid("patch", "/stations/{station_id}", body), body
    assert await api.get("/stations/CP1") == patched
    status, _ = await api.call("PATCH", "/stations/NOPE", {"lenient": True})
    assert status == 404


async def test_deleting_a_station_retires_it_and_removes_the_evses_it_serves(
    api: Api, examples_dir: Path
) -> None:
    await import_loc1(api, examples_dir)
    await create_station(api, "CP1", "LOC1")
    wiring = {"station_id": "CP1", "ocpp_evse_id": 1}
    await api.expect(201, "POST", "/locations/LOC1/evses", evse_doc("NEW1") | wiring)
    retired = await api.expect(200, "DELETE", "/stations/CP1")
    assert retired["retired"] is True
    assert retired["retired_at"] is not None
    assert await api.get("/stations/CP1") == retired
    location = await api.get("/locations/LOC1")
    assert [(e["uid"], e["status"]) for e in location["evses"]] == [
        ("3256", "AVAILABLE"),
        ("3257", "RESERVED"),
        ("NEW1", "REMOVED"),
    ]
    status, _ = await api.call("DELETE", "/stations/NOPE")
    assert status == 404


async def test_stations_can_be_listed_by_location(api: Api, examples_dir: Path) -> None:
    await import_loc1(api, examples_dir)
    await api.expect(201, "POST", "/locations", location_doc(examples_dir, "LOC2"))
    for station_id, location_id in (("CP3", "LOC1"), ("CP1", "LOC2"), ("CP2", "LOC1")):
        await create_station(api, station_id, location_id)

    async def ids(query: str) -> tuple[list[str], int]:
        answer = await api.get(f"/stations{query}")
        return [s["id"] for s in answer["items"]], answer["total"]

    assert await ids("") == (["CP1", "CP2", "CP3"], 3)
    assert await ids("?location_id=LOC1") == (["CP2", "CP3"], 2)
    assert await ids("?location_id=LOC2") == (["CP1"], 1)
    assert await ids("?location_id=NOPE") == ([], 0)
    assert await ids("?location_id=LOC1&offset=1&limit=1") == (["CP3"], 2)


# --------------------------------------------------------------------------- tariffs


async def test_every_valid_official_tariff_example_imports_in_one_post(
    api: Api, examples_dir: Path
) -> None:
    documents = valid_tariff_examples(examples_dir)
    ids = [document["id"] for document in documents]
    unique = list(dict.fromkeys(ids))
    # The examples reuse ids (12, 16, 20): a later document replaces the earlier one.
    repeats = [tariff_id for index, tariff_id in enumerate(ids) if tariff_id in ids[:index]]
    status, result = await api.call("POST", "/tariffs", documents)
    assert status == (200 if repeats else 201), result
    assert result == {"created": unique, "updated": repeats}
    listed = await api.get("/tariffs")
    assert listed["total"] == len(unique)
    assert [tariff["id"] for tariff in listed["items"]] == sorted(unique)
    last_of = {document["id"]: document for document in documents}
    for tariff in listed["items"]:
        assert without_last_updated(tariff) == without_last_updated(last_of[tariff["id"]])


async def test_an_imported_tariff_reads_back_as_sent_except_last_updated(
    api: Api, examples_dir: Path
) -> None:
    document = example(examples_dir, "tariff_6_025kwh_start_max_price.json")
    assert await api.expect(201, "POST", "/tariffs", document) == {
        "created": ["16"],
        "updated": [],
    }
    stored = await api.get("/tariffs/16")
    assert without_last_updated(stored) == without_last_updated(document)
    assert stored["last_updated"] != document["last_updated"], "last_updated is ours"
    status, answer = await api.call("GET", "/tariffs/NOPE")
    assert status == 404, answer


async def test_putting_a_tariff_replaces_it(api: Api, examples_dir: Path) -> None:
    document = example(examples_dir, "tariff_4_complex.json")
    await api.expect(201, "POST", "/tariffs", document)
    before = await api.get("/tariffs/14")
    replacement = copy.deepcopy(document) | {"currency": "CHF"}
    del replacement["tariff_alt_url"]
    replaced = await api.expect(200, "PUT", "/tariffs/14", replacement)
    assert without_last_updated(replaced) == without_last_updated(replacement)
    assert "tariff_alt_url" not in replaced, "PUT replaces: a left-out field is gone"
    assert moment(replaced["last_updated"]) > moment(before["last_updated"])
    assert await api.get("/tariffs/14") == replaced

    status, answer = await api.call("PUT", "/tariffs/14", replacement | {"id": "15"})
    assert status == 422, answer
    assert error_of(answer)["path"] == "id"
    status, answer = await api.call("PUT", "/tariffs/14", replacement | {"currency": "euro"})
    assert status == 422, answer
    assert error_of(answer)["path"] == "currency"
    status, answer = await api.call("PUT", "/tariffs/99", replacement | {"id": "99"})
    assert status == 404, answer
    assert await api.get("/tariffs/14") == replaced


async def test_retired_tariffs_are_listed_only_when_asked_for(api: Api, examples_dir: Path) -> None:
    documents = [
        example(examples_dir, name)
        for name in (
            "tariff_3_alt_url.json",
            "tariff_4_complex.json",
            "tariff_5_free_of_charge.json",
        )
    ]
    await api.expect(201, "POST", "/tariffs", documents)
    retired = await api.expect(200, "DELETE", "/tariffs/14")
    assert retired["id"] == "14"
    assert await api.get("/tariffs/14") == retired, "a retired tariff can still be read"

    async def ids(query: str) -> tuple[list[str], int]:
        answer = await api.get(f"/tariffs{query}")
        return [t["id"] for t in answer["items"]], answer["total"]

    assert await ids("") == (["13", "15"], 2)
    assert await ids("?include_retired=false") == (["13", "15"], 2)
    assert await ids("?include_retired=true") == (["13", "14", "15"], 3)
    assert await ids("?include_retired=true&offset=1&limit=1") == (["14"], 3)
    status, answer = await api.call("PUT", "/tariffs/14", documents[1])
    assert status == 400, "a retired tariff is revived by importing it, not replaced"
    status, answer = await api.call("DELETE", "/tariffs/NOPE")
    assert status == 404, answer
    await api.expect(200, "POST", "/tariffs", documents[1])
    assert await ids("") == (["13", "14", "15"], 3), "importing a retired tariff revives it"


# --------------------------------------------------------------------------- tokens


async def test_a_token_is_created_with_our_party_and_the_defaults(
    api: Api, runtime: Runtime
) -> None:
    token = await api.expect(201, "POST", "/tokens", {"uid": "ABC123"})
    assert runtime.settings.country_code == "NL"
    assert runtime.settings.party_id == "CPM"
    assert without_last_updated(token) == {
        "country_code": "NL",
        "party_id": "CPM",
        "uid": "ABC123",
        "type": "RFID",
        "contract_id": "NL-CPM-ABC123",
        "issuer": "CPM",
        "valid": True,
        "whitelist": "ALWAYS",
    }
    moment(token["last_updated"])
    assert await api.get("/tokens/ABC123") == token
    listed = await api.get("/tokens?source=local")
    assert (listed["items"], listed["total"]) == ([token], 1)
    assert (await api.get("/tokens?source=ocpi"))["total"] == 0


async def test_creating_a_token_twice_is_a_conflict_but_another_type_is_another_token(
    api: Api,
) -> None:
    await api.expect(201, "POST", "/tokens", {"uid": "ABC123"})
    status, answer = await api.call("POST", "/tokens", {"uid": "ABC123", "type": "RFID"})
    assert status == 409, answer
    assert error_of(answer)["code"] == "conflict"
    app_user = await api.expect(201, "POST", "/tokens", {"uid": "ABC123", "type": "APP_USER"})
    assert app_user["type"] == "APP_USER"
    assert (await api.get("/tokens"))["total"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {"uid": "ABC123", "colour": "red"},
        {"uid": "ABC123", "whitelist": "SOMETIMES"},
        {"uid": "ABC123", "whitelist": "always"},
        {"uid": "ABC123", "type": "BADGE"},
        {"uid": "ABC123", "valid": "true"},
        {"uid": "A" * 37},
        {"uid": ""},
        {"type": "RFID"},
    ],
)
async def test_a_token_with_an_unknown_field_or_a_bad_value_is_refused_with_400(
    api: Api, body: dict[str, Any]
) -> None:
    status, answer = await api.call("POST", "/tokens", body)
    assert status == 400, answer
    assert error_of(answer)["code"] == "invalid_request"
    assert (await api.get("/tokens"))["total"] == 0
    assert documented_as_invalid("post", "/tokens", body)


async def test_patching_a_token_changes_the_fields_sent(api: Api) -> None:
    created = await api.expect(201, "POST", "/tokens", {"uid": "ABC123", "group_id": "G1"})
    patched = await api.expect(
        200,
        "PATCH",
        "/tokens/ABC123",
        {"visual_number": "DF000-2001-8999", "whitelist": "ALLOWED", "group_id": None},
    )
    expected = without_last_updated(created) | {
        "visual_number": "DF000-2001-8999",
        "whitelist": "ALLOWED",
    }
    del expected["group_id"]
    assert without_last_updated(patched) == expected
    assert await api.get("/tokens/ABC123") == patched
    for body in (
        {"uid": "OTHER"},
        {"type": "APP_USER"},
        {"whitelist": "NOPE"},
        {"x": 1},
        {"valid": None},
    ):
        status, answer = await api.call("PATCH", "/tokens/ABC123", body)
        assert status == 400, (body, answer)
    for body in ({"whitelist": "NOPE"}, {"x": 1}, {"valid": None}):
        assert documented_as_invalid("patch", "/tokens/{uid}", body), body
    status, _ = await api.call("PATCH", "/tokens/NOPE", {"valid": False})
    assert status == 404
    assert await api.get("/tokens/ABC123") == patched


async def test_deleting_a_token_makes_it_invalid_and_keeps_it(api: Api) -> None:
    await api.expect(201, "POST", "/tokens", {"uid": "ABC123"})
    retired = await api.expect(200, "DELETE", "/tokens/ABC123")
    assert retired["valid"] is False
    assert await api.get("/tokens/ABC123") == retired
    assert (await api.get("/tokens"))["items"] == [retired]
    status, _ = await api.call("DELETE", "/tokens/NOPE")
    assert status == 404


async def test_reading_changing_and_retiring_a_token_respect_its_type(api: Api) -> None:
    rfid = await api.expect(201, "POST", "/tokens", {"uid": "ABC123"})
    app = await api.expect(201, "POST", "/tokens", {"uid": "ABC123", "type": "APP_USER"})
    assert await api.get("/tokens/ABC123") == rfid
    assert await api.get("/tokens/ABC123?type=RFID") == rfid
    assert await api.get("/tokens/ABC123?type=APP_USER") == app
    status, answer = await api.call("GET", "/tokens/ABC123?type=OTHER")
    assert status == 404, answer
    retired = await api.expect(200, "DELETE", "/tokens/ABC123?type=APP_USER")
    assert (retired["type"], retired["valid"]) == ("APP_USER", False)
    assert (await api.get("/tokens/ABC123"))["valid"] is True
    patched = await api.expect(200, "PATCH", "/tokens/ABC123?type=APP_USER", {"language": "nl"})
    assert (patched["type"], patched["language"]) == ("APP_USER", "nl")
    assert "language" not in await api.get("/tokens/ABC123")


# --------------------------------------------------------------------------- OpenAPI

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PUBLIC = {("get", "/health"), ("get", "/openapi.json")}
STATION_ANSWERS = {("post", "/stations/{station_id}/commands/{command}", "502")}
"""Error statuses whose body is what a station said (its CALLERROR), not an API error."""


def openapi_document() -> dict[str, Any]:
    return json.loads(OPENAPI_FILE.read_text("utf-8"))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield method, path, item[method]


def registered_routes(runtime: Runtime) -> set[tuple[str, str]]:
    """(method, path below /api) of every route of the operator sub-app the runtime serves."""
    root = create_app(
        HttpContext(
            settings=runtime.settings,
            uow=runtime.uow,
            health=runtime.health,
            base_url=runtime.base_url,
        )
    )
    subapps = [
        resource.get_info()["app"]
        for resource in root.router.resources()
        if resource.get_info().get("prefix") == "/api"
    ]
    assert len(subapps) == 1, "the operator API is one sub-app under /api"
    found: set[tuple[str, str]] = set()
    for route in subapps[0].router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD beside every GET
        canonical = route.resource.canonical if route.resource is not None else ""
        assert canonical.startswith("/api/"), canonical
        found.add((route.method.lower(), canonical.removeprefix("/api")))
    return found


def resolve(document: dict[str, Any], node: Any) -> Any:
    """Follow a local ``$ref`` (JSON pointer into ``document``), once or more."""
    while isinstance(node, dict) and "$ref" in node:
        reference = node["$ref"]
        assert reference.startswith("#/"), reference
        node = document
        for part in reference[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict), reference
            assert part in node, f"unresolved $ref {reference}"
            node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


async def test_every_route_is_documented_and_every_documented_operation_exists(
    api: Api, runtime: Runtime
) -> None:
    status, document = await api.call("GET", "/openapi.json", token=None)
    assert status == 200
    documented = {(method, path) for method, path, _ in operations(document)}
    registered = registered_routes(runtime)
    assert len(registered) >= 30, sorted(registered)
    assert sorted(registered - documented) == [], "routes missing from openapi.json"
    assert sorted(documented - registered) == [], "stale operations in openapi.json"


def test_the_openapi_document_is_structurally_sound() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"]
    assert document["info"]["version"]
    assert [server["url"] for server in document["servers"]] == ["/api"]
    components = document["components"]
    for kind in ("securitySchemes", "schemas", "responses", "parameters"):
        assert components[kind], kind
    scheme = components["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"bearerAuth": []}]

    for reference in refs(document):
        resolve(document, {"$ref": reference})
    for schema in components["schemas"].values():
        Draft202012Validator.check_schema(schema)

    operation_ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    for path, item in document["paths"].items():
        assert path.startswith("/"), path
        assert not path.startswith("/api/"), f"{path}: paths are below the server url /api"
        templated = set(re.findall(r"{(\w+)}", path))
        for method in HTTP_METHODS:
            if method not in item:
                continue
            operation = item[method]
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), where
            parameters = [
                resolve(document, p)
                for p in item.get("parameters", []) + operation.get("parameters", [])
            ]
            declared = {p["name"] for p in parameters if p["in"] == "path"}
            assert declared == templated, where
            assert all(p["required"] for p in parameters if p["in"] == "path"), where
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), where
            for code, response in responses.items():
                response = resolve(document, response)
                assert response["description"], (where, code)
                if code.startswith(("4", "5")) and code != "503":
                    if (method, path, code) in STATION_ANSWERS:
                        continue
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (where, code)
            if (method, path) in PUBLIC:
                assert operation["security"] == [], where
                continue
            assert "security" not in operation, f"{where} must use the global bearer security"
            assert "401" in responses, where
            if "requestBody" in operation:
                assert "400" in responses, where
                assert "application/json" in operation["requestBody"]["content"], where
    assert {(m, p) for m, p, _ in operations(document)} >= PUBLIC

    # The documented query parameters, where the handlers read them.
    def query_names(method: str, path: str) -> set[str]:
        operation = document["paths"][path][method]
        return {
            resolve(document, p)["name"]
            for p in operation.get("parameters", [])
            if resolve(document, p)["in"] == "query"
        }

    assert query_names("get", "/locations") == {"offset", "limit"}
    assert query_names("get", "/stations") == {"offset", "limit", "location_id"}
    assert query_names("get", "/tariffs") == {"offset", "limit", "include_retired"}
    assert query_names("get", "/tokens") == {"offset", "limit", "source"}
    token_item = document["paths"]["/tokens/{uid}"]
    assert "type" in {resolve(document, p)["name"] for p in token_item["parameters"]}

    # Error document and page envelope, as the middleware and page_view write them.
    error = components["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(error["properties"]["error"]["properties"]) == {
        "code",
        "message",
        "path",
        "problems",
    }
    assert set(error["properties"]["error"]["required"]) == {"code", "message"}
    page = components["schemas"]["Page"]
    assert set(page["required"]) == {"items", "total", "offset", "limit"}


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def schema_validator(document: dict[str, Any], pointer: str) -> Draft202012Validator:
    """A validator of the schema at ``pointer`` (JSON pointer, no '#') in the document."""
    registry: Registry = Registry().with_resource(
        "urn:cpms:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"urn:cpms:openapi#/{pointer}"}, registry=registry)


def answer_validator(
    document: dict[str, Any], method: str, template: str, status: int
) -> Draft202012Validator | None:
    """A validator of the answer documented for ``method template`` with ``status``."""
    responses = document["paths"][template][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {template} does not document {status}"
    if "content" not in resolve(document, responses[str(status)]):
        return None
    pointer = _pointer("paths", template, method, "responses", str(status))
    if "$ref" in responses[str(status)]:
        pointer = responses[str(status)]["$ref"][2:]
    return schema_validator(document, f"{pointer}/content/application~1json/schema")


def request_validator(document: dict[str, Any], method: str, template: str) -> Any:
    """A validator of the request body documented for ``method template``."""
    assert "requestBody" in document["paths"][template][method], (method, template)
    pointer = _pointer("paths", template, method, "requestBody", "content", "application/json")
    return schema_validator(document, f"{pointer}/schema")


def match_template(document: dict[str, Any], path: str) -> str:
    """The documented path template ``path`` (under /api) is an instance of."""
    segments = path.removeprefix("/api").split("/")
    for template in document["paths"]:
        parts = template.split("/")
        if len(parts) == len(segments) and all(
            part == segment or (part.startswith("{") and part.endswith("}"))
            for part, segment in zip(parts, segments, strict=True)
        ):
            return template
    raise AssertionError(f"{path} matches no documented path")


async def test_answers_have_the_documented_statuses_and_shapes(
    api: Api, examples_dir: Path
) -> None:
    await api.call("GET", "/health", token=None)
    await api.call("GET", "/openapi.json", token=None)
    await api.call("GET", "/locations", token=None)
    await import_loc1(api, examples_dir)
    await api.expect(200, "POST", "/locations", example(examples_dir, "location_example.json"))
    await api.get("/locations?limit=1")
    await api.get("/locations/LOC1")
    await api.expect(200, "PATCH", "/locations/LOC1", {"name": "Gent"})
    await api.expect(422, "PATCH", "/locations/LOC1", {"evses": []})
    await api.expect(404, "GET", "/locations/NOPE")
    await api.expect(400, "GET", "/locations?limit=0")
    await api.call("POST", "/locations", data="{")
    await api.expect(
        201,
        "POST",
        "/stations",
        {"id": "CP1", "location_id": "LOC1", "password": "a-good-password"},
    )
    await api.expect(409, "POST", "/stations", {"id": "CP1", "location_id": "LOC1"})
    await api.expect(400, "POST", "/stations", {"id": "CP:1", "location_id": "LOC1"})
    wiring = {"station_id": "CP1", "ocpp_evse_id": 1}
    await api.expect(201, "POST", "/locations/LOC1/evses", evse_doc("NEW1") | wiring)
    await api.expect(409, "POST", "/locations/LOC1/evses", evse_doc("NEW2") | wiring)
    await api.expect(
        422,
        "POST",
        "/locations/LOC1/evses",
        example(examples_dir, "location_put_example_add_evse.json"),
    )
    await api.get("/locations/LOC1/evses/NEW1")
    await api.get("/locations/LOC1/evses/NEW1/connectors/1")
    await api.expect(404, "GET", "/locations/LOC1/evses/NEW1/connectors/9")
    await api.expect(409, "DELETE", "/locations/LOC1/evses/NEW1/connectors/1")
    await api.expect(409, "POST", "/locations/LOC1/evses/NEW1/connectors", connector_doc("1"))
    await api.expect(
        404, "PUT", "/locations/LOC1/evses/NEW1/connectors/1/tariffs", {"tariff_ids": ["X"]}
    )
    await api.expect(201, "POST", "/tariffs", valid_tariff_examples(examples_dir)[:3])
    await api.expect(422, "POST", "/tariffs", example(examples_dir, "tariff_put_example.json"))
    await api.get("/tariffs?include_retired=true")
    tariff = (await api.get("/tariffs"))["items"][0]
    await api.expect(200, "PUT", f"/tariffs/{tariff['id']}", tariff)
    await api.expect(200, "DELETE", f"/tariffs/{tariff['id']}")
    await api.expect(
        201,
        "POST",
        "/tokens",
        {"uid": "ABC123", "energy_contract": {"supplier_name": "Greenchoice"}},
    )
    await api.expect(400, "POST", "/tokens", {"uid": "ABC123", "x": 1})
    await api.get("/tokens/ABC123")
    await api.expect(200, "PATCH", "/tokens/ABC123", {"language": "nl"})
    await api.expect(200, "DELETE", "/tokens/ABC123")
    await api.get("/tokens?source=local")
    await api.get("/stations/CP1")
    await api.get("/stations?location_id=LOC1")
    await api.expect(200, "PATCH", "/stations/CP1", {"lenient": True})
    await api.expect(409, "DELETE", "/locations/LOC1")
    await api.expect(200, "DELETE", "/stations/CP1")
    await api.expect(200, "DELETE", "/locations/LOC1")

    document = openapi_document()
    checked: set[tuple[str, str, int]] = set()
    for exchange in api.exchanges:
        template = match_template(document, exchange.path)
        method = exchange.method.lower()
        validator = answer_validator(document, method, template, exchange.status)
        if validator is None:
            assert exchange.body is None, exchange
        else:
            problems = [e.message for e in validator.iter_errors(exchange.body)]
            assert problems == [], (exchange.method, exchange.path, exchange.status, problems)
        if exchange.sent is not NO_BODY and 200 <= exchange.status < 300:
            problems = [
                e.message
                for e in request_validator(document, method, template).iter_errors(exchange.sent)
            ]
            assert problems == [], ("accepted but undocumented", exchange.path, problems)
        checked.add((method, template, exchange.status))
    assert len(checked) >= 40, sorted(checked)
