"""Statements run on the driver (``cpms.driver_sql``) write what SQLAlchemy writes, in the
unit of work's transaction, and fail as SQLAlchemy fails; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import String, bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from cpms.driver_sql import DriverStatement, padded, padded_size
from cpms.model import OutboxEntry
from cpms.unit_of_work import UnitOfWorkFactory

_OUTBOX = OutboxEntry.__table__
_COLUMNS = ("topic", "aggregate_type", "aggregate_id", "payload", "created_at", "available_at")
_INSERT = DriverStatement(insert(_OUTBOX), (*_COLUMNS, "attempts"))
_MARK = DriverStatement(
    update(_OUTBOX)
    .where(_OUTBOX.c.aggregate_id == bindparam("key"), _OUTBOX.c.processed_at.is_(None))
    .values(processed_at=bindparam("at", type_=_OUTBOX.c.processed_at.type)),
    ("key", "at"),
)
_TOPICS = DriverStatement(
    select(_OUTBOX.c.aggregate_id, _OUTBOX.c.topic)
    .where(_OUTBOX.c.aggregate_type == bindparam("kind"))
    .order_by(_OUTBOX.c.aggregate_id),
    ("kind",),
)

_AT = datetime(2026, 11, 22, 6, 30, 15, 123456, tzinfo=UTC)
_ROWS: list[tuple[Any, ...]] = [
    ("location.changed", "location", "L1", {"fields": ["status"], "n": 1}, _AT, _AT, 0),
    # Another offset, the same instant: stored as UTC like everything else.
    ("tariff.changed", "tariff", "T1", None, _AT.astimezone(timezone(timedelta(hours=2))), _AT, 3),
    ("location.changed", "location", "L2", {"é": "ü"}, _AT, _AT + timedelta(seconds=1), 0),
]


async def _stored(uow: UnitOfWorkFactory) -> list[tuple[Any, ...]]:
    async with uow() as work:
        found = await work.session.execute(
            select(*(_OUTBOX.c[name] for name in (*_COLUMNS, "attempts"))).order_by(
                _OUTBOX.c.aggregate_id
            )
        )
        return [tuple(row) for row in found]


async def test_rows_written_on_the_driver_read_back_as_sqlalchemy_writes_them(
    uow: UnitOfWorkFactory,
) -> None:
    async with uow() as work:
        await work.session.execute(
            insert(_OUTBOX), [dict(zip((*_COLUMNS, "attempts"), row, strict=True)) for row in _ROWS]
        )
        await work.commit()
    through_sqlalchemy = await _stored(uow)
    async with uow() as work:
        await work.session.execute(_OUTBOX.delete())
        await work.commit()

    async with uow() as work:
        await _INSERT.execute_many(await work.session.connection(), _ROWS)
        await work.commit()

    assert await _stored(uow) == through_sqlalchemy
    assert through_sqlalchemy[1][4] == _AT  # aware UTC, to the microsecond
    assert through_sqlalchemy[0][3] == {"fields": ["status"], "n": 1}


async def test_updates_and_reads_go_through_the_same_statements(
    uow: UnitOfWorkFactory,
) -> None:
    async with uow() as work:
        connection = await work.session.connection()
        await _INSERT.execute_many(connection, _ROWS)
        assert await _TOPICS.fetch_all(connection, ("location",)) == [
            ("L1", "location.changed"),
            ("L2", "location.changed"),
        ]
        assert await _MARK.execute(connection, ("L1", _AT)) == 1
        assert await _MARK.execute(connection, ("L1", _AT)) == 0  # marked already
        await work.commit()
    async with uow() as work:
        marked = await work.session.scalars(
            select(_OUTBOX.c.aggregate_id).where(_OUTBOX.c.processed_at == _AT)
        )
        assert list(marked) == ["L1"]


async def test_a_driver_statement_is_part_of_the_transaction(uow: UnitOfWorkFactory) -> None:
    async with uow() as work:
        await _INSERT.execute_many(await work.session.connection(), _ROWS)
        await work.rollback()
    assert await _stored(uow) == []


async def test_a_driver_error_is_raised_as_sqlalchemys_and_listeners_see_the_statement(
    uow: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    seen: list[str] = []

    def heard(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    duplicate = DriverStatement(insert(_OUTBOX), ("id", *_COLUMNS, "attempts"))
    event.listen(engine.sync_engine, "before_cursor_execute", heard)
    try:
        async with uow() as work:
            connection = await work.session.connection()
            with pytest.raises(IntegrityError):
                await duplicate.execute_many(connection, [(7, *_ROWS[0][:-1], 0)] * 2)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", heard)
    assert [statement.split()[:3] for statement in seen] == [["INSERT", "INTO", "outbox"]]
    assert await _stored(uow) == []


_EVERYTHING = DriverStatement(
    select(*(_OUTBOX.c[name] for name in (*_COLUMNS, "attempts")))
    .where(_OUTBOX.c.attempts >= bindparam("least"))
    .order_by(_OUTBOX.c.aggregate_id),
    ("least",),
)


async def test_a_read_on_the_driver_converts_what_it_reads_as_sqlalchemy_does(
    uow: UnitOfWorkFactory,
) -> None:
    async with uow() as work:
        await _INSERT.execute_many(await work.session.connection(), _ROWS)
        await work.commit()
    async with uow() as work:
        read = await _EVERYTHING.fetch_all(await work.session.connection(), (0,))
    # JSON as objects, times as aware UTC datetimes, None as None: what SQLAlchemy reads.
    assert read == await _stored(uow)
    assert read[0][3] == {"fields": ["status"], "n": 1}
    assert read[2][4] == _AT  # written in another offset
    assert read[2][3] is None


async def test_a_none_for_json_is_stored_as_sqlalchemy_stores_it(uow: UnitOfWorkFactory) -> None:
    # SQLAlchemy stores a JSON column's None as the JSON text null, not as SQL NULL; the
    # driver path answers None without serialising it each time, and must store the same.
    raw = select(_OUTBOX.c.payload.cast(String)).where(_OUTBOX.c.aggregate_id == "T1")
    async with uow() as work:
        await work.session.execute(
            insert(_OUTBOX), [dict(zip((*_COLUMNS, "attempts"), _ROWS[1], strict=True))]
        )
        through_sqlalchemy = await work.session.scalar(raw)
        await work.session.execute(_OUTBOX.delete())
        await _INSERT.execute_many(await work.session.connection(), [_ROWS[1]])
        assert await work.session.scalar(raw) == through_sqlalchemy == "null"


def test_lists_are_padded_to_a_power_of_two_with_repeats_or_a_filler() -> None:
    assert [padded_size(n) for n in (1, 2, 3, 5, 64, 65)] == [1, 2, 4, 8, 64, 128]
    assert padded(["a", "b", "c"]) == ["a", "b", "c", "c"]
    assert padded([("a", "1")] * 3, fill=("", "")) == [("a", "1")] * 3 + [("", "")]
    assert padded(["a", "b"]) == ["a", "b"]
