"""Helpers of the OCPP 1.6 end-to-end tests: a started node, and reading what it stored.

Imported by the tests as ``e2e.ocpp16.node`` (``tests/`` is on the path); the fixtures that
build nodes are in ``conftest.py`` beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from raw_station import STEP, RawStation, raw_station
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import selectinload

from cpms import stations, tokens
from cpms.config import Settings
from cpms.locations import ensure_default_location
from cpms.model import (
    ChargingStation,
    Evse,
    MeterSample,
    OutboxEntry,
    Session,
    StationEvent,
    Token,
)
from cpms.runtime import Runtime, default_location

__all__ = ["HEARTBEAT_INTERVAL", "Node", "NodeStarter", "iso", "parse_iso"]

T = TypeVar("T")

HEARTBEAT_INTERVAL = 247
"""Seconds; deliberately not the default of 300."""


def iso(moment: datetime) -> str:
    """An OCPP dateTime (UTC, milliseconds, ``Z``) of an aware datetime."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """An aware datetime of an OCPP dateTime the node sent."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Node:
    """A started node and helpers to drive it and read its database."""

    runtime: Runtime

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def port(self) -> int:
        return self.runtime.ocpp_port

    def connect(self, station_id: str, **options: Any) -> AbstractAsyncContextManager[RawStation]:
        """A raw OCPP 1.6 station connected to this node (see ``raw_station``)."""
        return raw_station(self.port, station_id, **options)

    # Setting things up through the core's own services, as an operator would

    async def create_station(
        self, station_id: str, *, password: str | None = None, lenient: bool = False
    ) -> None:
        """Create a station under the default location (needed with ``known`` admission)."""
        async with self.runtime.uow() as uow:
            await ensure_default_location(uow, default_location(self.settings))
            await uow.commit()
        await stations.create_station(
            self.runtime.uow(),
            station_id,
            location_id=self.settings.default_location_id,
            password=password,
            lenient=lenient,
        )

    async def create_token(self, uid: str, **fields: Any) -> Token:
        """Create a local token with ``fields`` (``group_id``, ``valid``...)."""
        return await tokens.create_token(
            self.runtime.uow(),
            {"uid": uid, **fields},
            country_code=self.settings.country_code,
            party_id=self.settings.party_id,
        )

    # Reading rows

    async def rows(
        self,
        model: type[T],
        *criteria: ColumnElement[bool],
        order_by: Any = None,
        options: tuple[Any, ...] = (),
    ) -> list[T]:
        """Rows of ``model`` matching ``criteria`` (detached, columns loaded)."""
        query = select(model).where(*criteria).options(*options)
        if order_by is not None:
            query = query.order_by(order_by)
        async with self.runtime.uow() as uow:
            return list(await uow.session.scalars(query))

    async def one(self, model: type[T], *criteria: ColumnElement[bool]) -> T:
        """The single row of ``model`` matching ``criteria``."""
        found = await self.rows(model, *criteria)
        assert len(found) == 1, f"expected one {model.__name__}, found {len(found)}"
        return found[0]

    async def station(self, station_id: str) -> ChargingStation:
        return await self.one(ChargingStation, ChargingStation.id == station_id)

    async def evses(self, station_id: str) -> list[Evse]:
        """A station's EVSEs by OCPP connector id, with their connectors."""
        return await self.rows(
            Evse,
            Evse.station_id == station_id,
            order_by=Evse.ocpp_evse_id,
            options=(selectinload(Evse.connectors),),
        )

    async def evse(self, station_id: str, number: int) -> Evse:
        return await self.one(Evse, Evse.station_id == station_id, Evse.ocpp_evse_id == number)

    async def events(self, station_id: str, kind: str | None = None) -> list[StationEvent]:
        """A station's log, oldest first, optionally of one kind."""
        criteria = [StationEvent.station_id == station_id]
        if kind is not None:
            criteria.append(StationEvent.kind == kind)
        return await self.rows(StationEvent, *criteria, order_by=StationEvent.id)

    async def sessions(self, station_id: str) -> list[Session]:
        return await self.rows(Session, Session.station_id == station_id, order_by=Session.id)

    async def session(self, transaction_id: int) -> Session:
        return await self.one(Session, Session.transaction_id == str(transaction_id))

    async def samples(self, *criteria: ColumnElement[bool]) -> list[MeterSample]:
        return await self.rows(MeterSample, *criteria, order_by=MeterSample.id)

    async def outbox(self, topic: str) -> list[OutboxEntry]:
        return await self.rows(OutboxEntry, OutboxEntry.topic == topic, order_by=OutboxEntry.id)

    async def eventually(self, probe: Callable[[], Awaitable[T]], holds: Callable[[T], bool]) -> T:
        """Poll ``probe()`` until ``holds`` its result, for at most ``STEP``; return it.

        For effects that follow no answer frame (a disconnect), so there is nothing to await.
        """
        async with asyncio.timeout(STEP):
            while True:
                value = await probe()
                if holds(value):
                    return value
                await asyncio.sleep(0.02)


NodeStarter = Callable[..., Awaitable[Node]]
"""``await start_node(**settings_changes) -> Node``; stopped when the test ends."""
