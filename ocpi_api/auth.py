"""OCPI authentication: the ``Authorization: Token ...`` header and who sent it.

OCPI 2.2.x sends the token Base64-encoded, 2.1.1 and many 2.2 peers send it raw; the spec
itself says to cope with both (CHECKLIST 1.4), so both are accepted: a value that decodes as
Base64 to printable ASCII is looked up decoded first, then as given. A request without a
token we know gets HTTP 401 in an OCPI envelope.

The request carries who called (``CALLER``) and the token that matched (``TOKEN``): the
credentials module needs the token itself, since we keep only its hash (a GET answers it
back; POST, PUT and DELETE are allowed only for the token they were presented with).
Nothing is written per request.
"""

from __future__ import annotations

import base64
import binascii

from aiohttp import web
from aiohttp.typedefs import Handler

from cpms.partners import Caller, identify_caller
from ocpi_api.context import CONTEXT
from ocpi_api.envelope import OcpiStatus, ocpi_response

__all__ = ["CALLER", "TOKEN", "candidate_tokens", "ocpi_auth_middleware"]

CALLER = web.RequestKey("ocpi_caller", Caller)
TOKEN = web.RequestKey("ocpi_token", str)
"""The token the caller presented, decoded (only ever kept in memory)."""


def candidate_tokens(header: str | None) -> list[str]:
    """Return the tokens an ``Authorization`` header may carry, most likely first."""
    if not header:
        return []
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "token" or not value:
        return []
    candidates = []
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if decoded and decoded.isprintable() and not any(c.isspace() for c in decoded):
        candidates.append(decoded)
    candidates.append(value)
    return candidates


@web.middleware
async def ocpi_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let through only requests that carry a token of a known partner."""
    context = request.config_dict[CONTEXT]
    for token in candidate_tokens(request.headers.get("Authorization")):
        caller = await identify_caller(context.uow(), token)
        if caller is not None:
            request[CALLER] = caller
            request[TOKEN] = token
            return await handler(request)
    return ocpi_response(
        request,
        status_code=OcpiStatus.CLIENT_ERROR,
        message="missing or unknown token (Authorization: Token <token>)",
        http_status=401,
    )
