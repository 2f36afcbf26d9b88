"""Helpers of the OCPI tests: a partner registered without the handshake, and our URLs.

``register_directly`` writes a REGISTERED partner row for an ``EmspPeer`` (tokens in both
directions, its endpoints and roles), so tests of pushes, tokens and commands do not depend
on the credentials module; the handshake itself is tested on its own.
"""

from __future__ import annotations

import secrets

from ocpi_peer import EmspPeer

from cpms.model import OcpiPartner, utcnow
from cpms.partners import endpoints_by_module
from cpms.passwords import hash_token
from cpms.runtime import Runtime

__all__ = ["cpo_url", "register_directly"]


def cpo_url(runtime: Runtime, path: str = "") -> str:
    """Our 2.2.1 URL of ``path`` (e.g. ``"locations"``), or the version details for ``""``."""
    base = f"{runtime.base_url()}/ocpi/2.2.1"
    return f"{base}/{path.lstrip('/')}" if path else base


async def register_directly(runtime: Runtime, peer: EmspPeer, *, name: str = "peer") -> int:
    """Register ``peer`` with ``runtime`` by writing the partner row; returns its id."""
    theirs = "T-" + secrets.token_urlsafe(16)  # the peer calls us with it
    ours = "O-" + secrets.token_urlsafe(16)  # we call the peer with it
    peer.accepted_tokens.add(ours)
    peer.token_for_cpo = theirs
    now = utcnow()
    async with runtime.uow() as uow:
        partner = OcpiPartner(
            name=name,
            state="REGISTERED",
            incoming_token_hash=hash_token(theirs),
            outgoing_token=runtime.vault.seal(ours),
            auth_base64=True,
            versions_url=peer.versions_url,
            version="2.2.1",
            endpoints=endpoints_by_module(peer.endpoints()),
            roles=peer.credentials(ours)["roles"],
            created_at=now,
            updated_at=now,
            registered_at=now,
        )
        uow.session.add(partner)
        await uow.commit()
    runtime.pusher.wake()  # as a registration does: the pusher sleeps while nobody listens
    return partner.id
