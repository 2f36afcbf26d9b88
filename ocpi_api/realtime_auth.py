"""Real-time authorization: ask a token's eMSP ``POST {tokens}/{uid}/authorize`` (OCPI 2.2.1).

``cpms.authorization.Authorizer`` decides when to ask (the token's whitelist, or a uid nobody
pushed); this module asks. A known token is asked of the partner that pushed it; an unknown
uid of every registered partner with a Tokens SENDER endpoint at once, the first definitive
answer winning. Every request carries ``?type=`` when the token is known and LocationReferences
when the location is known (CHECKLIST 6.2: some eMSPs answer 2002 without them).

What comes back (CHECKLIST 1.7, 6.2, 11.3):

- an AuthorizationInfo: its ``allowed`` becomes the decision, with its token as CdrToken and its
  ``authorization_reference`` for the session and CDR;
- HTTP 404 and/or OCPI 2004 (the spec says both): the eMSP does not know the token. For a
  token it pushed us, that is NOT_ALLOWED; for an unknown uid, the next partner may know it;
- OCPI 2002 (it needs LocationReferences): we send them whenever we know the location, so
  there is nothing more to give; like every other failure it counts as no answer;
- unreachable, timed out, or an answer that is not an AuthorizationInfo: no answer. When
  nobody answered, ``authorize`` returns None and the authorizer falls back per whitelist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from cpms.authorization import Authorization, AuthorizationStatus, cdr_token_for
from cpms.errors import NotFound
from cpms.model import Token
from cpms.partners import PartnerLink, partner_link, partner_links
from cpms.secrets import TokenVault
from cpms.unit_of_work import UnitOfWork
from ocpi_api.client import OcpiClient, PartnerUnreachable, join_url

__all__ = ["OcpiRemoteAuthorizer"]

log = logging.getLogger("ocpi_api.realtime_auth")

_CDR_TOKEN_FIELDS = ("country_code", "party_id", "uid", "type", "contract_id")
#: AuthorizationInfo.authorization_reference is a CiString(36).
_REFERENCE_MAX = 36


class _Unknown:
    """The partner answered that it does not know the token."""


_UNKNOWN = _Unknown()


class OcpiRemoteAuthorizer:
    """Asks eMSPs ``POST {tokens}/{uid}/authorize``; see the module docstring."""

    def __init__(self, vault: TokenVault, client: OcpiClient, *, timeout: float) -> None:
        self.vault, self.client, self.timeout = vault, client, timeout

    async def issuers(self, uow: UnitOfWork, token: Token | None) -> list[PartnerLink]:
        """The partners to ask about ``token`` (every Tokens SENDER for a uid nobody pushed)."""
        if token is None:
            return await partner_links(uow, self.vault, module="tokens", role="SENDER")
        if token.partner_id is None:
            return []  # our own token, or one nobody can be asked about
        try:
            link = await partner_link(uow, self.vault, token.partner_id)
        except NotFound:
            return []
        return [link] if link.endpoint("tokens", "SENDER") else []

    async def ask(
        self,
        issuers: Sequence[object],
        uid: str,
        token: Token | None,
        *,
        location_id: str | None,
    ) -> Authorization | None:
        """Return the issuer's decision, or None when nobody answered."""
        links = [link for link in issuers if isinstance(link, PartnerLink)]
        if not links:
            return None
        if token is not None:
            answer = await self._ask(links[0], uid, token, location_id)
            if isinstance(answer, _Unknown):
                return Authorization(
                    AuthorizationStatus.NOT_ALLOWED,
                    token.uid,
                    cdr_token_for(token),
                    group_id=token.group_id,
                    partner_id=links[0].partner_id,
                    source="remote",
                    details={"reason": "the issuer does not know the token"},
                )
            return answer
        return await self._first_answer(links, uid, location_id)

    async def _first_answer(
        self, links: list[PartnerLink], uid: str, location_id: str | None
    ) -> Authorization | None:
        """Ask every partner at once; return the first AuthorizationInfo that comes back."""
        pending = {
            asyncio.create_task(self._ask(link, uid, None, location_id), name=f"authorize-{uid}")
            for link in links
        }
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    answer = task.result()
                    if isinstance(answer, Authorization):
                        return answer
            return None
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _ask(
        self, link: PartnerLink, uid: str, token: Token | None, location_id: str | None
    ) -> Authorization | _Unknown | None:
        """Ask one partner; its decision, ``_UNKNOWN``, or None when it gave no answer."""
        url = link.endpoint("tokens", "SENDER")
        assert url is not None  # issuers() keeps only partners with one
        party = (token.country_code, token.party_id) if token is not None else link.party
        try:
            reply = await self.client.request(
                "POST",
                # A uid is any printable ASCII, "/" and "?" included: one path segment.
                join_url(url, quote(uid, safe=""), "authorize"),
                token=link.token,
                base64_encoded=link.auth_base64,
                body={"location_id": location_id} if location_id is not None else None,
                params={"type": token.type} if token is not None else None,
                to_party=party,
                timeout=self.timeout,
            )
        except PartnerUnreachable as error:
            log.warning("real-time authorization of %s at %s: %s", uid, link.name, error)
            return None
        if reply.http_status == 404 or reply.status_code == 2004:
            return _UNKNOWN
        if not reply.ok:
            log.warning(
                "real-time authorization of %s at %s: HTTP %s, OCPI %s %s",
                uid, link.name, reply.http_status, reply.status_code, reply.message or "",
            )  # fmt: skip
            return None
        decision = _decision(reply.data, uid, token, link)
        if decision is None:
            log.warning(
                "real-time authorization of %s at %s: not an AuthorizationInfo: %.200r",
                uid, link.name, reply.data,
            )  # fmt: skip
        return decision


def _decision(info: Any, uid: str, token: Token | None, link: PartnerLink) -> Authorization | None:
    """Read an AuthorizationInfo into a decision, or None when it is not one."""
    if not isinstance(info, dict) or not isinstance(info.get("token"), dict):
        return None
    try:
        status = AuthorizationStatus(info.get("allowed"))
    except ValueError:
        return None
    if status is AuthorizationStatus.UNKNOWN:  # ours, not an OCPI AllowedType
        return None
    answered: dict[str, Any] = info["token"]
    # The CdrToken is the eMSP's word on the token; where it left something out, fall back
    # to what we know (the token it pushed us, else the uid as presented and its party).
    fallback: dict[str, Any]
    if token is not None:
        fallback = cdr_token_for(token)
    else:
        country_code, party_id = link.party or ("", "")
        fallback = {
            "country_code": country_code,
            "party_id": party_id,
            "uid": uid,
            "type": "RFID",
            "contract_id": uid,
        }
    cdr_token = {
        name: answered[name] if isinstance(answered.get(name), str) else fallback[name]
        for name in _CDR_TOKEN_FIELDS
    }
    group_id = answered.get("group_id")
    if not isinstance(group_id, str):
        group_id = token.group_id if token is not None else None
    reference = info.get("authorization_reference")
    if not (isinstance(reference, str) and 0 < len(reference) <= _REFERENCE_MAX):
        # Session and CDR carry it as CiString(36): a longer one would spoil both.
        if reference is not None:
            log.warning("%s sent an unusable authorization_reference %.60r", link.name, reference)
        reference = None
    return Authorization(
        status,
        uid,
        cdr_token,
        group_id=group_id,
        partner_id=link.partner_id,
        authorization_reference=reference,
        source="remote",
        details={key: info[key] for key in ("info", "location") if info.get(key) is not None},
    )
