"""Station commands, the station log and station approval through the operator API.

A started ``Runtime`` (real OCPP websocket server, real aiohttp server, real SQLite and, with
``CPMS_TEST_POSTGRES_URL``, PostgreSQL) is driven over HTTP while a ``raw_station`` (plain JSON
frames, no code shared with the gateway) plays the station: it reads the CALL the server sends
with ``next_call()`` and answers with ``reply()`` (or a CALLERROR, or silence), concurrently with
the HTTP request. Covered: ``POST /api/stations/{id}/commands/{name}`` (answered, CALLERROR,
timeout, offline, not booted, Pending, unknown command, bad arguments, bad requests, no token,
no gateway), ``GET /api/stations/{id}/commands``, ``GET /api/stations/{id}/events`` and
``POST /api/stations/{id}/approve``. Every answer is also checked against ``openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from raw_station import STEP, RawStation, raw_station
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cpms.admission import AdmissionPolicy
from cpms.config import Settings
from cpms.locations import ensure_default_location
from cpms.runtime import Runtime, bound_port, default_location
from cpms.stations import create_station
from ocpi_api.app import create_app
from ocpi_api.context import HttpContext

from support import ADMIN_TOKEN, TIME_UNIT

OPENAPI_FILE = Path(__file__).resolve().parents[3] / "ocpi_api" / "operator" / "openapi.json"
NO_BODY: Any = object()
STATION = "CP1"
SILENT_TIMEOUT = 0.5 * TIME_UNIT
"""Seconds a command waits for a station that never answers."""


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
    registry: Registry = Registry().with_resource(
        "urn:cpms:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    validator = Draft202012Validator(
        {"$ref": f"urn:cpms:openapi#/{pointer}/content/application~1json/schema"},
        registry=registry,
    )
    return [error.message for error in validator.iter_errors(answer)]


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
        return status, answer

    async def expect(self, status: int, method: str, path: str, body: Any = NO_BODY) -> Any:
        """Send one request, assert the status, return the JSON answer."""
        got, answer = await self.call(method, path, body)
        assert got == status, f"{method} {path}: expected {status}, got {got}: {answer}"
        return answer


def error_of(answer: Any, code: str) -> dict[str, Any]:
    """The error object of an API error document, checked to carry ``code``."""
    assert set(answer) == {"error"}, answer
    assert answer["error"]["code"] == code, answer
    assert answer["error"]["message"], answer
    return answer["error"]


# --------------------------------------------------------------------------- fixtures


async def add_station(runtime: Runtime, station_id: str = STATION) -> None:
    """Create ``station_id`` at the default location, as an operator would."""
    async with runtime.uow() as unit:
        await ensure_default_location(unit, default_location(runtime.settings))
        await unit.commit()
    await create_station(
        runtime.uow(), station_id, location_id=runtime.settings.default_location_id
    )


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[Api]:
    """A client of the runtime's operator API, with the operator token; CP1 exists."""
    await add_station(runtime)
    async with aiohttp.ClientSession(base_url=runtime.base_url()) as session:
        yield Api(session)


@pytest.fixture
async def booted(runtime: Runtime, api: Api) -> AsyncIterator[RawStation]:
    """CP1 connected over OCPP 1.6 and booted (Accepted)."""
    async with raw_station(runtime.ocpp_port, STATION) as station:
        assert (await station.boot())["status"] == "Accepted"
        yield station


@pytest.fixture
async def pending_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A started node whose unknown stations register on connect and wait in Pending."""
    node = Runtime(settings.replace(station_admission=AdmissionPolicy.PENDING), node="test-node")
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


@pytest.fixture
async def pending_api(pending_runtime: Runtime) -> AsyncIterator[Api]:
    """A client of the pending node's operator API."""
    async with aiohttp.ClientSession(base_url=pending_runtime.base_url()) as session:
        yield Api(session)


async def answer_next(station: RawStation, payload: dict[str, Any]) -> list[Any]:
    """Read the next CALL the server sends and answer it with ``payload``; return the CALL."""
    frame = await station.next_call()
    await station.reply(frame[1], payload)
    return frame


async def command(
    api: Api,
    station: RawStation,
    name: str,
    arguments: dict[str, Any],
    answer: dict[str, Any],
    *,
    station_id: str = STATION,
) -> tuple[int, Any, list[Any]]:
    """POST a command while ``station`` answers it; return status, API answer and the CALL."""
    answering = asyncio.create_task(answer_next(station, answer))
    try:
        status, body = await api.call("POST", f"/stations/{station_id}/commands/{name}", arguments)
        frame = await asyncio.wait_for(answering, STEP)
    finally:
        answering.cancel()
    return status, body, frame


# --------------------------------------------------------------------------- commands


