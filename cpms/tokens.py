"""Local tokens: the RFID cards and other ids the operator authorizes drivers with.

Local tokens carry our own country code and party id and are shaped like OCPI 2.2.1 Token,
so the one authorization service reads them like the tokens eMSPs push. They are never
deleted: retiring one sets ``valid`` to false.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from cpms.errors import Conflict, InvalidRequest, NotFound
from cpms.events import TokenChanged
from cpms.model import Token, utcnow
from cpms.pages import Page, fetch_page
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "TOKEN_FIELDS",
    "create_token",
    "get_token",
    "list_tokens",
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
    if not isinstance(value, dict) or not isinstance(value.get("supplier_name"), str):
        raise ValueError("an object with supplier_name (and optionally contract_id)")
    return value


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
        "last_updated": token.last_updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
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


def _event(token: Token) -> TokenChanged:
    return TokenChanged(
        occurred_at=token.last_updated,
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
