"""A real eMSP on loopback for OCPI tests: the other side of every handshake, push and call.

``EmspPeer`` is an aiohttp server (127.0.0.1, a free port) that speaks OCPI 2.2.1 as an
eMSP: versions and version details; credentials (it can be registered with, and it can
register with us); the receiver interfaces of locations, sessions, cdrs and tariffs (it
stores what we push, answers 201/200 and a ``Location`` header for CDRs; a GET of a location,
EVSE or connector it does not hold is HTTP 404, OCPI 2003, as a real eMSP answers); the sender
interface of tokens (real-time ``authorize``, answers set per uid); and ``/callbacks/...``
where our CommandResults land. It records every request, checks every body it receives
against ``ocpi-types`` (``problems`` lists what failed), and can be taken ``down`` (HTTP
503 without an envelope) and brought back.

Use ``async with EmspPeer() as peer`` or the ``emsp_peer`` fixture in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from ocpi_models import problems as model_problems

from cpms.runtime import bound_port

__all__ = ["EmspPeer", "Recorded"]

VERSION = "2.2.1"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _token_of(header: str | None) -> str | None:
    if not header or not header.startswith("Token "):
        return None
    value = header[6:].strip()
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii")
    except ValueError:
        return value
    return decoded if decoded.isprintable() else value


@dataclass
class Recorded:
    """One request the peer received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    token: str | None


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a free loopback port; return its runner (to clean up) and the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, bound_port(site)