async def test_a_command_the_station_answers_gives_200_with_its_answer(
    api: Api, booted: RawStation
) -> None:
    status, answer, frame = await command(
        api, booted, "Reset", {"type": "Soft"}, {"status": "Accepted"}
    )
    assert status == 200, answer
    assert answer == {
        "command": "Reset",
        "status": "answered",
        "response": {"status": "Accepted"},
        "problems": [],
    }
    assert frame[0] == 2
    assert frame[2] == "Reset"
    assert frame[3] == {"type": "Soft"}


async def test_an_empty_body_sends_an_empty_payload(api: Api, booted: RawStation) -> None:
    answering = asyncio.create_task(answer_next(booted, {"status": "Accepted"}))
    status, answer = await api.call("POST", f"/stations/{STATION}/commands/ClearCache", data="")
    frame = await asyncio.wait_for(answering, STEP)
    assert status == 200, answer
    assert answer["response"] == {"status": "Accepted"}
    assert frame[2:] == ["ClearCache", {}]


async def test_an_answer_that_breaks_the_schema_is_returned_with_its_problems(
    api: Api, booted: RawStation
) -> None:
    status, answer, _ = await command(api, booted, "Reset", {"type": "Hard"}, {"status": "Maybe"})
    assert status == 200, answer
    assert answer["response"] == {"status": "Maybe"}
    assert len(answer["problems"]) == 1
    assert "status" in answer["problems"][0]


async def test_a_callerror_from_the_station_gives_502_with_its_error(
    api: Api, booted: RawStation
) -> None:
    async def refuse() -> list[Any]:
        frame = await booted.next_call()
        await booted.send_text(json.dumps([4, frame[1], "NotSupported", "nope", {"why": 1}]))
        return frame

    refusing = asyncio.create_task(refuse())
    status, answer = await api.call(
        "POST", f"/stations/{STATION}/commands/UnlockConnector", {"connectorId": 1}
    )
    frame = await asyncio.wait_for(refusing, STEP)
    assert status == 502, answer
    assert answer == {
        "command": "UnlockConnector",
        "status": "error",
        "error": {"code": "NotSupported", "description": "nope", "details": {"why": 1}},
    }
    assert frame[2:] == ["UnlockConnector", {"connectorId": 1}]


async def test_a_silent_station_gives_504_and_its_late_answer_is_dropped(
    api: Api, booted: RawStation
) -> None:
    status, answer = await api.call(
        "POST", f"/stations/{STATION}/commands/Reset?timeout={SILENT_TIMEOUT}", {"type": "Soft"}
    )
    assert status == 504, answer
    assert "did not answer" in error_of(answer, "timeout")["message"]
    late = await booted.next_call()
    assert late[2:] == ["Reset", {"type": "Soft"}], "the command was sent before the deadline"
    await booted.reply(late[1], {"status": "Rejected"})  # too late: must not answer the next

    status, answer, frame = await command(
        api, booted, "Reset", {"type": "Hard"}, {"status": "Accepted"}
    )
    assert status == 200, answer
    assert answer["response"] == {"status": "Accepted"}
    assert frame[1] != late[1]
    assert frame[3] == {"type": "Hard"}


async def test_a_command_for_a_station_that_is_not_connected_gives_409(api: Api) -> None:
    status, answer = await api.call("POST", f"/stations/{STATION}/commands/Reset", {"type": "Soft"})
    assert status == 409, answer
    assert "not connected" in error_of(answer, "station_offline")["message"]


async def test_a_command_before_the_boot_gives_409_and_reaches_nothing(
    runtime: Runtime, api: Api
) -> None:
    async with raw_station(runtime.ocpp_port, STATION) as station:
        status, answer = await api.call(
            "POST", f"/stations/{STATION}/commands/GetConfiguration", {}
        )
        assert status == 409, answer
        assert "not booted" in error_of(answer, "station_not_ready")["message"]
        # The boot's answer comes after anything the server sent before it: nothing was.
        assert (await station.boot())["status"] == "Accepted"
        assert station.incoming_calls.empty()


async def test_remote_start_while_pending_gives_409_other_commands_go_through(
    pending_runtime: Runtime, pending_api: Api
) -> None:
    async with raw_station(pending_runtime.ocpp_port, "NEW1") as station:
        assert (await station.boot())["status"] == "Pending"
        status, answer = await pending_api.call(
            "POST", "/stations/NEW1/commands/RemoteStartTransaction", {"idTag": "ABC123"}
        )
        assert status == 409, answer
        assert "Pending" in error_of(answer, "station_not_ready")["message"]
        status, answer, frame = await command(
            pending_api, station, "GetConfiguration", {}, {"configurationKey": []},
            station_id="NEW1",
        )  # fmt: skip
        assert status == 200, answer
        assert frame[2] == "GetConfiguration"
        assert station.incoming_calls.empty(), "RemoteStartTransaction must not have been sent"


