"""The OCPI 2.2.1 response envelope and status codes (CHECKLIST 1.6 to 1.8).

Every OCPI response, errors included, is ``{data, status_code, status_message, timestamp}``;
the request's ``X-Request-ID`` and ``X-Correlation-ID`` are echoed.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from aiohttp import web

from cpms.model import utcnow

__all__ = ["OcpiStatus", "ocpi_response"]


class OcpiStatus(enum.IntEnum):
    """OCPI status codes (the 4-digit code inside the envelope)."""

    SUCCESS = 1000
    CLIENT_ERROR = 2000
    INVALID_PARAMETERS = 2001
    NOT_ENOUGH_INFORMATION = 2002
    UNKNOWN_LOCATION = 2003
    UNKNOWN_TOKEN = 2004
    SERVER_ERROR = 3000
    CLIENT_API_UNUSABLE = 3001
    UNSUPPORTED_VERSION = 3002
    NO_MATCHING_ENDPOINTS = 3003


def ocpi_response(
    request: web.Request,
    data: Any = None,
    *,
    status_code: OcpiStatus = OcpiStatus.SUCCESS,
    message: str | None = None,
    http_status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Wrap ``data`` in the OCPI envelope, echoing the request and correlation ids."""
    body: dict[str, Any] = {
        "status_code": int(status_code),
        "timestamp": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if data is not None:
        body["data"] = data
    if message:
        body["status_message"] = message
    out = dict(headers or {})
    out["X-Request-ID"] = request.headers.get("X-Request-ID") or str(uuid.uuid4())
    out["X-Correlation-ID"] = request.headers.get("X-Correlation-ID") or str(uuid.uuid4())
    return web.json_response(body, status=http_status, headers=out)
