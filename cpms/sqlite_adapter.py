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
``OneTripConnection`` can also defer a write (``DriverStatement.execute_many(...,
deferred=True)``): the executemany then rides along with the connection's next trip, its
next statement or its commit, so a batch's inserts and the commit that follows them are one
trip (docs/PERFORMANCE.md, session 19). Everything else (connections, transactions,
server-side cursors, errors) is SQLAlchemy's adapter unchanged.
``cpms.database.create_engine`` passes ``one_trip_dbapi()`` as the engine's DBAPI module
(SQLAlchemy's ``module=``), so the URL stays ``sqlite+aiosqlite://``.

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

__all__ = ["OneTripConnection", "OneTripCursor", "Outcome", "one_trip_dbapi"]

Outcome = tuple[Any, list[Any] | None, int, int | None]
"""What a statement brings back from the thread: description, rows, row count, last row id."""


Deferred = tuple[str, Any]
"""An executemany put off until the connection's next trip: its SQL and its rows."""


def _run(
    connection: sqlite3.Connection,
    deferred: list[Deferred],
    operation: str,
    parameters: Any,
    many: bool,
) -> Outcome:
    """Run one statement on aiosqlite's thread: execute, fetch every row, close.

    The writes ``deferred`` until this trip run first, in their order.
    """
    _run_deferred(connection, deferred)
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


def _run_deferred(connection: sqlite3.Connection, deferred: list[Deferred]) -> None:
    for operation, rows in deferred:
        connection.executemany(operation, rows).close()


def _commit(connection: sqlite3.Connection, deferred: list[Deferred]) -> None:
    """The deferred writes, then the commit: one trip for the end of a transaction."""
    _run_deferred(connection, deferred)
    connection.commit()


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
        adapted: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        outcome = await adapted.run(operation, parameters, many=many)
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


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection, handing out ``OneTripCursor``; it can defer writes.

    ``defer(sql, rows)`` holds an executemany until the connection's next trip: the next
    statement (which runs after it, on the same thread, so it sees it) or the commit. The
    hot path's writes nobody reads back in their own work (a batch's meter samples, the
    outbox) then cost no trip of their own: a batch of meter values went from six trips to
    two, and each trip waits behind the event loop's other work under load. A deferred
    write's error is raised by the trip that runs it, in the same transaction; a rollback
    or a close drops what was deferred.
    """

    __slots__ = ("_deferred",)
    _cursor_cls = OneTripCursor

    def __init__(self, dbapi: Any, connection: aiosqlite.Connection) -> None:
        super().__init__(dbapi, connection)
        self._deferred: list[Deferred] = []

    @property
    def deferred(self) -> int:
        """How many writes wait for the next trip."""
        return len(self._deferred)

    def defer(self, operation: str, rows: Sequence[Any]) -> None:
        """Run ``operation`` for each of ``rows`` (one executemany) at the next trip."""
        self._deferred.append((operation, rows))

    async def run(self, operation: str, parameters: Any, *, many: bool) -> Outcome:
        """One statement (after the deferred writes) in one trip; what it brought back."""
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._execute_mutex:
            deferred, self._deferred = self._deferred, []
            return await driver._execute(  # type: ignore[no-any-return]
                _run, driver._conn, deferred, operation, parameters, many
            )

    def commit(self) -> None:
        if not self._deferred:
            super().commit()
            return
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        deferred, self._deferred = self._deferred, []
        try:
            await_(driver._execute(_commit, driver._conn, deferred))
        except Exception as error:
            self._handle_exception(error)

    def rollback(self) -> None:
        self.forget_deferred()
        super().rollback()

    def close(self) -> None:
        self.forget_deferred()
        super().close()

    def forget_deferred(self) -> None:
        """Drop the deferred writes (a rollback, a close, the pool taking the connection back)."""
        self._deferred = []


class _OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite DBAPI shim, handing out ``OneTripConnection``."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)


def one_trip_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI module to create a ``sqlite+aiosqlite`` engine with (``module=``)."""
    return _OneTripDbapi(aiosqlite, sqlite3)