async def test_an_unknown_command_gives_404_listing_the_available_ones(
    api: Api, booted: RawStation
) -> None:
    status, answer = await api.call("POST", f"/stations/{STATION}/commands/Rest", {})
    assert status == 404, answer
    message = error_of(answer, "not_found")["message"]
    assert "'Rest'" in message
    assert "Reset" in message
    assert "RemoteStartTransaction" in message


async def test_a_command_for_an_unknown_station_gives_404(api: Api) -> None:
    status, answer = await api.call("POST", "/stations/NOPE/commands/Reset", {"type": "Soft"})
    assert status == 404, answer
    assert "NOPE" in error_of(answer, "not_found")["message"]


async def test_arguments_that_break_the_schema_give_422_with_the_problems(
    api: Api, booted: RawStation
) -> None:
    status, answer = await api.call(
        "POST", f"/stations/{STATION}/commands/Reset", {"type": "Medium"}
    )
    assert status == 422, answer
    error = error_of(answer, "invalid_command")
    assert "Reset" in error["message"]
    assert len(error["problems"]) == 1
    assert error["problems"][0].startswith("type")
    assert "Medium" in error["problems"][0]
    # Nothing reached the station: the next command's CALL is the first it sees.
    _, _, frame = await command(api, booted, "ClearCache", {}, {"status": "Accepted"})
    assert frame[2] == "ClearCache"


@pytest.mark.parametrize(
    ("query", "data"),
    [
        ("?timeout=0", "{}"),
        ("?timeout=301", "{}"),
        ("?timeout=soon", "{}"),
        ("?timeout=nan", "{}"),
        ("", "[1, 2]"),
        ("", '"Soft"'),
    ],
)
async def test_a_bad_timeout_or_a_body_that_is_not_an_object_gives_400(
    api: Api, booted: RawStation, query: str, data: str
) -> None:
    status, answer = await api.call("POST", f"/stations/{STATION}/commands/Reset{query}", data=data)
    assert status == 400, answer
    error_of(answer, "invalid_request")


async def test_a_body_that_is_not_json_gives_400(api: Api, booted: RawStation) -> None:
    status, answer = await api.call("POST", f"/stations/{STATION}/commands/Reset", data="{")
    assert status == 400, answer
    error_of(answer, "invalid_json")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/stations/{STATION}/commands/Reset"),
        ("GET", f"/stations/{STATION}/commands"),
        ("GET", f"/stations/{STATION}/events"),
        ("POST", f"/stations/{STATION}/approve"),
    ],
)
async def test_station_routes_without_a_token_give_401(
    api: Api, booted: RawStation, method: str, path: str
) -> None:
    status, answer = await api.call(method, path, {"type": "Soft"}, token=None)
    assert status == 401, answer
    error_of(answer, "unauthorized")
    status, answer = await api.call(method, path, {"type": "Soft"}, token="wrong")
    assert status == 401, answer
    assert booted.incoming_calls.empty()


