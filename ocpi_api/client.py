"""The OCPI client: every request we make to a partner goes through ``OcpiClient.request``.

It sets what OCPI requires on every call (CHECKLIST 1.4, 1.10): ``Authorization: Token``
with the partner's token Base64-encoded or raw as remembered for that partner, a fresh
``X-Request-ID``, an ``X-Correlation-ID``, ``OCPI-from-*`` (us) and, on functional modules,
``OCPI-to-*`` (them). Answers come back as ``OcpiReply`` whatever their status; a partner
that cannot be reached, times out or answers something that is not an OCPI envelope raises
``PartnerUnreachable`` (OCPI 3001 territory), so callers decide about retries.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = ["OcpiClient", "OcpiReply", "PartnerUnreachable", "authorization_header", "join_url"]

log = logging.getLogger("ocpi_api.client")


class PartnerUnreachable(Exception):
    """The partner could not be asked, or did not answer with an OCPI envelope."""


def join_url(base: str, *segments: str) -> str:
    """Join ``segments`` to ``base`` with exactly one ``/`` between parts (CHECKLIST 1.1)."""
    url = base.rstrip("/")
    for segment in segments:
        url += "/" + str(segment).strip("/")
    return url


def authorization_header(token: str, *, base64_encoded: bool) -> str:
    """Return ``Token <token>``, Base64-encoded (OCPI 2.2.x) or raw (2.1.1 and many peers)."""
    value = base64.b64encode(token.encode()).decode("ascii") if base64_encoded else token
    return f"Token {value}"


@dataclass(frozen=True, slots=True)
class OcpiReply:
    """A partner's answer: HTTP status, the envelope's fields, and the headers."""

    http_status: int
    status_code: int | None
    data: Any = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """HTTP 2xx with OCPI status 1xxx."""
        return 200 <= self.http_status < 300 and (self.status_code or 0) // 1000 == 1


class OcpiClient:
    """Sends OCPI requests over one aiohttp ``ClientSession``; see the module docstring."""

    def __init__(
        self,
        *,
        country_code: str,
        party_id: str,
        timeout: float = 15.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.country_code = country_code
        self.party_id = party_id
        self.timeout = timeout
        self._session = session
        self._owned = session is None

    async def close(self) -> None:
        """Close the HTTP session if this client opened it."""
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        token: str,
        base64_encoded: bool = True,
        body: Any = None,
        params: dict[str, str] | None = None,
        to_party: tuple[str, str] | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per-request deadline
    ) -> OcpiReply:
        """Send one request; see the module docstring for what is set and raised."""
        headers = {
            "Authorization": authorization_header(token, base64_encoded=base64_encoded),
            "X-Request-ID": str(uuid.uuid4()),
            "X-Correlation-ID": correlation_id or str(uuid.uuid4()),
        }
        if to_party is not None:  # functional modules only (CHECKLIST 1.10)
            headers |= {
                "OCPI-from-country-code": self.country_code,
                "OCPI-from-party-id": self.party_id,
                "OCPI-to-country-code": to_party[0],
                "OCPI-to-party-id": to_party[1],
            }
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body, separators=(",", ":"))
        deadline = aiohttp.ClientTimeout(total=timeout if timeout is not None else self.timeout)
        try:
            async with self._http().request(
                method, url, data=data, params=params, headers=headers, timeout=deadline
            ) as response:
                text = await response.text()
                reply_headers = dict(response.headers)
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as error:
            raise PartnerUnreachable(f"{method} {url}: {type(error).__name__}: {error}") from None
        log.debug("%s %s -> %s", method, url, status)
        try:
            envelope = json.loads(text) if text else None
        except json.JSONDecodeError:
            envelope = None
        if not isinstance(envelope, dict) or "status_code" not in envelope:
            if 200 <= status < 300 and not text.strip():
                # A bodiless 2xx (e.g. 204 to a DELETE): an answer, without an OCPI status.
                return OcpiReply(status, None, None, None, reply_headers)
            if 200 <= status < 300 or status >= 500:
                raise PartnerUnreachable(
                    f"{method} {url}: HTTP {status} without an OCPI envelope: {text[:200]!r}"
                )
            # 401, 404, 405 ... without an envelope: still an answer the caller can judge.
            return OcpiReply(status, None, None, text[:200] or None, reply_headers)
        code = envelope.get("status_code")
        return OcpiReply(
            status,
            code if isinstance(code, int) else None,
            envelope.get("data"),
            envelope.get("status_message"),
            reply_headers,
        )
