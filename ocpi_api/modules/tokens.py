"""OCPI 2.2.1 Tokens, receiver interface: eMSPs push their tokens to us (CHECKLIST 6.1).

``{tokens}/{country_code}/{party_id}/{uid}[?type=]`` answers GET (the token as we store it),
PUT (create, HTTP 201, or replace, 200) and PATCH (change fields; ``last_updated`` required).
Tokens are never deleted, only invalidated, so POST and DELETE are 405. The URL's country code
and party id are the eMSP's and must be one of the caller's own parties, else HTTP 404
(CHECKLIST 1.5); a body that names another token than its URL is OCPI 2001. ``type``
defaults to RFID; on a PUT without it the body's type is taken, since the body names the
token in full. Storing and checking are ``cpms.tokens``'s; this module adapts HTTP.
"""

from __future__ import annotations

from aiohttp import web

from cpms import tokens
from cpms.errors import NotFound
from cpms.tokens import TOKEN_TYPES, token_to_ocpi
from ocpi_api.auth import CALLER
from ocpi_api.context import CONTEXT
from ocpi_api.envelope import OcpiStatus, ocpi_response
from ocpi_api.transport import OcpiError, add_route, read_json

__all__ = ["ENDPOINTS", "add_routes"]

#: (module identifier, our interface role, path under /ocpi/2.2.1) this module serves.
ENDPOINTS: list[tuple[str, str, str]] = [("tokens", "RECEIVER", "tokens")]

_PATH = "/2.2.1/tokens/{country_code}/{party_id}/{uid}"


def _token_type(request: web.Request, *, default: str | None = "RFID") -> str | None:
    """The ``?type=`` of the request (OCPI TokenType), or ``default`` when absent."""
    given = request.query.get("type")
    if given is None:
        return default
    if given not in TOKEN_TYPES:
        raise OcpiError(
            OcpiStatus.INVALID_PARAMETERS,
            f"type {given!r} is not a TokenType (one of {', '.join(TOKEN_TYPES)})",
        )
    return given


def _key(request: web.Request) -> tuple[int, str, str, str]:
    """The caller's partner id and the URL's country code, party id and uid."""
    caller = request[CALLER]
    country_code = request.match_info["country_code"]
    party_id = request.match_info["party_id"]
    if not caller.owns(country_code, party_id):
        raise OcpiError(
            OcpiStatus.CLIENT_ERROR,
            f"{country_code}/{party_id} is not one of your parties",
            http_status=404,
        )
    return caller.partner_id, country_code, party_id, request.match_info["uid"]


def _unknown(error: NotFound) -> OcpiError:
    return OcpiError(OcpiStatus.UNKNOWN_TOKEN, f"unknown token: {error}", http_status=404)


async def get_token(request: web.Request) -> web.Response:
    """Return a token the caller pushed, as we store it."""
    partner_id, country_code, party_id, uid = _key(request)
    type_ = _token_type(request)
    assert type_ is not None
    uow = request.config_dict[CONTEXT].uow
    try:
        token = await tokens.get_partner_token(
            uow(), partner_id, country_code=country_code, party_id=party_id, uid=uid, type_=type_
        )
    except NotFound as error:
        raise _unknown(error) from None
    return ocpi_response(request, token_to_ocpi(token))


async def put_token(request: web.Request) -> web.Response:
    """Create or replace a token of the caller."""
    partner_id, country_code, party_id, uid = _key(request)
    type_ = _token_type(request, default=None)
    document = await read_json(request)
    uow = request.config_dict[CONTEXT].uow
    _, created = await tokens.put_partner_token(
        uow(),
        partner_id,
        document,
        country_code=country_code,
        party_id=party_id,
        uid=uid,
        type_=type_,
    )
    return ocpi_response(request, http_status=201 if created else 200)


async def patch_token(request: web.Request) -> web.Response:
    """Change fields of a token of the caller (invalidating it, mostly)."""
    partner_id, country_code, party_id, uid = _key(request)
    type_ = _token_type(request)
    assert type_ is not None
    changes = await read_json(request)
    uow = request.config_dict[CONTEXT].uow
    try:
        await tokens.patch_partner_token(
            uow(),
            partner_id,
            changes,
            country_code=country_code,
            party_id=party_id,
            uid=uid,
            type_=type_,
        )
    except NotFound as error:
        raise _unknown(error) from None
    return ocpi_response(request)


def add_routes(app: web.Application) -> None:
    """Add this module's routes to the /ocpi/2.2.1 application."""
    add_route(app, "GET", _PATH, get_token)
    add_route(app, "PUT", _PATH, put_token)
    add_route(app, "PATCH", _PATH, patch_token)
