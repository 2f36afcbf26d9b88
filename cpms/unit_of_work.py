"""The unit of work: one database transaction, with its domain events in the outbox.

Use it as an async context manager. Leaving the block without ``commit()`` rolls back, so a
failed service call leaves nothing half-written. ``commit()`` adds an outbox row for every
event recorded with ``record()`` and commits the rows and the change together; only then are
the events handed to the in-process subscribers (who must not be able to see an event whose
change was rolled back)::

    async with uow_factory() as uow:
        location = await uow.get(Location, "LOC1")
        ...
        uow.record(LocationChanged(occurred_at=now, location_id=location.id))
        await uow.commit()
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cpms.driver_sql import DriverStatement
from cpms.errors import NotFound
from cpms.events import DomainEvent
from cpms.model import OutboxEntry

__all__ = ["EventSubscriber", "UnitOfWork", "UnitOfWorkFactory"]

log = logging.getLogger("cpms.unit_of_work")

T = TypeVar("T")
_OUTBOX_INSERT = DriverStatement(
    insert(OutboxEntry.__table__),
    (
        "topic",
        "aggregate_type",
        "aggregate_id",
        "payload",
        "created_at",
        "available_at",
        "attempts",
    ),
)
EventSubscriber = Callable[[Sequence[DomainEvent]], Awaitable[None]]


class UnitOfWork:
    """One transaction over the database; see the module docstring."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        subscribers: Sequence[EventSubscriber] = (),
    ) -> None:
        self._sessionmaker = sessionmaker
        self._subscribers = subscribers
        self._session: AsyncSession | None = None
        self._events: list[DomainEvent] = []
        self._rows: dict[DriverStatement, list[Sequence[Any]]] = {}

    @property
    def session(self) -> AsyncSession:
        """The SQLAlchemy session of this unit of work (inside the ``async with`` only)."""
        if self._session is None:
            raise RuntimeError("use the unit of work inside `async with`")
        return self._session

    async def __aenter__(self) -> Self:
        self._session = self._sessionmaker()
        self._events = []
        self._rows = {}
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self.session, None
        self._events = []
        self._rows = {}
        # close() rolls back whatever was not committed and detaches the loaded objects with
        # their state intact, so a service may return what it read; rollback() would expire it.
        await session.close()

    def record(self, event: DomainEvent) -> None:
        """Record ``event`` to be written to the outbox by the next ``commit()``."""
        self._events.append(event)

    def insert_at_commit(self, statement: DriverStatement, row: Sequence[Any]) -> None:
        """Have ``commit()`` insert ``row`` with ``statement``: one executemany for all its rows.

        For rows nobody reads back in this transaction (the station log): as ORM objects
        with a generated key, SQLite inserts them one statement each, to learn every key.
        They are inserted after the ORM's changes are flushed, so they may refer to them.
        """
        self._rows.setdefault(statement, []).append(row)

    async def get(self, model: type[T], key: Any, *, kind: str | None = None) -> T:
        """Load ``model`` by primary key, or raise ``NotFound``."""
        found = await self.session.get(model, key)
        if found is None:
            raise NotFound(kind or model.__name__, key)
        return found

    async def commit(self) -> None:
        """Write the recorded events to the outbox and commit them with the change."""
        events, self._events = self._events, []
        rows, self._rows = self._rows, {}
        session = self.session
        if rows:
            await session.flush()
            connection = await session.connection()
            for statement, values in rows.items():
                await statement.execute_many(connection, values, deferred=True)
        if events:
            # One executemany INSERT on the driver: the entries are never read back here, so
            # they need not be objects in the session (a flush of hundreds of them cost more
            # than the rest).
            await _OUTBOX_INSERT.execute_many(
                await session.connection(),
                [
                    (
                        event.topic,
                        event.aggregate,
                        event.aggregate_id,
                        event.payload(),
                        event.occurred_at,
                        event.occurred_at,
                        0,
                    )
                    for event in events
                ],
                deferred=True,
            )
        await session.commit()
        if events:
            await self._publish(events)

    async def rollback(self) -> None:
        """Discard the change and the recorded events."""
        self._events = []
        self._rows = {}
        await self.session.rollback()

    async def _publish(self, events: Sequence[DomainEvent]) -> None:
        for subscriber in self._subscribers:
            try:
                await subscriber(events)
            except Exception:
                # The change is committed and the events are in the outbox; a failing
                # in-process subscriber must not turn a saved change into an error.
                log.exception("event subscriber %r failed", subscriber)


class UnitOfWorkFactory:
    """Makes units of work over one engine; the services' only way to the database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        self._subscribers: list[EventSubscriber] = []

    def subscribe(self, subscriber: EventSubscriber) -> None:
        """Call ``subscriber`` with the events of every commit, after it committed."""
        self._subscribers.append(subscriber)

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self._sessionmaker, self._subscribers)
