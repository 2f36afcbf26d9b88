"""A SQLite node's engine runs each statement in one trip to aiosqlite's thread
(``cpms.sqlite_adapter``), and gives SQLAlchemy what its own adapter gives: rows, column
names, row counts, generated ids, errors, streamed results. SQLite only: PostgreSQL's
engine uses asyncpg as it comes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cpms.driver_sql import DriverStatement
from cpms.model import OutboxEntry, TransactionNumber
from cpms.sqlite_adapter import OneTripConnection, OneTripCursor
from cpms.unit_of_work import UnitOfWorkFactory

_OUTBOX = OutboxEntry.__table__
_AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _entry(key: str) -> dict[str, Any]:
    return {
        "topic": "location.changed",
        "aggregate_type": "location",
        "aggregate_id": key,
        "payload": {"key": key},
        "created_at": _AT,
        "available_at": _AT,
        "attempts": 0,
    }


@pytest.fixture(autouse=True)
def _sqlite_only(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's adapter only: PostgreSQL's engine uses asyncpg as it comes")


class _Trips:
    """Counts the calls queued to the aiosqlite thread of one connection."""

    def __init__(self) -> None:
        self.count = 0

    async def attach(self, connection: AsyncConnection) -> None:
        driver = (await connection.get_raw_connection()).driver_connection
        queue: Callable[..., Any] = driver._execute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await queue(*args, **kwargs)

        driver._execute = counted  # the instance's own, so only this connection counts


async def test_the_engine_hands_out_one_trip_cursors(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.dbapi_connection.cursor(), OneTripCursor)  # type: ignore[union-attr]


async def test_a_statement_is_one_trip_with_its_rows_and_column_names(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        await connection.execute(insert(_OUTBOX), [_entry("A"), _entry("B"), _entry("C")])
        trips = _Trips()
        await trips.attach(connection)

        found = await connection.execute(
            select(_OUTBOX.c.aggregate_id, _OUTBOX.c.payload).order_by(_OUTBOX.c.aggregate_id)
        )
        assert trips.count == 1
        assert list(found.keys()) == ["aggregate_id", "payload"]
        assert [tuple(row) for row in found] == [
            ("A", {"key": "A"}),
            ("B", {"key": "B"}),
            ("C", {"key": "C"}),
        ]

        changed = await connection.execute(
            update(_OUTBOX).where(_OUTBOX.c.aggregate_id != "B").values(attempts=1)
        )
        assert trips.count == 2
        assert changed.rowcount == 2

        many = await connection.execute(insert(_OUTBOX), [_entry("D"), _entry("E")])
        assert trips.count == 3
        assert many.rowcount == 2


async def test_a_fetch_takes_rows_one_at_a_time_or_in_parts(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(insert(_OUTBOX), [_entry(key) for key in "ABCDE"])
        found = await connection.execute(
            select(_OUTBOX.c.aggregate_id).order_by(_OUTBOX.c.aggregate_id)
        )
        assert found.fetchone() == ("A",)
        assert [tuple(row) for row in found.fetchmany(2)] == [("B",), ("C",)]
        assert [tuple(row) for row in found.fetchall()] == [("D",), ("E",)]
        assert found.fetchone() is None


async def test_generated_ids_come_back_from_the_trip(uow: UnitOfWorkFactory) -> None:
    async with uow() as work:
        first = TransactionNumber(session_id="s-1", issued_at=_AT)
        second = TransactionNumber(session_id="s-2", issued_at=_AT)
        work.session.add(first)
        await work.session.flush()
        work.session.add(second)
        await work.session.flush()
        await work.commit()
        assert first.id is not None
        assert second.id == first.id + 1
    async with uow() as work:
        stored = await work.session.scalars(
            select(TransactionNumber.session_id).order_by(TransactionNumber.id)
        )
        assert list(stored) == ["s-1", "s-2"]


async def test_a_failed_statement_raises_sqlalchemys_error_and_loses_nothing(
    uow: UnitOfWorkFactory,
) -> None:
    async with uow() as work:
        work.session.add(TransactionNumber(session_id="taken", issued_at=_AT))
        await work.commit()
    async with uow() as work:
        work.session.add(TransactionNumber(session_id="taken", issued_at=_AT))
        with pytest.raises(IntegrityError, match="UNIQUE"):
            await work.session.flush()
    # The connection went back to the pool after the failure and serves the next work.
    async with uow() as work:
        work.session.add(TransactionNumber(session_id="free", issued_at=_AT))
        await work.commit()
    async with uow() as work:
        count = await work.session.scalar(select(func.count()).select_from(TransactionNumber))
        assert count == 2


async def test_a_streamed_result_still_arrives_in_parts(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(insert(_OUTBOX), [_entry(f"K{n:03d}") for n in range(250)])
        streamed = await connection.stream(
            select(_OUTBOX.c.aggregate_id).order_by(_OUTBOX.c.aggregate_id)
        )
        sizes, keys = [], []
        async for part in streamed.partitions(100):
            sizes.append(len(part))
            keys.extend(row[0] for row in part)
        assert sizes == [100, 100, 50]
        assert keys == [f"K{n:03d}" for n in range(250)]


async def test_a_plain_sql_text_statement_runs_too(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await connection.execute(text("SELECT :x + 1"), {"x": 41})).scalar() == 42


# Deferred writes: an executemany that rides along with the connection's next trip.

_DEFERRED_INSERT = DriverStatement(insert(TransactionNumber.__table__), ("session_id", "issued_at"))


async def _numbers(uow: UnitOfWorkFactory) -> list[str]:
    async with uow() as work:
        found = await work.session.scalars(
            select(TransactionNumber.session_id).order_by(TransactionNumber.id)
        )
        return list(found)


async def test_deferred_rows_ride_along_with_the_next_statement_which_sees_them(
    uow: UnitOfWorkFactory,
) -> None:
    async with uow() as work:
        connection = await work.session.connection()
        trips = _Trips()
        await trips.attach(connection)
        rows = [("d-1", _AT), ("d-2", _AT)]
        await _DEFERRED_INSERT.execute_many(connection, rows, deferred=True)
        assert trips.count == 0
        count = await work.session.scalar(select(func.count()).select_from(TransactionNumber))
        assert (count, trips.count) == (2, 1)
        await work.commit()
        assert trips.count == 2
    assert await _numbers(uow) == ["d-1", "d-2"]


async def test_deferred_rows_and_the_commit_are_one_trip(uow: UnitOfWorkFactory) -> None:
    async with uow() as work:
        connection = await work.session.connection()
        trips = _Trips()
        await trips.attach(connection)
        await _DEFERRED_INSERT.execute_many(connection, [("c-1", _AT)], deferred=True)
        await _DEFERRED_INSERT.execute_many(connection, [("c-2", _AT)], deferred=True)
        await work.commit()
        assert trips.count == 1
    assert await _numbers(uow) == ["c-1", "c-2"]


async def test_a_rollback_drops_deferred_rows(uow: UnitOfWorkFactory) -> None:
    async with uow() as work:
        connection = await work.session.connection()
        await _DEFERRED_INSERT.execute_many(connection, [("gone", _AT)], deferred=True)
        await work.rollback()
        await _DEFERRED_INSERT.execute_many(
            await work.session.connection(), [("kept", _AT)], deferred=True
        )
        await work.commit()
    assert await _numbers(uow) == ["kept"]


async def test_a_unit_of_work_left_without_commit_leaves_nothing_for_the_next(
    uow: UnitOfWorkFactory,
) -> None:
    async with uow() as work:
        connection = await work.session.connection()
        await _DEFERRED_INSERT.execute_many(connection, [("abandoned", _AT)], deferred=True)
        raw = await connection.get_raw_connection()
        adapted = raw.dbapi_connection
        assert isinstance(adapted, OneTripConnection)
        assert adapted.deferred == 1
    # The pool is LIFO: the next work gets the same connection, with nothing deferred.
    assert adapted.deferred == 0
    async with uow() as work:
        work.session.add(TransactionNumber(session_id="next", issued_at=_AT))
        await work.commit()
    assert await _numbers(uow) == ["next"]


async def test_a_deferred_rows_error_fails_the_commit_and_stores_nothing(
    uow: UnitOfWorkFactory,
) -> None:
    async with uow() as work:
        work.session.add(TransactionNumber(session_id="taken", issued_at=_AT))
        await work.commit()
    async with uow() as work:
        work.session.add(TransactionNumber(session_id="same-work", issued_at=_AT))
        await work.session.flush()
        connection = await work.session.connection()
        await _DEFERRED_INSERT.execute_many(connection, [("taken", _AT)], deferred=True)
        with pytest.raises(IntegrityError, match="UNIQUE"):
            await work.commit()
    assert await _numbers(uow) == ["taken"]


async def test_a_connection_back_in_the_pool_forgets_what_it_deferred(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    async with engine.connect() as connection:  # no transaction begun: no rollback at close
        await _DEFERRED_INSERT.execute_many(connection, [("stray", _AT)], deferred=True)
        adapted = (await connection.get_raw_connection()).dbapi_connection
        assert isinstance(adapted, OneTripConnection)
        assert adapted.deferred == 1
    assert adapted.deferred == 0
    async with uow() as work:
        work.session.add(TransactionNumber(session_id="next", issued_at=_AT))
        await work.commit()
    assert await _numbers(uow) == ["next"]
