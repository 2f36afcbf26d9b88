"""The database: async engine, SQLite tuning, and schema migrations on start.

SQLite (the default) runs in WAL mode with foreign keys on; PostgreSQL is the production and
multi-node engine. Both get the same Alembic migrations. ``prepare_schema`` brings an empty or
old database to the head revision, or, when migrating is not allowed, refuses with
``SchemaOutOfDate``. On PostgreSQL an advisory lock keeps two nodes from migrating at once.
"""

from __future__ import annotations

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

__all__ = ["create_engine", "current_revision", "head_revision", "ping", "prepare_schema"]

log = logging.getLogger("cpms.database")

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant shared by all nodes of one deployment: the lock only serialises migrations.
_MIGRATION_LOCK_ID = 0x43504D53  # "CPMS"


def _tune_sqlite(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; NORMAL is durable at each checkpoint in WAL mode
    # and loses nothing on a process crash, only possibly the last commits on power loss.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
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
        engine = create_async_engine(url, pool_reset_on_return=None, **kwargs)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        event.listen(engine.sync_engine.pool, "reset", _reset_sqlite)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


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
