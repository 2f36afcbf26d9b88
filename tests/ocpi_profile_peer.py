"""An eMSP test peer that also offers the chargingprofiles SENDER interface.

``tests/ocpi_peer.py``'s ``EmspPeer`` lists no ``chargingprofiles`` endpoint, so a CPO has
nowhere to PUT an ActiveChargingProfile to (OCPI 2.2.1 19.2.2: ``PUT
{chargingprofiles SENDER url}/{session_id}``). ``ProfilesPeer`` is the same peer with that
endpoint: it lives under the peer's catch-all ``/callbacks/...`` route, so it needs no route
of its own. Every request there is recorded as usual (``requests``, ``callbacks``); a PUT is
checked against ocpi-types' ActiveChargingProfile (``problems``), must carry the routing
headers, and is kept in ``active_profiles`` by session id, newest last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from ocpi_peer import VERSION, EmspPeer

__all__ = ["PROFILES_PATH", "ProfilesPeer"]

PROFILES_PATH = f"/callbacks/{VERSION}/chargingprofiles"
"""Where the peer's chargingprofiles SENDER interface is (under ``/callbacks``)."""


@dataclass
class ProfilesPeer(EmspPeer):
    """See the module docstring."""

    active_profiles: dict[str, list[Any]] = field(default_factory=dict)
    """ActiveChargingProfiles PUT to us, by session id, in the order they came."""

    @property
    def profiles_url(self) -> str:
        return f"{self.base_url}{PROFILES_PATH}"

    def endpoints(self) -> list[dict[str, str]]:
        sender = {"identifier": "chargingprofiles", "role": "SENDER", "url": self.profiles_url}
        return [*super().endpoints(), sender]

    def profile_puts(self, session_id: str | None = None) -> list[Any]:
        """What was PUT to our chargingprofiles interface (for one session, or all)."""
        return [
            r
            for r in self.requests
            if r.path.startswith(PROFILES_PATH + "/")
            and (session_id is None or r.path == f"{PROFILES_PATH}/{session_id}")
        ]

    async def _callback(self, request: web.Request) -> web.Response:
        if not request.path.startswith(PROFILES_PATH + "/"):
            return await super()._callback(request)
        self.callbacks.append(self.requests[-1])
        if request.method != "PUT":
            return self._reply(status=405, code=2000, message="PUT only")
        self._routed(request)
        body = self._body()
        self._check("ActiveChargingProfile", body, request.path)
        session_id = request.path.rsplit("/", 1)[-1]
        self.active_profiles.setdefault(session_id, []).append(body)
        return self._reply()
