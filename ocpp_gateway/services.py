"""The core services the OCPP message handlers use, bundled for one gateway."""

from __future__ import annotations

from dataclasses import dataclass

from cpms.authorization import Authorizer
from cpms.group_commit import GroupCommitter, GroupReader
from cpms.liveness import Liveness
from cpms.unit_of_work import UnitOfWorkFactory

__all__ = ["StationServices"]


@dataclass(frozen=True, slots=True)
class StationServices:
    """What message handlers need from the core; built by the composition root."""

    uow: UnitOfWorkFactory
    committer: GroupCommitter
    """Hot-path writes share transactions; a handler answers once its write is durable."""
    reader: GroupReader
    """Hot-path reads (a presented token's decision) share a connection and statements."""
    authorizer: Authorizer
    heartbeat_interval: int
    """Seconds, given to stations in the BootNotification answer."""
    liveness: Liveness
    """When each station was last heard from; written in bulk, not per message."""
