"""What the message handlers of every OCPP version share: writes, the station log, timestamps.

A version's handlers (``v16.handlers``, ``v201.handlers``) subclass ``HandlerBase`` so both
dialects reach the core the same way: hot-path writes through the group committer (answered
once durable), log entries in the station log, station timestamps read leniently or strictly
as the station is configured, and the boot and heartbeat answers, which are the same in both.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from cpms.authorization import Authorization, Presented
from cpms.charging import MeterReport, record_meter_reports
from cpms.station_lifecycle import (
    BootReport,
    BootStatus,
    StationBoot,
    StatusReport,
    log_station_event,
    record_boots,
    record_statuses,
)
from cpms.unit_of_work import UnitOfWork
from ocpp_gateway.rpc import Call
from ocpp_gateway.server import CallContext
from ocpp_gateway.services import StationServices
from ocpp_gateway.timestamps import format_timestamp, parse_timestamp

__all__ = ["HandlerBase", "Payload", "station_time"]

Payload = dict[str, Any]
T = TypeVar("T")

logger = logging.getLogger("ocpp_gateway")


def station_time(context: CallContext, text: str | None, path: str) -> datetime | None:
    """A timestamp the station sent (None if it sent none), read as strictly as it deserves."""
    if text is None:
        return None
    return parse_timestamp(text, path=path, lenient=context.state.lenient)


class HandlerBase:
    """The core services and the two ways every handler writes: state, and the log."""

    def __init__(self, services: StationServices) -> None:
        self.services = services

    async def _write(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        return await self.services.committer.run(work)

    async def _record_status(self, context: CallContext, report: StatusReport) -> None:
        # Grouped: the status reports of a batch are written with a few statements for all.
        await self.services.committer.run_grouped(record_statuses, (context.station_id, report))

    async def _record_meter_report(self, context: CallContext, report: MeterReport) -> None:
        # Grouped too: the commonest message of a charging station.
        await self.services.committer.run_grouped(
            record_meter_reports, (context.station_id, report)
        )

    async def _log(
        self,
        context: CallContext,
        kind: str,
        summary: str,
        details: Payload | None = None,
        *,
        occurred_at: datetime | None = None,
    ) -> None:
        """Keep an entry in the station's log (durable before the station is answered)."""

        async def write(uow: UnitOfWork) -> None:
            log_station_event(
                uow,
                context.station_id,
                kind,
                summary[:255],
                received_at=context.received_at,
                occurred_at=occurred_at,
                details=details,
            )

        await self._write(write)

    async def _authorize(self, context: CallContext, uid: str) -> Authorization:
        """Decide on a presented token; an eMSP asked in real time learns the location.

        Always before the write it is for, never inside it: an eMSP may take seconds to
        answer, and the group commit's transaction holds every other station's writes (and
        on SQLite the write lock). The database is read first, by the group reader (the
        tokens of a storm's StartTransactions with a few SELECTs for a batch, beside the
        writer), and nobody is asked until its connection is back in the pool.
        """
        pending = await self.services.reader.run_grouped(
            self.services.authorizer.prepare_at_stations, Presented(context.station_id, uid)
        )
        return await pending.decide()

    async def _authorize_if(self, context: CallContext, uid: str | None) -> Authorization | None:
        """``_authorize`` for a message that may name no token."""
        return await self._authorize(context, uid) if uid is not None else None

    async def _boot(self, context: CallContext, report: BootReport) -> Payload:
        """Record a boot; answer it (the same three fields in 1.6 and 2.0.1)."""
        # Grouped: every station of a reconnect storm boots within seconds.
        decision = await self.services.committer.run_grouped(
            record_boots,
            StationBoot(
                context.station_id, report, context.received_at, self.services.heartbeat_interval
            ),
        )
        context.state.boot_status = decision.status.value
        if decision.status is not BootStatus.ACCEPTED:
            logger.info("station %s: boot answered %s", context.station_id, decision.status)
        return {
            "status": decision.status.value,
            "currentTime": format_timestamp(decision.current_time),
            "interval": decision.interval,
        }

    async def heartbeat(self, context: CallContext, call: Call) -> Payload:
        """Heartbeat, the same in every version: note the station is alive, tell it our time.

        No write waits for it: ``cpms.liveness`` writes every station's latest moment in bulk.
        """
        self._seen(context)
        return {"currentTime": format_timestamp(context.received_at)}

    def _seen(self, context: CallContext) -> None:
        """Note that the station was heard from (its ``last_seen_at``, written in bulk)."""
        self.services.liveness.seen(context.station_id, context.received_at)
