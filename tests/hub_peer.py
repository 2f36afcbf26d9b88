"""Peers whose lists we pull: an eMSP's tokens and a hub's ClientInfos, served page by page.

``ListServer`` is a small OCPI Sender on loopback (127.0.0.1, a free port) serving
``GET /2.2.1/tokens`` and ``GET /2.2.1/hubclientinfo`` as CHECKLIST 1.9 says: ``offset``,
``limit`` (capped at ``page_size``), ``date_from``/``date_to`` on ``last_updated``,
``X-Total-Count``, ``X-Limit`` and an absolute ``Link: <...>; rel="next"`` carrying the filters.
It also answers real-time authorization (``POST /2.2.1/tokens/{uid}/authorize``, the rest of
a tokens SENDER) from the peer's ``authorize_answers``, as ``EmspPeer`` does.
It accepts the tokens of the peer it serves for, records every request, and can be told to
spoil a page (``spoiled``: page number -> what to answer instead: a ``data`` that is not a
list, an OCPI error, HTTP 503 without an envelope), to send a ``Link`` that never ends, or one
to another host.

``ListingEmspPeer`` is the eMSP test peer (``tests/ocpi_peer.py``, unchanged) whose version
details name this server as its tokens SENDER; ``HubPeer`` is the same peer as a hub: role
HUB in its credentials, and a hubclientinfo SENDER. Both still do the credentials handshake
in either direction, as ``EmspPeer`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from ocpi_peer import VERSION, EmspPeer, Recorded, _token_of, serve_on_loopback
from yarl import URL

__all__ = ["HubPeer", "ListServer", "ListingEmspPeer", "client_info", "token"]

_NEVER_ENDS = "never-ends"
_ELSEWHERE = "elsewhere"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def token(uid: str, *, country_code: str = "DE", party_id: str = "EMS", **fields: Any) -> dict:
    """An OCPI Token of the eMSP (whitelist ALLOWED unless ``fields`` say otherwise)."""
    return {
        "country_code": country_code,
        "party_id": party_id,
        "uid": uid,
        "type": "RFID",
        "contract_id": f"{country_code}-{party_id}-C{uid}"[:36],
        "issuer": "Test eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2024-01-01T00:00:00Z",
    } | fields


def client_info(country_code: str, party_id: str, **fields: Any) -> dict:
    """An OCPI ClientInfo (an eMSP, CONNECTED, unless ``fields`` say otherwise)."""
    return {
        "party_id": party_id,
        "country_code": country_code,
        "role": "EMSP",
        "status": "CONNECTED",
        "last_updated": "2024-01-01T00:00:00Z",
    } | fields


@dataclass
class ListServer:
    """See the module docstring."""

    accepted_tokens: set[str]
    """The tokens the CPO may call with: the peer's own set, shared."""
    authorize_answers: dict[str, Any] = field(default_factory=dict)
    """uid -> AuthorizationInfo (or "unknown": HTTP 404): the peer's own dict, shared."""
    tokens: list[Any] = field(default_factory=list)
    clients: list[Any] = field(default_factory=list)
    page_size: int = 3
    spoiled: dict[int, Any] = field(default_factory=dict)
    """Page number (from 1) -> ``{"data": ...}``, ``{"status_code": ...}`` or ``"down"``."""
    link: str | None = None
    """``"never-ends"``: every page links a next one; ``"elsewhere"``: to another host."""
    requests: list[Recorded] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> ListServer:
        app = web.Application()
        app.router.add_get(f"/{VERSION}/tokens", self._tokens)
        app.router.add_get(f"/{VERSION}/hubclientinfo", self._clients)
        app.router.add_post(f"/{VERSION}/tokens/{{uid}}/authorize", self._authorize)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, module: str) -> str:
        return f"http://127.0.0.1:{self.port}/{VERSION}/{module}"

    def never_ends(self) -> None:
        self.link = _NEVER_ENDS

    def links_elsewhere(self) -> None:
        self.link = _ELSEWHERE

    def pages_asked(self, module: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(f"/{module}")]

    async def _tokens(self, request: web.Request) -> web.Response:
        return self._page(request, self.tokens)

    async def _clients(self, request: web.Request) -> web.Response:
        return self._page(request, self.clients)

    async def _authorize(self, request: web.Request) -> web.Response:
        token = _token_of(request.headers.get("Authorization"))
        body = await request.json() if request.can_read_body else None
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers),
                     body, token)
        )  # fmt: skip
        if token not in self.accepted_tokens:
            return self._reply(status=401, code=2000)
        answer = self.authorize_answers.get(request.match_info["uid"], "unknown")
        if answer == "unknown":
            return self._reply(status=404, code=2004)
        return self._reply(answer)

    @staticmethod
    def _reply(
        data: Any = None, *, status: int = 200, code: int = 1000, headers: Any = None
    ) -> web.Response:
        envelope: dict[str, Any] = {"status_code": code, "timestamp": _now()}
        if data is not None:
            envelope["data"] = data
        return web.json_response(envelope, status=status, headers=headers)

    def _page(self, request: web.Request, objects: list[Any]) -> web.Response:
        token = _token_of(request.headers.get("Authorization"))
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers),
                     None, token)
        )  # fmt: skip
        if token not in self.accepted_tokens:
            return self._reply(status=401, code=2000)
        query = request.query
        offset = int(query.get("offset", "0"))
        limit = min(int(query.get("limit", str(self.page_size))), self.page_size)
        date_from, date_to = query.get("date_from"), query.get("date_to")

        def wanted(item: Any) -> bool:
            if not isinstance(item, dict) or "last_updated" not in item:
                return True  # a broken object is served as it is
            moment = _moment(item["last_updated"])
            return (date_from is None or moment >= _moment(date_from)) and (
                date_to is None or moment < _moment(date_to)
            )

        matching = [item for item in objects if wanted(item)]
        number = len(self.pages_asked(request.path.rsplit("/", 1)[-1]))
        headers = {"X-Total-Count": str(len(matching)), "X-Limit": str(self.page_size)}
        following = offset + limit
        if following < len(matching) or self.link == _NEVER_ENDS:
            kept = {k: v for k, v in query.items() if k in ("date_from", "date_to")}
            url = URL(self.url(request.path.rsplit("/", 1)[-1])).with_query(
                kept | {"offset": str(following), "limit": str(limit)}
            )
            if self.link == _ELSEWHERE:
                url = url.with_host("localhost")
            headers["Link"] = f'<{url}>; rel="next"'
        spoiled = self.spoiled.get(number)
        if spoiled == "down":
            return web.Response(status=503, text="down for maintenance")
        if isinstance(spoiled, dict) and "data" in spoiled:
            return self._reply(spoiled["data"], headers=headers)
        if isinstance(spoiled, dict):
            return self._reply(code=spoiled["status_code"], headers=headers)
        return self._reply(matching[offset:following], headers=headers)


