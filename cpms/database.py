"""The database: async engine, SQLite tuning, and schema migrations on start.

SQLite (the default) runs in WAL mode with foreign keys on, each commit synced to disk, and
the log copied into the database file in the background (``WalCheckpointer``), not by the
commits of the hot path; PostgreSQL is the production and multi-node engine. Both get the
same Alembic migrations. ``prepare_schema`` brings an empty or old database to the head
revision, or, when migrating is not allowed, refuses with ``SchemaOutOfDate``. On
PostgreSQL an advisory lock keeps two nodes from migrating at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from cpms.errors import SchemaOutOfDate
from cpms.sqlite_adapter import OneTripConnection, one_trip_dbapi

__all__ = [
    "WalCheckpointer",
    "create_engine",
    "current_revision",
    "head_revision",
    "ping",
    "prepare_schema",
]

log = logging.getLogger("cpms.database")

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant shared by all nodes of one deployment: the lock only serialises migrations.
_MIGRATION_LOCK_ID = 0x43504D53  # "CPMS"


WAL_CHECKPOINT_INTERVAL = 0.5
"""Seconds between two background checkpoints of a SQLite node (``WalCheckpointer``)."""

WAL_CHECKPOINT_CEILING = 16384
"""Pages (64 MiB) the write-ahead log may hold before a commit checkpoints it itself.

Only reached when the background checkpoints fall behind (a long reader holds old pages)
or do not run (``cpms`` commands other than ``serve`` and ``demo``).
"""


def _tune_sqlite(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers run beside the writer
    # FULL syncs the log at every commit: a station is answered after its batch commits, and
    # what it was told is stored survives a power loss too, not only a crash (NORMAL could
    # lose the last commits). The group committer makes that one sync per batch.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_CEILING}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _reset_sqlite(
    dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, state: PoolResetState
) -> None:
    """Roll back a connection that comes back to the pool only if a transaction is open.

    The pool's own reset rolls back every time, and on aiosqlite each rollback is a trip to
    its thread: one more per commit on the hot path, for a connection the commit left with
    no transaction at all (issue 8).
    """
    driver = record.driver_connection
    if isinstance(dbapi_connection, OneTripConnection):
        dbapi_connection.forget_deferred()  # writes of a unit of work that did not commit
    if not state.asyncio_safe or driver is None:
        return
    try:
        open_transaction = driver.in_transaction
    except ValueError:  # aiosqlite's connection is closed already: nothing to roll back
        return
    if open_transaction:
        dbapi_connection.rollback()


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create the async engine for ``url`` (already normalised to an async driver)."""
    if url.startswith("sqlite"):
        # LIFO: the connection returned last is handed out next. SQLite keeps a page cache
        # per connection and drops all of it when another connection wrote since its last
        # transaction, so taking the pool's connections in turn re-read the hot pages at
        # every group commit.
        # One trip to aiosqlite's thread per statement instead of three or four
        # (cpms.sqlite_adapter).
        engine = create_async_engine(
            url,
            module=one_trip_dbapi(),
            pool_reset_on_return=None,
            pool_use_lifo=True,
            **kwargs,
        )
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        event.listen(engine.sync_engine.pool, "reset", _reset_sqlite)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


class WalCheckpointer:
    """Copies a SQLite node's write-ahead log into the database file, off the hot path.

    Left to itself, SQLite checkpoints inside the commit that grows the log past
    ``wal_autocheckpoint`` pages: that commit copies the pages to the database file and
    syncs it while every station of its batch waits for its answer. Under durable meter
    values this was half of a commit's time (docs/PERFORMANCE.md, session 13). Here a
    PASSIVE checkpoint runs every ``interval`` on a connection of its own, so on aiosqlite's
    thread of that connection: it copies what no reader still needs and never blocks the
    writer. The commits' own checkpoint stays, at ``WAL_CHECKPOINT_CEILING`` pages, for
    when this one falls behind. Nothing to do on PostgreSQL.
    """

    def __init__(self, engine: AsyncEngine, interval: float = WAL_CHECKPOINT_INTERVAL) -> None:
        self._engine = engine
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether it checkpoints in the background (started, on SQLite, not stopped)."""
        return self._task is not None

    async def start(self) -> None:
        """Start checkpointing (on SQLite only)."""
        if self._task is None and self._engine.dialect.name == "sqlite":
            self._task = asyncio.create_task(self._checkpoint_forever(), name="wal-checkpoint")

    async def stop(self) -> None:
        """Stop checkpointing; the last connection to close checkpoints what is left."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def checkpoint(self) -> tuple[int, int]:
        """Run one PASSIVE checkpoint: the pages in the log, and how many of them are copied."""
        async with self._engine.connect() as connection:
            result = await connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            _busy, logged, copied = result.one()
        return int(logged), int(copied)

    async def _checkpoint_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                logged, copied = await self.checkpoint()
            except Exception:  # the database is busy or gone for now: try again next round
                log.warning("WAL checkpoint failed; trying again", exc_info=True)
                continue
            if logged != copied:
                log.debug(
                    "WAL checkpoint: %d of %d pages copied, readers hold the rest", copied, logged
                )


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """Return the newest migration revision the code knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """Return the revision the database is at (None for an empty database)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


def _upgrade(connection: Connection, allow: bool) -> tuple[str | None, str]:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    before, head = _current(connection), head_revision()
    if before != head:
        if not allow:
            raise SchemaOutOfDate(
                f"the database is at revision {before or '(empty)'} and the code needs {head}; "
                "run `cpms db upgrade`, or start once with CPMS_AUTO_MIGRATE=true"
            )
        command.upgrade(_alembic_config(connection), "head")
    return before, head


async def prepare_schema(engine: AsyncEngine, *, allow_migrate: bool = True) -> None:
    """Create or upgrade the schema to head; raise ``SchemaOutOfDate`` if not allowed."""
    async with engine.begin() as connection:
        before, head = await connection.run_sync(_upgrade, allow_migrate)
    if before != head:
        log.info("database schema migrated from %s to %s", before or "(empty)", head)


async def ping(engine: AsyncEngine) -> None:
    """Run a trivial query; raise whatever the driver raises if the database is unreachable."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
