"""The per-partner push queue: what each OCPI partner must receive, in order, exactly once.

(Being built for issue 5: the fan-out of outbox events and the delivery bookkeeping land
here.) ``queue_callback`` queues a request to a URL a partner gave us (a command's
``response_url``), delivered by the pusher with the same retries as every push.
"""

from __future__ import annotations

from typing import Any

from cpms.model import OcpiPush, utcnow
from cpms.unit_of_work import UnitOfWork

__all__ = ["queue_callback"]


def queue_callback(
    uow: UnitOfWork, *, partner_id: int, url: str, body: dict[str, Any], object_key: str
) -> OcpiPush:
    """Queue ``POST url`` with ``body`` for ``partner_id`` (``uow`` entered; commit after)."""
    now = utcnow()
    push = OcpiPush(
        partner_id=partner_id,
        object_key=object_key,
        kind="callback",
        payload={"url": url, "body": body},
        created_at=now,
        available_at=now,
        attempts=0,
    )
    uow.session.add(push)
    return push
