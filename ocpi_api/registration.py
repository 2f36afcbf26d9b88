"""The HTTP side of OCPI registration, in both directions (CHECKLIST 1.2 to 1.4).

``discover`` reads a partner's versions and its 2.2.1 version details with the token it gave
us: Base64-encoded first, as 2.2.1 says, and raw if the partner refuses that (many do; the
choice is remembered per partner, FIELD-NOTES 14). The credentials module calls it while it
handles a partner's POST or PUT; ``register`` (our POST), ``update`` (our PUT) and
``unregister`` (our DELETE) drive the exchange when we are the initiating party. The core
(``cpms.partners``) stores every step; nothing here writes the database itself.

A registration that completed, either way, is followed by ``push_everything``: the partner
is queued a whole PUT of every current tariff and every location it may see
(``cpms.push_queue.queue_full_sync``), so it holds our data from the start. After an update
(a credentials PUT, either way) only a module whose RECEIVER endpoint is new or moved is
pushed again: a token rotation alone loses the partner nothing.

Failures raise ``RegistrationFailed`` carrying the OCPI status that names them: 3001 the
partner's API cannot be used (unreachable, refuses our token, answers an error or an invalid
Credentials object), 3002 it does not speak 2.2.1, 3003 it has no credentials endpoint.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cpms.config import Settings
from cpms.errors import CpmsError, DocumentError
from cpms.model import OcpiPartner
from cpms.partners import (
    PartnerPlatform,
    RegistrationStateError,
    abandon_offer,
    begin_registration,
    begin_rotation,
    complete_registration,
    complete_rotation,
    endpoints_by_module,
    link_of,
    unregister_partner,
)
from cpms.push_queue import queue_full_sync, receiver_urls
from cpms.secrets import TokenVault
from cpms.unit_of_work import UnitOfWorkFactory

# ``ocpi_api.versions`` imports the modules, and the credentials module imports this one:
# take the module, not its names, so either may be imported first.
from ocpi_api import versions
from ocpi_api.client import OcpiClient, OcpiReply, PartnerUnreachable
from ocpi_api.envelope import OcpiStatus

__all__ = [
    "BUSINESS_NAME",
    "Credentials",
    "RegistrationFailed",
    "discover",
    "our_credentials",
    "our_roles",
    "parse_credentials",
    "push_everything",
    "register",
    "unregister",
    "update",
]

log = logging.getLogger("ocpi_api.registration")

BUSINESS_NAME = "CPMS"
"""The ``business_details.name`` of our CredentialsRole."""

ROLES = ("CPO", "EMSP", "HUB", "NAP", "NSP", "OTHER", "SCSP")
"""OCPI 2.2.1 ``Role`` values."""

_TOKEN = re.compile(r"[\x21-\x7e]{1,64}")  # string(64), printable ASCII without whitespace
_PARTY_ID = re.compile(r"[A-Za-z0-9]{3}")
_COUNTRY_CODE = re.compile(r"[A-Za-z]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RegistrationFailed(CpmsError):
    """A registration step with a partner failed; ``status_code`` is the OCPI status for it."""

    def __init__(self, status_code: OcpiStatus, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


# Credentials objects --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """A checked OCPI ``Credentials`` object."""

    token: str
    url: str
    roles: list[dict[str, Any]]


def parse_credentials(body: Any) -> Credentials:
    """Check an OCPI ``Credentials`` object; raise ``DocumentError`` naming the problem."""
    if not isinstance(body, dict):
        raise DocumentError("", "a Credentials object {token, url, roles} is expected")
    token = body.get("token")
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise DocumentError(
            "token", "1 to 64 printable ASCII characters without whitespace are required"
        )
    url = body.get("url")
    if not isinstance(url, str) or len(url) > 255 or not url.startswith(("http://", "https://")):
        raise DocumentError(
            "url", "the http(s) URL of your versions endpoint (at most 255 characters)"
        )
    roles = body.get("roles")
    if not isinstance(roles, list) or not roles:
        raise DocumentError("roles", "at least one CredentialsRole is required")
    seen: set[tuple[str, str, str]] = set()
    for index, role in enumerate(roles):
        key = _check_role(role, f"roles[{index}]")
        if key in seen:
            raise DocumentError(
                f"roles[{index}]", "the same role, country_code and party_id are listed twice"
            )
        seen.add(key)
    return Credentials(token=token, url=url, roles=roles)


def _check_role(role: Any, path: str) -> tuple[str, str, str]:
    if not isinstance(role, dict):
        raise DocumentError(path, "a CredentialsRole object is expected")
    if role.get("role") not in ROLES:
        raise DocumentError(f"{path}.role", f"one of {', '.join(ROLES)} is required")
    party_id, country_code = role.get("party_id"), role.get("country_code")
    if not isinstance(party_id, str) or not _PARTY_ID.fullmatch(party_id):
        raise DocumentError(f"{path}.party_id", "3 letters or digits are required")
    if not isinstance(country_code, str) or not _COUNTRY_CODE.fullmatch(country_code):
        raise DocumentError(f"{path}.country_code", "an ISO 3166-1 alpha-2 code is required")
    business = role.get("business_details")
    if not isinstance(business, dict):
        raise DocumentError(f"{path}.business_details", "a BusinessDetails object is required")
    name = business.get("name")
    if not isinstance(name, str) or not name or len(name) > 100 or _CONTROL.search(name):
        raise DocumentError(
            f"{path}.business_details.name", "1 to 100 characters without control characters"
        )
    return role["role"], country_code.upper(), party_id.upper()


def our_roles(settings: Settings) -> list[dict[str, Any]]:
    """Our CredentialsRole list: one CPO with our country code and party id."""
    return [
        {
            "role": "CPO",
            "party_id": settings.party_id,
            "country_code": settings.country_code,
            "business_details": {"name": BUSINESS_NAME},
        }
    ]


def our_credentials(
    token: str, versions_url: str, roles: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Our ``Credentials`` object offering ``token``."""
    return {"token": token, "url": versions_url, "roles": list(roles)}


