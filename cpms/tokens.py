"""Tokens: the operator's own, and those eMSPs push over OCPI. Never deleted, only invalidated.

Local tokens are the RFID cards and other ids the operator authorizes drivers with; they carry
our own country code and party id. Partner tokens arrive through the OCPI Tokens receiver
(``put_partner_token``, ``patch_partner_token``) and carry the eMSP's country code and party
id and the partner they came from. Both are shaped like OCPI 2.2.1 Token, so the one
authorization service reads them alike. Retiring a token sets ``valid`` to false.

Partner tokens are keyed as OCPI keys them (CHECKLIST 6.1): country code, party id, uid
compared case-insensitively, and type. Spec: OCPI 2.2.1 module Tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from cpms.documents.datetimes import format_datetime, parse_datetime
from cpms.errors import Conflict, DocumentError, InvalidRequest, NotFound
from cpms.events import TokenChanged
from cpms.model import Token, utcnow
from cpms.pages import Page, fetch_page
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "OCPI_TOKEN_FIELDS",
    "TOKEN_FIELDS",
    "TOKEN_TYPES",
    "check_ocpi_token",
    "create_token",
    "get_partner_token",
    "get_token",
    "list_tokens",
    "partner_token_keys",
    "patch_partner_token",
    "put_partner_token",
    "retire_token",
    "token_to_ocpi",
    "update_token",
]

TOKEN_TYPES = ("AD_HOC_USER", "APP_USER", "OTHER", "RFID")
WHITELIST_TYPES = ("ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER")
PROFILE_TYPES = ("CHEAP", "FAST", "GREEN", "REGULAR")
_CI_STRING = re.compile(r"[\x20-\x7e]*")


def _ci_string(limit: int) -> Any:
    def check(value: object) -> str:
        if not isinstance(value, str) or not value or len(value) > limit:
            raise ValueError(f"a string of 1 to {limit} characters")
        if not _CI_STRING.fullmatch(value):
            raise ValueError("printable ASCII only")
        return value

    return check


def _text(limit: int) -> Any:
    def check(value: object) -> str:
        if not isinstance(value, str) or len(value) > limit or any(c in value for c in "\r\n\t"):
            raise ValueError(f"a string of at most {limit} characters on one line")
        return value

    return check


def _one_of(*allowed: str) -> Any:
    def check(value: object) -> str:
        if value not in allowed:
            raise ValueError("one of " + ", ".join(allowed))
        return str(value)

    return check


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _energy_contract(value: object) -> dict[str, Any]:
    # OCPI EnergyContract: supplier_name string(64), contract_id string(64) optional.
    problem = "an object with supplier_name (and optionally contract_id), each at most 64 long"
    if not isinstance(value, dict):
        raise ValueError(problem)
    contract: dict[str, Any] = {}
    for name in ("supplier_name", "contract_id"):
        item = value.get(name)
        if item is None and name == "contract_id":
            continue
        try:
            contract[name] = _text(64)(item)
        except ValueError:
            raise ValueError(problem) from None
    return contract


def _date_time(value: object) -> datetime:
    try:
        return parse_datetime(value, "last_updated")  # type: ignore[arg-type]
    except DocumentError as error:
        raise ValueError(error.problem) from None


#: Field name -> checker, for the fields an operator may set on a local token.
TOKEN_FIELDS: dict[str, Any] = {
    "uid": _ci_string(36),
    "type": _one_of(*TOKEN_TYPES),
    "contract_id": _ci_string(36),
    "visual_number": _text(64),
    "issuer": _text(64),
    "group_id": _ci_string(36),
    "valid": _boolean,
    "whitelist": _one_of(*WHITELIST_TYPES),
    "language": _text(2),
    "default_profile_type": _one_of(*PROFILE_TYPES),
    "energy_contract": _energy_contract,
}
#: Field name -> checker, for the fields of an OCPI Token an eMSP pushes (CHECKLIST 6.3).
OCPI_TOKEN_FIELDS: dict[str, Any] = {
    "country_code": _ci_string(2),
    "party_id": _ci_string(3),
    **TOKEN_FIELDS,
    "last_updated": _date_time,
}
#: What an OCPI Token PUT must carry (OCPI cardinality 1).
OCPI_TOKEN_REQUIRED = (
    "country_code",
    "party_id",
    "uid",
    "type",
    "contract_id",
    "issuer",
    "valid",
    "whitelist",
    "last_updated",
)
#: Fields that name a token: a PATCH may repeat them, never change them.
_OCPI_KEY = ("country_code", "party_id", "uid", "type")
_REQUIRED = ("uid",)
_OPTIONAL_NULLABLE = (
    "visual_number",
    "group_id",
    "language",
    "default_profile_type",
    "energy_contract",
)


def _checked(fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(TOKEN_FIELDS))
    if unknown:
        raise InvalidRequest(f"unknown token field {unknown[0]!r}")
    checked: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None and name in _OPTIONAL_NULLABLE:
            checked[name] = None
            continue
        try:
            checked[name] = TOKEN_FIELDS[name](value)
        except ValueError as error:
            raise InvalidRequest(f"token field {name!r}: expected {error}") from None
    if creating:
        for name in _REQUIRED:
            if name not in checked:
                raise InvalidRequest(f"token field {name!r} is required")
    return checked


def token_to_ocpi(token: Token) -> dict[str, Any]:
    """Return the OCPI 2.2.1 Token document of ``token``."""
    document: dict[str, Any] = {
        "country_code": token.country_code,
        "party_id": token.party_id,
        "uid": token.uid,
        "type": token.type,
        "contract_id": token.contract_id,
        "visual_number": token.visual_number,
        "issuer": token.issuer,
        "group_id": token.group_id,
        "valid": token.valid,
        "whitelist": token.whitelist,
        "language": token.language,
        "default_profile_type": token.default_profile_type,
        "energy_contract": token.energy_contract,
        "last_updated": format_datetime(token.last_updated),
    }
    return {key: value for key, value in document.items() if value is not None}


async def _find(uow: UnitOfWork, country_code: str, party_id: str, uid: str, type_: str) -> Token:
    token = await uow.session.scalar(
        select(Token).where(
            Token.country_code == country_code,
            Token.party_id == party_id,
            Token.uid == uid,
            Token.type == type_,
        )
    )
    if token is None:
        raise NotFound("token", f"{uid} ({type_})")
    return token


def _event(token: Token, *, at: datetime | None = None) -> TokenChanged:
    return TokenChanged(
        occurred_at=at or token.last_updated,
        country_code=token.country_code,
        party_id=token.party_id,
        uid=token.uid,
        type=token.type,
    )


async def create_token(
    uow: UnitOfWork, fields: Mapping[str, Any], *, country_code: str, party_id: str
) -> Token:
    """Create a local token; defaults: type RFID, whitelist ALWAYS, contract id from the uid."""
    values = _checked(fields, creating=True)
    values.setdefault("type", "RFID")
    values.setdefault("contract_id", f"{country_code}-{party_id}-{values['uid']}"[:36])
    values.setdefault("issuer", party_id)
    values.setdefault("valid", True)
    values.setdefault("whitelist", "ALWAYS")
    now = utcnow()
    async with uow:
        try:
            await _find(uow, country_code, party_id, values["uid"], values["type"])
        except NotFound:
            pass
        else:
            raise Conflict(f"token {values['uid']!r} ({values['type']}) exists already")
        token = Token(
            country_code=country_code, party_id=party_id, source="local", last_updated=now, **values
        )
        uow.session.add(token)
        uow.record(_event(token))
        await uow.commit()
        return token


async def list_tokens(
    uow: UnitOfWork, *, offset: int = 0, limit: int | None = None, source: str | None = None
) -> Page[Token]:
    """List tokens by uid (local and, once OCPI lands, eMSP tokens)."""
    query = select(Token).order_by(Token.uid, Token.type, Token.pk)
    if source is not None:
        query = query.where(Token.source == source)
    async with uow:
        return await fetch_page(uow.session, query, offset=offset, limit=limit)


async def get_token(
    uow: UnitOfWork, uid: str, *, country_code: str, party_id: str, type_: str = "RFID"
) -> Token:
    """Return one token of ours."""
    async with uow:
        return await _find(uow, country_code, party_id, uid, type_)


async def update_token(
    uow: UnitOfWork,
    uid: str,
    changes: Mapping[str, Any],
    *,
    country_code: str,
    party_id: str,
    type_: str = "RFID",
) -> Token:
    """Change fields of a local token (not its uid or type)."""
    values = _checked(changes, creating=False)
    for fixed in ("uid", "type"):
        if fixed in values and values[fixed] != (uid if fixed == "uid" else type_):
            raise InvalidRequest(f"token field {fixed!r} cannot be changed; create a new token")
    async with uow:
        token = await _find(uow, country_code, party_id, uid, type_)
        for name, value in values.items():
            setattr(token, name, value)
        token.last_updated = utcnow()
        uow.record(_event(token))
        await uow.commit()
        return token


async def retire_token(
    uow: UnitOfWork, uid: str, *, country_code: str, party_id: str, type_: str = "RFID"
) -> Token:
    """Invalidate a token (tokens are never deleted)."""
    return await update_token(
        uow, uid, {"valid": False}, country_code=country_code, party_id=party_id, type_=type_
    )


# Partner tokens (the OCPI Tokens receiver) -----------------------------------------------------


def check_ocpi_token(document: object, *, partial: bool) -> dict[str, Any]:
    """Check an OCPI Token (a PATCH when ``partial``); return its known fields, parsed.

    Unknown fields are ignored (CHECKLIST 1.12). A PUT must carry every required field and
    its absent optional fields become null, since a PUT replaces (CHECKLIST 1.5). A PATCH must
    carry ``last_updated`` and may not null a field: a PATCH cannot remove information.
    Raise ``InvalidRequest`` saying what is wrong.
    """
    if not isinstance(document, dict):
        raise InvalidRequest("a token must be a JSON object")
    checked: dict[str, Any] = {}
    for name, check in OCPI_TOKEN_FIELDS.items():
        if name not in document:
            continue
        value = document[name]
        if value is None and not partial and name in _OPTIONAL_NULLABLE:
            checked[name] = None
            continue
        if value is None and partial:
            raise InvalidRequest(f"token field {name!r}: a PATCH cannot remove information")
        try:
            checked[name] = check(value)
        except ValueError as error:
            raise InvalidRequest(f"token field {name!r}: expected {error}") from None
    required = ("last_updated",) if partial else OCPI_TOKEN_REQUIRED
    missing = [name for name in required if name not in checked]
    if missing:
        raise InvalidRequest("token field(s) required: " + ", ".join(missing))
    if not partial:
        for name in _OPTIONAL_NULLABLE:
            checked.setdefault(name, None)
    return checked


def _check_key(
    values: Mapping[str, Any], country_code: str, party_id: str, uid: str, type_: str | None
) -> None:
    """Refuse a body that names another token than its URL (CHECKLIST 1.5, 6.1)."""
    expected = {"country_code": country_code, "party_id": party_id, "uid": uid, "type": type_}
    for name in _OCPI_KEY:
        given, wanted = values.get(name), expected[name]
        if given is None or wanted is None:
            continue
        if given.upper() != wanted.upper():  # CiString: case-insensitive (types are upper)
            raise InvalidRequest(f"token field {name!r} is {given!r} but the URL names {wanted!r}")


async def _find_partner_token(
    uow: UnitOfWork, country_code: str, party_id: str, uid: str, type_: str
) -> Token | None:
    key = (
        Token.country_code == country_code.upper(),
        Token.party_id == party_id.upper(),
        Token.type == type_,
    )
    token = await uow.session.scalar(select(Token).where(*key, Token.uid == uid))
    if token is None:
        # uid is a CiString: the eMSP may spell it in another case than it stored it with.
        # The exact match above uses the uid index; this one is the rarer second look.
        token = await uow.session.scalar(
            select(Token).where(*key, func.lower(Token.uid) == uid.lower())
        )
    return token


def _partner_token_missing(country_code: str, party_id: str, uid: str, type_: str) -> NotFound:
    return NotFound("token", f"{country_code}/{party_id}/{uid} ({type_})")


async def get_partner_token(
    uow: UnitOfWork, partner_id: int, *, country_code: str, party_id: str, uid: str, type_: str
) -> Token:
    """Return a token the partner pushed, or raise ``NotFound``."""
    async with uow:
        token = await _find_partner_token(uow, country_code, party_id, uid, type_)
        if token is None or token.partner_id != partner_id:
            raise _partner_token_missing(country_code, party_id, uid, type_)
        return token


async def put_partner_token(
    uow: UnitOfWork,
    partner_id: int,
    document: object,
    *,
    country_code: str,
    party_id: str,
    uid: str,
    type_: str | None,
) -> tuple[Token, bool]:
    """Create or replace a partner's token from an OCPI Token PUT; return it and if it is new.

    The URL's ``country_code``, ``party_id``, ``uid`` and ``type_`` (None: the body's type)
    must name the body's token, case-insensitively, else ``InvalidRequest``. A token of the
    same key that belongs to someone else raises ``Conflict``.
    """
    values = check_ocpi_token(document, partial=False)
    _check_key(values, country_code, party_id, uid, type_)
    values["country_code"] = values["country_code"].upper()
    values["party_id"] = values["party_id"].upper()
    async with uow:
        token = await _find_partner_token(
            uow, country_code, party_id, values["uid"], values["type"]
        )
        created = token is None
        if token is None:
            token = Token(source="ocpi", partner_id=partner_id, **values)
            uow.session.add(token)
        elif token.source != "ocpi" or token.partner_id != partner_id:
            raise Conflict(f"token {values['uid']!r} ({values['type']}) belongs to another party")
        else:
            for name, value in values.items():
                setattr(token, name, value)
        uow.record(_event(token, at=utcnow()))
        try:
            await uow.commit()
        except IntegrityError:
            # Two PUTs of one new token at once: the other one created it first.
            raise Conflict(f"token {values['uid']!r} was created meanwhile; try again") from None
        return token, created


async def patch_partner_token(
    uow: UnitOfWork,
    partner_id: int,
    changes: object,
    *,
    country_code: str,
    party_id: str,
    uid: str,
    type_: str,
) -> Token:
    """Change fields of a partner's token from an OCPI Token PATCH (never its key)."""
    values = check_ocpi_token(changes, partial=True)
    _check_key(values, country_code, party_id, uid, type_)
    for name in _OCPI_KEY:
        values.pop(name, None)
    async with uow:
        token = await _find_partner_token(uow, country_code, party_id, uid, type_)
        if token is None or token.partner_id != partner_id:
            raise _partner_token_missing(country_code, party_id, uid, type_)
        for name, value in values.items():
            setattr(token, name, value)
        uow.record(_event(token, at=utcnow()))
        await uow.commit()
        return token


async def partner_token_keys(
    uow: UnitOfWork, partner_id: int, *, valid: bool | None = None, before: datetime | None = None
) -> list[tuple[str, str, str, str]]:
    """The keys (country code, party id, uid, type) of the tokens a partner pushed or we pulled.

    ``valid`` keeps only valid (or invalid) ones; ``before`` only those whose
    ``last_updated`` is not later than it. In key order.
    """
    query = select(Token.country_code, Token.party_id, Token.uid, Token.type).where(
        Token.partner_id == partner_id, Token.source == "ocpi"
    )
    if valid is not None:
        query = query.where(Token.valid == valid)
    if before is not None:
        query = query.where(Token.last_updated <= before)
    query = query.order_by(Token.country_code, Token.party_id, Token.uid, Token.type)
    async with uow:
        rows = await uow.session.execute(query)
        return [(cc, pid, uid, type_) for cc, pid, uid, type_ in rows]
