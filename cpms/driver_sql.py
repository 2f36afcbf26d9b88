"""Hot-path statements run straight on the database driver, inside the unit of work's transaction.

Every status report and meter reading of every station goes through a few Core statements.
Through SQLAlchemy and aiosqlite a one-row statement cost 95 to 125 µs of CPU, on the driver
alone 20 µs (docs/PERFORMANCE.md, session 11): SQLAlchemy's execution context, parameters
processed one by one for every row, and three or four hops to aiosqlite's thread (a cursor
is opened, executed, fetched and closed, each a hop).

A ``DriverStatement`` keeps what SQLAlchemy would redo each time: the statement compiled once
per dialect to the driver's SQL, the order its parameters go in, the constants it carries and
the bind processor of each parameter's type (our ``UtcDateTime``, ``ExactDecimal`` and JSON
convert exactly as they do through the ORM). Rows are handed over as tuples in the order of
``names``. On SQLite a statement is one hop to aiosqlite's thread (``executemany``,
``execute_fetchall``); on PostgreSQL it goes through ``exec_driver_sql``, which keeps the
adapter's transaction handling. Either way it runs on the connection of the unit of work, in
its transaction, and a driver error is raised as SQLAlchemy's own (``IntegrityError``, ...).

A read (``fetch_all``) returns its rows converted by each selected column's result
processor, as SQLAlchemy converts them. On PostgreSQL it runs through SQLAlchemy: there the
conversion depends on the types the driver reports for the result, which only a cursor knows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import ClauseElement

from cpms.sqlite_adapter import OneTripConnection, Outcome

__all__ = ["DriverStatement", "padded", "padded_size"]

Row = Sequence[Any]
T = TypeVar("T")
Convert = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A statement as one dialect's driver takes it."""

    sql: str
    picks: tuple[tuple[int | None, Any], ...] | None
    """For each driver parameter in order: the index of its value in a row, or None and the
    statement's constant; None when the driver's parameters are the row itself."""
    conversions: tuple[tuple[int, Convert], ...]
    """``(position, bind processor)`` of each driver parameter whose type converts it."""
    results: tuple[tuple[int, Convert], ...]
    """``(position, result processor)`` of each selected column whose type converts it."""

    def parameters(self, row: Row) -> tuple[Any, ...]:
        if self.picks is None:
            return _converted(list(row), self.conversions)
        picked = [row[index] if index is not None else value for index, value in self.picks]
        return _converted(picked, self.conversions)

    def rows(self, found: Iterable[Row]) -> list[tuple[Any, ...]]:
        return [_converted(list(values), self.results) for values in found]


def _converted(values: list[Any], conversions: tuple[tuple[int, Convert], ...]) -> tuple[Any, ...]:
    """``values`` with each ``(position, convert)`` applied in place, as a tuple."""
    for position, convert in conversions:
        values[position] = convert(values[position])
    return tuple(values)


def _none_kept(convert: Convert) -> Convert:
    """``convert`` with None answered at once, by what ``convert`` makes of it.

    JSON turns None into the text ``null`` with a ``json.dumps`` every time: in a meter
    sample's row that was most of the cost of its parameters.
    """
    null = convert(None)
    if null is None:
        return convert  # it passes None through already
    return lambda value: null if value is None else convert(value)