@dataclass
class EmspPeer:
    """See the module docstring."""

    country_code: str = "DE"
    party_id: str = "EMS"
    name: str = "Test eMSP"
    raw_tokens: bool = False
    """Send our tokens to the CPO raw instead of Base64 (as 2.1.1 peers do)."""
    requests: list[Recorded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    down: bool = False
    """Answer every request with HTTP 503 (no envelope), as a platform that is down."""
    delay: float = 0.0
    """Seconds to think before answering each request, as a slow platform."""
    locations: dict[str, Any] = field(default_factory=dict)
    """Pushed Locations by location id, EVSEs and connectors patched in place."""
    sessions: dict[str, Any] = field(default_factory=dict)
    cdrs: list[dict[str, Any]] = field(default_factory=list)
    tariffs: dict[str, Any] = field(default_factory=dict)
    callbacks: list[Recorded] = field(default_factory=list)
    authorize_answers: dict[str, Any] = field(default_factory=dict)
    """uid -> AuthorizationInfo to answer, or "unknown" (HTTP 404) / "2004" (OCPI 2004)."""
    accepted_tokens: set[str] = field(default_factory=set)
    """Tokens the CPO may call us with (token A we issued, then the registered one)."""
    token_for_cpo: str | None = None
    """The token we call the CPO with (its token C, or the B we got in its POST)."""
    cpo_credentials: dict[str, Any] | None = None
    cpo_endpoints: list[dict[str, Any]] = field(default_factory=list)
    """The CPO's version-details endpoints, as read during its registration with us."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    port: int = 0

    # Lifecycle

    async def start(self) -> EmspPeer:
        app = web.Application(middlewares=[self._middleware])
        router = app.router
        router.add_get("/versions", self._versions)
        router.add_get(f"/{VERSION}", self._details)
        router.add_route("*", f"/{VERSION}/credentials", self._credentials)
        router.add_route("*", f"/{VERSION}/locations/{{tail:.*}}", self._locations)
        router.add_route("*", f"/{VERSION}/sessions/{{tail:.*}}", self._sessions)
        router.add_route("*", f"/{VERSION}/cdrs", self._cdrs)
        router.add_route("*", f"/{VERSION}/cdrs/{{tail:.*}}", self._cdr_get)
        router.add_route("*", f"/{VERSION}/tariffs/{{tail:.*}}", self._tariffs)
        router.add_post(f"/{VERSION}/tokens/{{uid}}/authorize", self._authorize)
        router.add_route("*", "/callbacks/{tail:.*}", self._callback)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EmspPeer:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def versions_url(self) -> str:
        return f"{self.base_url}/versions"

    def callback_url(self, name: str | None = None) -> str:
        """A ``response_url`` for commands: results POSTed there land in ``callbacks``."""
        return f"{self.base_url}/callbacks/{name or uuid.uuid4()}"

    def issue_token_a(self) -> str:
        """A token A the CPO may register with (we are the receiver of its POST)."""
        token = "A-" + secrets.token_urlsafe(16)
        self.accepted_tokens.add(token)
        return token

    def credentials(self, token: str) -> dict[str, Any]:
        """Our Credentials object, offering ``token`` to the CPO."""
        return {
            "token": token,
            "url": self.versions_url,
            "roles": [
                {
                    "role": "EMSP",
                    "party_id": self.party_id,
                    "country_code": self.country_code,
                    "business_details": {"name": self.name},
                }
            ],
        }

    def endpoints(self) -> list[dict[str, str]]:
        base = f"{self.base_url}/{VERSION}"
        return [
            {"identifier": "credentials", "role": "SENDER", "url": f"{base}/credentials"},
            {"identifier": "locations", "role": "RECEIVER", "url": f"{base}/locations"},
            {"identifier": "sessions", "role": "RECEIVER", "url": f"{base}/sessions"},
            {"identifier": "cdrs", "role": "RECEIVER", "url": f"{base}/cdrs"},
            {"identifier": "tariffs", "role": "RECEIVER", "url": f"{base}/tariffs"},
            {"identifier": "tokens", "role": "SENDER", "url": f"{base}/tokens"},
        ]

    # Calls the peer makes to the CPO

    async def call(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        body: Any = None,
        raw: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Call the CPO; returns (HTTP status, envelope, headers)."""
        token = token if token is not None else self.token_for_cpo
        assert token is not None, "register first (or pass token=)"
        raw = self.raw_tokens if raw is None else raw
        value = token if raw else base64.b64encode(token.encode()).decode()
        sent = {
            "Authorization": f"Token {value}",
            "X-Request-ID": str(uuid.uuid4()),
            "X-Correlation-ID": str(uuid.uuid4()),
            "OCPI-from-country-code": self.country_code,
            "OCPI-from-party-id": self.party_id,
        } | (headers or {})
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, json=body, headers=sent) as response,
        ):
            envelope = await response.json(content_type=None)
            return response.status, envelope, dict(response.headers)

    async def register_with(self, versions_url: str, token_a: str) -> dict[str, Any]:
        """Register with the CPO as the initiating party; returns the CPO's credentials."""
        _, versions, _ = await self.call("GET", versions_url, token=token_a)
        details_url = next(v["url"] for v in versions["data"] if v["version"] == VERSION)
        _, details, _ = await self.call("GET", details_url, token=token_a)
        credentials_url = next(
            e["url"] for e in details["data"]["endpoints"] if e["identifier"] == "credentials"
        )
        token_b = "B-" + secrets.token_urlsafe(16)
        self.accepted_tokens.add(token_b)
        status, answer, _ = await self.call(
            "POST", credentials_url, token=token_a, body=self.credentials(token_b)
        )
        assert status == 200, answer
        assert answer["status_code"] == 1000, answer
        self.cpo_credentials = answer["data"]
        self.token_for_cpo = answer["data"]["token"]
        return answer["data"]

    # Waiting

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until ``predicate()`` is true (checked whenever a request arrives)."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            seen = [f"{r.method} {r.path}" for r in self.requests]
            raise AssertionError(f"not within {timeout} s; the peer received {seen}") from None

    def received(self, method: str | None = None, path_part: str = "") -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and path_part in r.path
        ]

    # Server side

    def _check(self, model: str, body: Any, path: str) -> None:
        problem = model_problems(model, body)
        if problem:
            self.problems.append(f"{path}: {problem}")

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.down:
            return web.Response(status=503, text="down for maintenance")
        if self.delay:
            await asyncio.sleep(self.delay)
        text = await request.text()
        body: Any = None
        if text:
            try:
                body = await request.json()
            except ValueError:
                body = text
        token = _token_of(request.headers.get("Authorization"))
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                body,
                token,
            )
        )
        try:
            if token not in self.accepted_tokens:
                return self._reply(None, status=401, code=2000, message="unknown token")
            for header in ("X-Request-ID", "X-Correlation-ID"):
                if header not in request.headers:
                    self.problems.append(f"{request.path}: no {header}")
            return await handler(request)
        finally:
            self.changed.set()

    def _reply(
        self,
        data: Any = None,
        *,
        status: int = 200,
        code: int = 1000,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        envelope: dict[str, Any] = {"status_code": code, "timestamp": _now()}
        if data is not None:
            envelope["data"] = data
        if message:
            envelope["status_message"] = message
        return web.json_response(envelope, status=status, headers=headers)

    def _body(self) -> Any:
        return self.requests[-1].body

    def _routed(self, request: web.Request) -> None:
        for header in (
            "OCPI-from-country-code",
            "OCPI-from-party-id",
            "OCPI-to-country-code",
            "OCPI-to-party-id",
        ):
            if header not in request.headers:
                self.problems.append(f"{request.path}: no {header}")

    async def _versions(self, request: web.Request) -> web.Response:
        return self._reply([{"version": VERSION, "url": f"{self.base_url}/{VERSION}"}])

    async def _details(self, request: web.Request) -> web.Response:
        return self._reply({"version": VERSION, "endpoints": self.endpoints()})

    async def _credentials(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return self._reply(self.credentials(self.token_for_cpo or ""))
        if request.method in ("POST", "PUT"):
            body = self._body()
            self._check("Credentials", body, request.path)
            self.cpo_credentials = body
            self.token_for_cpo = body["token"]
            # As the spec's receiver: fetch the caller's versions and details with its token
            # before answering; a CPO that did not accept its own token yet fails here.
            status, versions, _ = await self.call("GET", body["url"])
            if status != 200 or versions.get("status_code") != 1000:
                return self._reply(code=3001, message=f"cannot read your versions: {status}")
            details_url = next(v["url"] for v in versions["data"] if v["version"] == VERSION)
            status, details, _ = await self.call("GET", details_url)
            if status != 200 or details.get("status_code") != 1000:
                return self._reply(code=3001, message=f"cannot read your details: {status}")
            self.cpo_endpoints = details["data"]["endpoints"]
            caller = _token_of(request.headers.get("Authorization"))
            self.accepted_tokens.discard(caller)  # token A (or the old one) is used up
            ours = "C-" + secrets.token_urlsafe(16)
            self.accepted_tokens.add(ours)
            return self._reply(self.credentials(ours))
        if request.method == "DELETE":
            self.accepted_tokens.clear()
            return self._reply()
        return self._reply(status=405, code=2000)

    async def _locations(self, request: web.Request) -> web.Response:
        self._routed(request)
        parts = request.match_info["tail"].strip("/").split("/")
        if len(parts) < 3:
            return self._reply(status=404, code=2000, message="no such location")
        _cc, _pid, location_id, *rest = parts
        body = self._body()
        stored = self.locations.get(location_id)
        if request.method == "GET":
            found = self._stored_object(stored, rest)
            if found is None:
                # As a real eMSP: the object asked for (not its location) or 2003, no data.
                what = ("location", "EVSE", "connector")[min(len(rest), 2)]
                return self._reply(status=404, code=2003, message=f"unknown {what}")
            return self._reply(found)
        if request.method == "PUT":
            model = ("Location", "Evse", "Connector")[len(rest)]
            self._check(model, body, request.path)
            if not rest:
                self.locations[location_id] = body
                return self._reply(status=200 if stored else 201)
            if stored is None:
                return self._reply(status=404, code=2003, message="unknown location")
            evses = stored.setdefault("evses", [])
            evse = next((e for e in evses if e["uid"] == rest[0]), None)
            if len(rest) == 1:
                evses[:] = [e for e in evses if e["uid"] != rest[0]] + [body]
            elif evse is not None:
                connectors = evse["connectors"]
                connectors[:] = [c for c in connectors if c["id"] != rest[1]] + [body]
            return self._reply()
        if request.method == "PATCH":
            if "last_updated" not in (body or {}):
                self.problems.append(f"{request.path}: PATCH without last_updated")
            if stored is None:
                return self._reply(status=404, code=2003, message="unknown location")
            target = self._stored_object(stored, rest)
            if target is None:
                return self._reply(status=404, code=2000, message="unknown object")
            target.update(body)
            return self._reply()
        return self._reply(status=405, code=2000)

    @staticmethod
    def _stored_object(location: dict[str, Any] | None, rest: list[str]) -> dict[str, Any] | None:
        """The stored location, or its EVSE ``rest[0]``, or that EVSE's connector ``rest[1]``."""
        if location is None or len(rest) > 2:
            return None
        if not rest:
            return location
        evse = next((e for e in location.get("evses", []) if e["uid"] == rest[0]), None)
        if evse is None or len(rest) == 1:
            return evse
        return next((c for c in evse.get("connectors", []) if c["id"] == rest[1]), None)

    async def _sessions(self, request: web.Request) -> web.Response:
        self._routed(request)
        parts = request.match_info["tail"].strip("/").split("/")
        session_id = parts[-1]
        body = self._body()
        stored = self.sessions.get(session_id)
        if request.method == "GET":
            return self._reply(stored) if stored else self._reply(status=404, code=2000)
        if request.method == "PUT":
            self._check("Session", body, request.path)
            self.sessions[session_id] = body
            return self._reply(status=200 if stored else 201)
        if request.method == "PATCH":
            if "last_updated" not in (body or {}):
                self.problems.append(f"{request.path}: PATCH without last_updated")
            if stored is None:
                return self._reply(status=404, code=2000, message="unknown session")
            body = dict(body)  # the recorded request keeps what was sent
            periods = body.pop("charging_periods", None) or []
            for period in periods:
                self._check("ChargingPeriod", period, request.path)
            stored.setdefault("charging_periods", []).extend(periods)
            stored.update(body)
            return self._reply()
        return self._reply(status=405, code=2000)

    async def _cdrs(self, request: web.Request) -> web.Response:
        self._routed(request)
        if request.method != "POST":
            return self._reply(status=405, code=2000)
        body = self._body()
        self._check("Cdr", body, request.path)
        self.cdrs.append(body)
        where = f"{self.base_url}/{VERSION}/cdrs/{len(self.cdrs)}"
        return self._reply(status=201, headers={"Location": where})

    async def _cdr_get(self, request: web.Request) -> web.Response:
        index = int(request.match_info["tail"].strip("/")) - 1
        if request.method != "GET" or not 0 <= index < len(self.cdrs):
            return self._reply(status=404, code=2000)
        return self._reply(self.cdrs[index])

    async def _tariffs(self, request: web.Request) -> web.Response:
        self._routed(request)
        tariff_id = request.match_info["tail"].strip("/").split("/")[-1]
        stored = self.tariffs.get(tariff_id)
        if request.method == "GET":
            return self._reply(stored) if stored else self._reply(status=404, code=2000)
        if request.method == "PUT":
            self._check("Tariff", self._body(), request.path)
            self.tariffs[tariff_id] = self._body()
            return self._reply(status=200 if stored else 201)
        if request.method == "DELETE":
            self.tariffs.pop(tariff_id, None)
            return self._reply()
        return self._reply(status=405, code=2000)

    async def _authorize(self, request: web.Request) -> web.Response:
        self._routed(request)
        body = self._body()
        if body is not None:
            self._check("LocationReferences", body, request.path)
        answer = self.authorize_answers.get(request.match_info["uid"], "unknown")
        if answer == "unknown":
            return self._reply(status=404, code=2004, message="unknown token")
        if answer == "2004":
            return self._reply(code=2004, message="unknown token")
        self._check("AuthorizationInfo", answer, request.path)
        return self._reply(answer)

    async def _callback(self, request: web.Request) -> web.Response:
        self.callbacks.append(self.requests[-1])
        return self._reply()
