"""Start and stop a transaction in the core as the gateway does: the token decided first.

The OCPP handlers decide on a transaction's token before its write (``HandlerBase._authorize``)
and hand the decision to ``charging.start_transaction`` / ``stop_transaction``. Tests that
drive the core directly do the same here, inside their one unit of work.
"""

from __future__ import annotations

from cpms.authorization import Authorization, Authorizer
from cpms.charging import (
    StartOutcome,
    StartRequest,
    StopOutcome,
    StopRequest,
    start_transaction,
    stop_transaction,
)
from cpms.station_lifecycle import load_station
from cpms.unit_of_work import UnitOfWork

__all__ = ["decide", "start_decided", "stop_decided"]


async def decide(
    uow: UnitOfWork, authorizer: Authorizer, station_id: str, uid: str | None
) -> Authorization | None:
    """The decision about ``uid`` at the station's location (None when no token is named)."""
    if not uid:
        return None
    station = await load_station(uow, station_id)
    return await authorizer.authorize(uow, uid, location_id=station.location_id)


async def start_decided(
    uow: UnitOfWork, station_id: str, request: StartRequest, authorizer: Authorizer
) -> StartOutcome:
    """``start_transaction`` with its token decided by ``authorizer`` first."""
    authorization = await decide(uow, authorizer, station_id, request.uid)
    return await start_transaction(
        uow, station_id, request, authorization=authorization, operator=authorizer.operator
    )


async def stop_decided(
    uow: UnitOfWork, station_id: str, request: StopRequest, authorizer: Authorizer
) -> StopOutcome:
    """``stop_transaction`` with its token decided by ``authorizer`` first."""
    authorization = await decide(uow, authorizer, station_id, request.uid)
    return await stop_transaction(uow, station_id, request, authorization=authorization)