class DriverStatement:
    """A Core statement for the driver; rows give the values of ``names``, in that order."""

    def __init__(self, statement: ClauseElement, names: Sequence[str]) -> None:
        self.statement = statement
        self.names = tuple(names)
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = self._compile(dialect)
        return compiled

    def _compile(self, dialect: Dialect) -> _Compiled:
        if isinstance(self.statement, Insert):
            # Only the columns named, and no RETURNING of the new keys: nobody reads them.
            compiled = self.statement.compile(
                dialect=dialect, column_keys=list(self.names), for_executemany=True
            )
        else:
            compiled = self.statement.compile(dialect=dialect)
        order = compiled.positiontup
        if order is None:
            raise ValueError(f"dialect {dialect.name} does not take positional parameters")
        index = {name: i for i, name in enumerate(self.names)}
        picks: list[tuple[int | None, Any]] = []
        conversions: list[tuple[int, Convert]] = []
        for position, name in enumerate(order):
            bind = compiled.binds[name]
            picks.append((index[name], None) if name in index else (None, bind.effective_value))
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if convert is not None:
                conversions.append((position, _none_kept(convert)))
        itself = picks == [(i, None) for i in range(len(self.names))]
        results = tuple(
            (position, convert)
            for position, column in enumerate(getattr(self.statement, "selected_columns", ()))
            if (convert := column.type.dialect_impl(dialect).result_processor(dialect, None))
        )
        return _Compiled(
            compiled.string, None if itself else tuple(picks), tuple(conversions), results
        )

    async def execute_many(
        self, connection: AsyncConnection, rows: Sequence[Row], *, deferred: bool = False
    ) -> None:
        """Run the statement once for each row (one executemany), in the open transaction.

        ``deferred``: on SQLite the executemany waits for the connection's next trip (its
        next statement, which sees it, or the commit) instead of taking a trip of its own.
        For writes whose error can wait until then: it is raised by that later statement.
        """
        if not rows:
            return
        compiled = self._for(connection.dialect)
        parameters = [compiled.parameters(row) for row in rows]
        if connection.dialect.name != "sqlite":
            await connection.exec_driver_sql(compiled.sql, parameters)
            return
        adapted = await _on_sqlite(connection, compiled.sql, parameters, many=True)
        if deferred:
            adapted.defer(compiled.sql, parameters)
        else:
            await _run(connection, adapted, compiled.sql, parameters, many=True)

    async def execute(self, connection: AsyncConnection, row: Row) -> int:
        """Run the statement once with one row of values; the number of rows it changed."""
        compiled = self._for(connection.dialect)
        parameters = compiled.parameters(row)
        if connection.dialect.name != "sqlite":
            return int((await connection.exec_driver_sql(compiled.sql, parameters)).rowcount)
        adapted = await _on_sqlite(connection, compiled.sql, parameters, many=False)
        _, _, rowcount, _ = await _run(connection, adapted, compiled.sql, parameters, many=False)
        return rowcount

    async def fetch_all(self, connection: AsyncConnection, row: Row) -> list[tuple[Any, ...]]:
        """Run the (SELECT) statement with one row of values; every result row, converted."""
        if connection.dialect.name != "sqlite":
            result = await connection.execute(
                self.statement, dict(zip(self.names, row, strict=True))
            )
            return [tuple(found) for found in result]
        compiled = self._for(connection.dialect)
        parameters = compiled.parameters(row)
        adapted = await _on_sqlite(connection, compiled.sql, parameters, many=False)
        _, found, _, _ = await _run(connection, adapted, compiled.sql, parameters, many=False)
        return compiled.rows(found or ())


async def _on_sqlite(
    connection: AsyncConnection, sql: str, parameters: Any, *, many: bool
) -> OneTripConnection:
    """The adapted driver connection under ``connection``, told of ``sql`` about to run.

    Listeners of ``before_cursor_execute`` (statement counts in tests, ``bench.anatomy``)
    hear of ``sql`` as of every other statement (the cursor and context they get are None).
    """
    sync = connection.sync_connection
    if sync is not None and sync.dispatch.before_cursor_execute:
        sync.dispatch.before_cursor_execute(sync, None, sql, parameters, None, many)
    adapted = (await connection.get_raw_connection()).dbapi_connection
    if not isinstance(adapted, OneTripConnection):
        raise TypeError(f"{adapted!r}: a SQLite engine comes from cpms.database.create_engine")
    return adapted


async def _run(
    connection: AsyncConnection,
    adapted: OneTripConnection,
    sql: str,
    parameters: Any,
    *,
    many: bool,
) -> Outcome:
    """``sql`` in one trip to aiosqlite's thread; a driver error raised as SQLAlchemy raises
    it for the same statement."""
    dbapi = connection.dialect.loaded_dbapi
    try:
        return await adapted.run(sql, parameters, many=many)
    except dbapi.Error as error:
        raise DBAPIError.instance(
            sql, None, error, dbapi.Error, dialect=connection.dialect
        ) from error


def padded_size(count: int) -> int:
    """``count`` rounded up to a power of two.

    A statement over a list of values (``IN``, a ``VALUES`` list) is built for a padded size,
    so a batch of any length uses one of a few cached statements.
    """
    return 1 << max(count - 1, 0).bit_length()


def padded(values: Sequence[T], fill: T | None = None) -> list[T]:
    """``values`` made ``padded_size`` long with ``fill``, or by repeating the last value.

    ``IN`` ignores repeats; a list joined to a table wants a ``fill`` that matches nothing.
    """
    filler = values[-1] if fill is None else fill
    return [*values, *[filler] * (padded_size(len(values)) - len(values))]
