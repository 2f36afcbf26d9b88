"""SQLAlchemy's aiosqlite adapter, with one trip to aiosqlite's thread per statement.

aiosqlite runs every call on a thread of its own per connection, and each call is a trip:
queued from the event loop, run on that thread, its answer handed back to the loop. The
cursor SQLAlchemy's adapter uses makes a statement three or four trips (the cursor is
opened, executed, fetched and closed, each one a trip). Every trip also hands the
interpreter lock to that thread and back, and under load it waits behind the loop's other
work each time. The ORM paths (a StartTransaction, a StopTransaction with its CDR, a boot)
run some twenty statements each, so these trips were a third of their CPU alone and more of
their time in a reconnect storm (docs/PERFORMANCE.md, session 15).

``OneTripCursor`` runs a statement, its fetch and its close as one function on the thread
and keeps the rows, the description, the row count and the last row id it brought back.
Everything else (connections, transactions, server-side cursors, errors) is SQLAlchemy's
adapter unchanged. ``cpms.database.create_engine`` passes ``one_trip_dbapi()`` as the
engine's DBAPI module (SQLAlchemy's ``module=``), so the URL stays ``sqlite+aiosqlite://``.

It reaches into two private names, which is why ``pyproject.toml`` bounds both versions:
aiosqlite's ``Connection._execute`` (the one primitive all its public methods queue their
work with) and ``Connection._conn`` (the ``sqlite3`` connection that work runs on).
``tests/integration/cpms/test_sqlite_adapter.py`` counts the trips, so a version that moves
either fails the suite instead of falling back silently.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

__all__ = ["OneTripCursor", "one_trip_dbapi"]

_Outcome = tuple[Any, list[Any] | None, int, int | None]
"""What a statement brings back from the thread: description, rows, row count, last row id."""


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """Run one statement on aiosqlite's thread: execute, fetch every row, close."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description and not many else None
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose ``execute`` is one trip to the connection's thread.

    It holds no aiosqlite cursor: each statement opens, uses and closes a ``sqlite3``
    cursor on the thread. What the statement brought back is read from here afterwards.
    """

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # Not the base's __init__: that one opens an aiosqlite cursor, a trip of its own.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    async def _async_soft_close(self) -> None:
        """Nothing to close: the statement's cursor closed on the thread."""

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> None:
        try:
            await_(self._one_trip(operation, parameters, many=False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> None:
        try:
            await_(self._one_trip(operation, seq_of_parameters, many=True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _one_trip(self, operation: str, parameters: Any, *, many: bool) -> None:
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await driver._execute(
                _run, driver._conn, operation, parameters, many
            )
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = deque(rows or ())

    # The base class reads rows from ``_rows`` too; spelled out so that this cursor does not
    # depend on how a SQLAlchemy release implements them.

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        count = min(self.arraysize if size is None else size, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    def fetchall(self) -> Sequence[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        """Ignored: every row is fetched on the thread at once."""


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor


class _OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite DBAPI shim, handing out ``_OneTripConnection``."""

    def connect(self, *arg: Any, **kw: Any) -> _OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return _OneTripConnection(self, adapted._connection)


def one_trip_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI module to create a ``sqlite+aiosqlite`` engine with (``module=``)."""
    return _OneTripDbapi(aiosqlite, sqlite3)