# Reading a partner's platform -----------------------------------------------------------------


async def _ask(
    client: OcpiClient,
    method: str,
    url: str,
    token: str,
    base64_encoded: bool,
    body: Any = None,
) -> OcpiReply:
    try:
        return await client.request(
            method, url, token=token, base64_encoded=base64_encoded, body=body
        )
    except PartnerUnreachable as error:
        raise RegistrationFailed(OcpiStatus.CLIENT_API_UNUSABLE, f"cannot reach: {error}") from None


def _refused(method: str, url: str, reply: OcpiReply) -> RegistrationFailed:
    said = f", OCPI {reply.status_code}" if reply.status_code is not None else ""
    said += f": {reply.message}" if reply.message else ""
    return RegistrationFailed(
        OcpiStatus.CLIENT_API_UNUSABLE, f"{method} {url} answered HTTP {reply.http_status}{said}"
    )


async def discover(
    client: OcpiClient, versions_url: str, token: str, *, auth_base64: bool = True
) -> PartnerPlatform:
    """Read the partner's versions and 2.2.1 details with ``token``; see the module docstring.

    ``auth_base64`` is the encoding tried first; the other one is tried when the partner
    answers 401, and the one it accepted is returned in ``PartnerPlatform.auth_base64``.
    """
    reply = await _ask(client, "GET", versions_url, token, auth_base64)
    if reply.http_status == 401:
        retry = await _ask(client, "GET", versions_url, token, not auth_base64)
        if retry.http_status != 401:
            reply, auth_base64 = retry, not auth_base64
    if not reply.ok:
        raise _refused("GET", versions_url, reply)
    offered = reply.data if isinstance(reply.data, list) else []
    details_url = next(
        (
            entry["url"]
            for entry in offered
            if isinstance(entry, dict)
            and entry.get("version") == versions.VERSION
            and isinstance(entry.get("url"), str)
        ),
        None,
    )
    if details_url is None:
        spoken = [str(e.get("version")) for e in offered if isinstance(e, dict)]
        raise RegistrationFailed(
            OcpiStatus.UNSUPPORTED_VERSION,
            f"{versions_url} offers {', '.join(spoken) or 'no version'}; "
            f"we speak {versions.VERSION} only",
        )
    reply = await _ask(client, "GET", details_url, token, auth_base64)
    if not reply.ok:
        raise _refused("GET", details_url, reply)
    details = reply.data if isinstance(reply.data, dict) else {}
    listed = details.get("endpoints")
    endpoints = endpoints_by_module(
        [e for e in listed if isinstance(e, dict)] if isinstance(listed, list) else []
    )
    if "credentials" not in endpoints:
        raise RegistrationFailed(
            OcpiStatus.NO_MATCHING_ENDPOINTS,
            f"{details_url} lists no credentials endpoint (found: {', '.join(endpoints) or '-'})",
        )
    return PartnerPlatform(
        versions_url=versions_url,
        version=versions.VERSION,
        endpoints=endpoints,
        auth_base64=auth_base64,
    )


def _credentials_url(platform: PartnerPlatform) -> str:
    # The role of a credentials endpoint means nothing (CHECKLIST 1.2): take any.
    return next(iter(platform.endpoints["credentials"].values()))


async def _exchange(
    client: OcpiClient,
    method: str,
    platform: PartnerPlatform,
    token: str,
    offered: dict[str, Any],
) -> Credentials:
    """Send our credentials; return the partner's, checked."""
    url = _credentials_url(platform)
    reply = await _ask(client, method, url, token, platform.auth_base64, offered)
    if not reply.ok:
        raise _refused(method, url, reply)
    try:
        return parse_credentials(reply.data)
    except DocumentError as error:
        raise RegistrationFailed(
            OcpiStatus.CLIENT_API_UNUSABLE,
            f"{method} {url} answered invalid credentials ({error}); it may consider us "
            "registered: unregister there",
        ) from None