@dataclass
class ListingEmspPeer(EmspPeer):
    """The eMSP test peer, with a tokens SENDER we can pull page by page."""

    lists: ListServer | None = None

    async def start(self) -> ListingEmspPeer:
        self.lists = await ListServer(
            self.accepted_tokens, authorize_answers=self.authorize_answers
        ).start()
        await super().start()
        return self

    async def stop(self) -> None:
        await super().stop()
        if self.lists is not None:
            await self.lists.stop()

    async def __aenter__(self) -> ListingEmspPeer:
        return await self.start()

    def endpoints(self) -> list[dict[str, str]]:
        assert self.lists is not None
        pulled = {"identifier": "tokens", "role": "SENDER", "url": self.lists.url("tokens")}
        kept = [
            e for e in super().endpoints() if (e["identifier"], e["role"]) != ("tokens", "SENDER")
        ]
        return [*kept, pulled]


@dataclass
class HubPeer(ListingEmspPeer):
    """The same peer as a roaming hub: role HUB, and a hubclientinfo SENDER."""

    country_code: str = "NL"
    party_id: str = "HUB"
    name: str = "Test Hub"

    def credentials(self, token: str) -> dict[str, Any]:
        ours = super().credentials(token)
        for role in ours["roles"]:
            role["role"] = "HUB"
        return ours

    def endpoints(self) -> list[dict[str, str]]:
        assert self.lists is not None
        listed = {
            "identifier": "hubclientinfo",
            "role": "SENDER",
            "url": self.lists.url("hubclientinfo"),
        }
        return [*super().endpoints(), listed]
