"""Hub clients: what roaming hubs tell us of the parties behind them (OCPI HubClientInfo).

A hub PUTs a ClientInfo when one of its clients connects, goes offline, is planned or is
suspended, and we may pull its whole list (CHECKLIST 9). Both arrive here: ``check_client_info``
checks one ClientInfo, ``put_client_info`` stores it for the hub that sent it, an older one
never replacing a newer one. ``connection_status`` answers what the pusher needs to know
before sending to a party through a hub: CONNECTED (send), OFFLINE (do not send, do not
queue), PLANNED (not reachable yet), SUSPENDED (gone for good), or None when no hub said.
The pusher holds what it would send to a party that is not CONNECTED
(``cpms.push_queue.on_hold``); a ClientInfo that says CONNECTED releases those pushes in the
same transaction (``cpms.push_queue.release_held``).

The eMSP parties a hub reported are the parties it may tell us of tokens for
(``cpms.partners``: ``Caller.owns``, ``PartnerLink.owns``).

Knows no HTTP; the OCPI adapter serves and pulls. Spec: OCPI 2.2.1 module HubClientInfo.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cpms.documents.datetimes import format_datetime, parse_datetime
from cpms.errors import Conflict, DocumentError, InvalidRequest, NotFound
from cpms.model import HubClient, OcpiPartner, utcnow
from cpms.pages import Page, fetch_page
from cpms.push_queue import release_held
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "CONNECTION_STATUSES",
    "ROLES",
    "Stored",
    "check_client_info",
    "client_info_to_ocpi",
    "connection_status",
    "get_client_info",
    "hub_client_view",
    "list_client_infos",
    "put_client_info",
]

#: OCPI 2.2.1 Role.
ROLES = ("CPO", "EMSP", "HUB", "NAP", "NSP", "OTHER", "SCSP")
#: OCPI 2.2.1 ConnectionStatus.
CONNECTION_STATUSES = ("CONNECTED", "OFFLINE", "PLANNED", "SUSPENDED")
#: What a ClientInfo must carry (every field has cardinality 1).
_REQUIRED = ("party_id", "country_code", "role", "status", "last_updated")
_CI_STRING = re.compile(r"[\x20-\x7e]+")


class Stored(enum.StrEnum):
    """What ``put_client_info`` did with a ClientInfo."""

    CREATED = "created"
    UPDATED = "updated"
    KEPT = "kept"
    """The stored ClientInfo is newer (its ``last_updated``): it stays as it is."""


def _ci_string(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limit or not _CI_STRING.fullmatch(value):
        raise InvalidRequest(
            f"ClientInfo field {name!r}: expected a CiString of 1 to {limit} printable ASCII "
            f"characters, got {value!r}"
        )
    return value.upper()


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidRequest(
            f"ClientInfo field {name!r}: expected one of {', '.join(allowed)}, got {value!r}"
        )
    return str(value)


def check_client_info(document: object) -> dict[str, Any]:
    """Check an OCPI ClientInfo; return its fields, parsed and upper-cased where CiString.

    Unknown fields are ignored (CHECKLIST 1.12). Raise ``InvalidRequest`` saying what is wrong.
    """
    if not isinstance(document, Mapping):
        raise InvalidRequest("a ClientInfo must be a JSON object")
    missing = [name for name in _REQUIRED if document.get(name) is None]
    if missing:
        raise InvalidRequest("ClientInfo field(s) required: " + ", ".join(missing))
    try:
        last_updated = parse_datetime(document["last_updated"], "last_updated")
    except DocumentError as error:
        raise InvalidRequest(f"ClientInfo field {error}") from None
    return {
        "country_code": _ci_string("country_code", document["country_code"], 2),
        "party_id": _ci_string("party_id", document["party_id"], 3),
        "role": _one_of("role", document["role"], ROLES),
        "status": _one_of("status", document["status"], CONNECTION_STATUSES),
        "last_updated": last_updated,
    }


def client_info_to_ocpi(client: HubClient) -> dict[str, Any]:
    """Return the OCPI 2.2.1 ClientInfo document of ``client``."""
    return {
        "party_id": client.party_id,
        "country_code": client.country_code,
        "role": client.role,
        "status": client.status,
        "last_updated": format_datetime(client.last_updated),
    }


def hub_client_view(client: HubClient, partner_name: str | None = None) -> dict[str, Any]:
    """A hub client as the operator sees it: the ClientInfo, which hub said it, and when."""
    return client_info_to_ocpi(client) | {
        "partner_id": client.partner_id,
        "partner_name": partner_name,
        "received_at": format_datetime(client.received_at),
    }


async def _find(
    uow: UnitOfWork, partner_id: int, country_code: str, party_id: str
) -> HubClient | None:
    return await uow.session.scalar(
        select(HubClient).where(
            HubClient.partner_id == partner_id,
            HubClient.country_code == country_code.upper(),
            HubClient.party_id == party_id.upper(),
        )
    )


async def put_client_info(
    uow: UnitOfWork,
    partner_id: int,
    document: object,
    *,
    country_code: str | None = None,
    party_id: str | None = None,
) -> tuple[HubClient, Stored]:
    """Store a ClientInfo the hub ``partner_id`` sent (a PUT, or one item of its list).

    With ``country_code`` and ``party_id`` (a PUT's URL) the body must name the same party,
    case-insensitively, else ``InvalidRequest``. A ClientInfo older than the stored one
    (``last_updated``) changes nothing and returns ``Stored.KEPT``.
    """
    values = check_client_info(document)
    for name, wanted in (("country_code", country_code), ("party_id", party_id)):
        if wanted is not None and values[name] != wanted.upper():
            raise InvalidRequest(
                f"ClientInfo field {name!r} is {values[name]!r} but the URL names {wanted!r}"
            )
    async with uow:
        client = await _find(uow, partner_id, values["country_code"], values["party_id"])
        if client is None:
            client = HubClient(partner_id=partner_id, received_at=utcnow(), **values)
            uow.session.add(client)
            outcome = Stored.CREATED
        elif client.last_updated > values["last_updated"]:
            return client, Stored.KEPT
        else:
            for name, value in values.items():
                setattr(client, name, value)
            client.received_at = utcnow()
            outcome = Stored.UPDATED
        if client.status == "CONNECTED":
            # What waited for the party while it was not connected may go now.
            await release_held(
                uow,
                partner_id,
                country_code=client.country_code,
                party_id=client.party_id,
                now=utcnow(),
            )
        try:
            await uow.commit()
        except IntegrityError:
            # Two PUTs of one new client at once: the other one created it first.
            raise Conflict(
                f"ClientInfo {values['country_code']}/{values['party_id']} was created "
                "meanwhile; try again"
            ) from None
        return client, outcome


async def get_client_info(
    uow: UnitOfWork, partner_id: int, *, country_code: str, party_id: str
) -> HubClient:
    """Return what the hub ``partner_id`` said of one client, or raise ``NotFound``."""
    async with uow:
        client = await _find(uow, partner_id, country_code, party_id)
    if client is None:
        raise NotFound("ClientInfo", f"{country_code}/{party_id}")
    return client


async def list_client_infos(
    uow: UnitOfWork,
    *,
    partner_id: int | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[Page[HubClient], dict[int, str]]:
    """List hub clients by hub, country code and party id; also the names of their hubs."""
    query = select(HubClient).order_by(
        HubClient.partner_id, HubClient.country_code, HubClient.party_id, HubClient.id
    )
    if partner_id is not None:
        query = query.where(HubClient.partner_id == partner_id)
    async with uow:
        page = await fetch_page(uow.session, query, offset=offset, limit=limit)
        hubs = {client.partner_id for client in page.items}
        rows = await uow.session.execute(
            select(OcpiPartner.id, OcpiPartner.name).where(OcpiPartner.id.in_(hubs))
        )
        names = {partner_id: name for partner_id, name in rows}
    return page, names


async def connection_status(
    uow: UnitOfWork, country_code: str, party_id: str, *, partner_id: int | None = None
) -> str | None:
    """Return how the party is connected as its hub last said, or None if no hub said.

    Only hubs we are still registered with count; of several, the latest ``last_updated``
    wins. With ``partner_id``, only what that hub said counts. ``uow`` entered.
    """
    query = (
        select(HubClient.status)
        .join(OcpiPartner, OcpiPartner.id == HubClient.partner_id)
        .where(
            HubClient.country_code == country_code.upper(),
            HubClient.party_id == party_id.upper(),
            OcpiPartner.state == "REGISTERED",
        )
        .order_by(HubClient.last_updated.desc(), HubClient.id.desc())
        .limit(1)
    )
    if partner_id is not None:
        query = query.where(HubClient.partner_id == partner_id)
    return await uow.session.scalar(query)