async def _their_platform(
    client: OcpiClient, platform: PartnerPlatform, answer: Credentials
) -> PartnerPlatform:
    """The platform to store: read again if their answer names another versions URL."""
    if answer.url == platform.versions_url:
        return platform
    return await discover(client, answer.url, answer.token, auth_base64=platform.auth_base64)


# After a registration -------------------------------------------------------------------------


async def push_everything(
    uow: UnitOfWorkFactory, partner_id: int, *, known: Mapping[str, str] | None = None
) -> None:
    """Queue a partner that just registered (or updated) everything it may receive.

    ``known``: after an update, its RECEIVER URLs before it (see the module docstring).
    The registration stands whatever happens here: a failure is logged, not raised (the
    partner may still pull everything, CHECKLIST 1.12), and what was queued stays queued.
    """
    try:
        queued = await queue_full_sync(uow, partner_id, known=known)
    except Exception:
        log.exception("could not queue the full push to partner %d; it may pull", partner_id)
        return
    if queued.tariffs or queued.locations:
        log.info(
            "partner %d: %d tariff(s) and %d location(s) queued to push whole",
            partner_id, queued.tariffs, queued.locations,
        )  # fmt: skip


# We initiate ----------------------------------------------------------------------------------


async def register(
    uow: UnitOfWorkFactory,
    vault: TokenVault,
    client: OcpiClient,
    *,
    name: str,
    versions_url: str,
    token_a: str,
    our_versions_url: str,
    our_roles: Sequence[dict[str, Any]],
) -> int:
    """Register with a partner that gave us ``versions_url`` and ``token_a``; return its id.

    CHECKLIST 1.3 as the initiating party: read its versions and details with token A, offer
    a new token (accepted before it is sent: the partner reads our versions with it while it
    handles our POST), POST our credentials, store the token it answers (sealed). On failure
    the offered token is no longer accepted and the partner is left UNREGISTERED.
    """
    platform = await discover(client, versions_url, token_a)
    partner_id, offered = await begin_registration(uow(), name=name, versions_url=versions_url)
    try:
        answer = await _exchange(
            client, "POST", platform, token_a, our_credentials(offered, our_versions_url, our_roles)
        )
        platform = await _their_platform(client, platform, answer)
        await complete_registration(
            uow(),
            vault,
            partner_id,
            our_token=offered,
            their_token=answer.token,
            roles=answer.roles,
            platform=platform,
        )
    except BaseException:
        await abandon_offer(uow(), partner_id, offered)
        raise
    # The pusher of a node finds these within a second (this may be another process).
    await push_everything(uow, partner_id)
    return partner_id


async def _partner(uow: UnitOfWorkFactory, partner_id: int) -> OcpiPartner:
    async with uow() as unit:
        return await unit.get(OcpiPartner, partner_id, kind="partner")


async def update(
    uow: UnitOfWorkFactory,
    vault: TokenVault,
    client: OcpiClient,
    partner_id: int,
    *,
    our_versions_url: str,
    our_roles: Sequence[dict[str, Any]],
) -> None:
    """Update our registration with a partner (our PUT): read its platform again, rotate tokens.

    The new token we offer works for versions and credentials while the partner handles the
    PUT, and replaces the old one only once the partner answered; on failure the old tokens
    stay in force.
    """
    partner = await _partner(uow, partner_id)
    if partner.state != "REGISTERED" or partner.versions_url is None:
        raise RegistrationStateError(f"partner {partner_id} is not registered")
    link = link_of(partner, vault)
    known = await receiver_urls(uow(), partner_id)
    platform = await discover(
        client, partner.versions_url, link.token, auth_base64=link.auth_base64
    )
    offered = await begin_rotation(uow(), partner_id)
    try:
        answer = await _exchange(
            client,
            "PUT",
            platform,
            link.token,
            our_credentials(offered, our_versions_url, our_roles),
        )
        platform = await _their_platform(client, platform, answer)
        await complete_rotation(
            uow(),
            vault,
            partner_id,
            our_token=offered,
            their_token=answer.token,
            roles=answer.roles,
            platform=platform,
        )
    except BaseException:
        await abandon_offer(uow(), partner_id, offered)
        raise
    await push_everything(uow, partner_id, known=known)


async def unregister(
    uow: UnitOfWorkFactory, vault: TokenVault, client: OcpiClient, partner_id: int
) -> str | None:
    """Unregister a partner: DELETE our credentials there, then forget every token here.

    We stop accepting its token whatever it answers (the operator asked); the return value
    says why the partner did not confirm, or is None when it did (or was only invited).
    """
    partner = await _partner(uow, partner_id)
    problem: str | None = None
    if partner.state == "REGISTERED" and partner.outgoing_token is not None:
        link = link_of(partner, vault)
        urls = link.endpoints.get("credentials") or {}
        url = next(iter(urls.values()), None)
        if url is None:
            problem = "it lists no credentials endpoint"
        else:
            try:
                reply = await _ask(client, "DELETE", url, link.token, link.auth_base64)
                problem = None if reply.ok else str(_refused("DELETE", url, reply))
            except RegistrationFailed as error:
                problem = error.message
    await unregister_partner(uow(), partner_id)
    return problem