async def test_without_a_gateway_commands_give_503(runtime: Runtime) -> None:
    await add_station(runtime)
    app = create_app(
        HttpContext(
            settings=runtime.settings,
            uow=runtime.uow,
            health=runtime.health,
            base_url=lambda: "http://127.0.0.1",
            station_port=None,
        )
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = bound_port(site)
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as session:
            api = Api(session)
            status, answer = await api.call(
                "POST", f"/stations/{STATION}/commands/Reset", {"type": "Soft"}
            )
            assert status == 503, answer
            error_of(answer, "unavailable")
            status, answer = await api.call("GET", f"/stations/{STATION}/commands")
            assert status == 503, answer
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- available commands


async def test_the_commands_of_a_connected_station_are_those_of_its_version(
    api: Api, booted: RawStation
) -> None:
    listed = await api.expect(200, "GET", f"/stations/{STATION}/commands")
    assert listed["station_id"] == STATION
    assert listed["connected"] is True
    assert {"Reset", "RemoteStartTransaction", "TriggerMessage"} <= set(listed["commands"])
    assert "BootNotification" not in listed["commands"], "the station's own messages"


async def test_a_station_that_is_not_connected_has_no_commands(api: Api) -> None:
    listed = await api.expect(200, "GET", f"/stations/{STATION}/commands")
    assert listed == {"station_id": STATION, "connected": False, "commands": []}
    status, answer = await api.call("GET", "/stations/NOPE/commands")
    assert status == 404, answer


# --------------------------------------------------------------------------- the station log


async def test_the_log_shows_each_command_newest_first(api: Api, booted: RawStation) -> None:
    await command(api, booted, "Reset", {"type": "Soft"}, {"status": "Accepted"})
    await command(api, booted, "ClearCache", {}, {"status": "Rejected"})
    status, _ = await api.call("POST", f"/stations/{STATION}/commands/Reset", {"type": "Medium"})
    assert status == 422

    page = await api.expect(200, "GET", f"/stations/{STATION}/events?kind=command")
    assert page["total"] == 3
    assert [item["details"]["command"] for item in page["items"]] == [
        "Reset",
        "ClearCache",
        "Reset",
    ]
    refused, cleared, reset = page["items"]
    assert reset["kind"] == "command"
    assert reset["details"] == {"command": "Reset", "arguments": {"type": "Soft"}}
    assert "Reset by operator" in reset["summary"]
    assert "Accepted" in reset["summary"]
    assert "Rejected" in cleared["summary"]
    assert "not done" in refused["summary"]
    assert reset["received_at"] is not None
    assert reset["id"] < cleared["id"] < refused["id"]

    second = await api.expect(
        200, "GET", f"/stations/{STATION}/events?kind=command&offset=1&limit=1"
    )
    assert (second["total"], second["offset"], second["limit"]) == (3, 1, 1)
    assert second["items"] == [cleared]


async def test_the_log_holds_what_the_station_reported_and_filters_by_kind(
    api: Api, booted: RawStation
) -> None:
    await booted.result(
        "SecurityEventNotification",
        {"type": "SettingSystemTime", "timestamp": "2024-01-01T00:00:00Z"},
    )
    await booted.result("DataTransfer", {"vendorId": "Acme"})
    await command(api, booted, "Reset", {"type": "Soft"}, {"status": "Accepted"})

    everything = await api.expect(200, "GET", f"/stations/{STATION}/events")
    kinds = [item["kind"] for item in everything["items"]]
    assert kinds[:3] == ["command", "data_transfer", "security"], kinds
    security = await api.expect(200, "GET", f"/stations/{STATION}/events?kind=security")
    assert security["total"] == 1
    (event,) = security["items"]
    assert event["kind"] == "security"
    assert "SettingSystemTime" in event["summary"]
    assert event["occurred_at"].startswith("2024-01-01T00:00:00"), event
    assert event["details"]["type"] == "SettingSystemTime"
    assert event == everything["items"][2]
    none = await api.expect(200, "GET", f"/stations/{STATION}/events?kind=firmware")
    assert none == {"items": [], "total": 0, "offset": 0, "limit": 100}


async def test_the_log_of_an_unknown_station_gives_404_and_bad_paging_400(api: Api) -> None:
    status, answer = await api.call("GET", "/stations/NOPE/events")
    assert status == 404, answer
    error_of(answer, "not_found")
    status, answer = await api.call("GET", f"/stations/{STATION}/events?limit=0")
    assert status == 400, answer
    status, answer = await api.call("GET", f"/stations/{STATION}/events?offset=x")
    assert status == 400, answer


# --------------------------------------------------------------------------- approval


async def test_approving_a_pending_station_makes_its_next_boot_accepted(
    pending_runtime: Runtime, pending_api: Api
) -> None:
    async with raw_station(pending_runtime.ocpp_port, "NEW1") as station:
        assert (await station.boot())["status"] == "Pending"
        before = await pending_api.expect(200, "GET", "/stations/NEW1")
        assert (before["approved"], before["boot_status"]) == (False, "Pending")
        assert before["online"] is True

        approved = await pending_api.expect(200, "POST", "/stations/NEW1/approve")
        assert approved["approved"] is True
        assert approved["boot_status"] == "Pending", "Accepted only at the next boot"

        assert (await station.boot())["status"] == "Accepted"
        after = await pending_api.expect(200, "GET", "/stations/NEW1")
        assert (after["approved"], after["boot_status"]) == (True, "Accepted")
        assert after["last_seen_at"] is not None

        status, answer, frame = await command(
            pending_api, station, "RemoteStartTransaction", {"idTag": "ABC123"},
            {"status": "Accepted"}, station_id="NEW1",
        )  # fmt: skip
        assert status == 200, answer
        assert frame[2:] == ["RemoteStartTransaction", {"idTag": "ABC123"}]


async def test_approving_twice_changes_nothing_and_an_unknown_station_gives_404(
    api: Api,
) -> None:
    first = await api.expect(200, "POST", f"/stations/{STATION}/approve")
    assert first["approved"] is True
    assert await api.expect(200, "POST", f"/stations/{STATION}/approve") == first
    status, answer = await api.call("POST", "/stations/NOPE/approve")
    assert status == 404, answer
    error_of(answer, "not_found")
