"""The database: migrations, engine tuning and the column types, on every engine."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import aiosqlite
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cpms.database import (
    WAL_CHECKPOINT_CEILING,
    WalCheckpointer,
    create_engine,
    current_revision,
    head_revision,
    prepare_schema,
)
from cpms.errors import SchemaOutOfDate
from cpms.model import Base, ChargingStation, Location, MeterSample
from cpms.runtime import Runtime
from cpms.unit_of_work import UnitOfWorkFactory

from support import TIME_UNIT


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


@pytest.mark.empty_database
async def test_an_empty_database_is_migrated_to_head(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) is None
        await prepare_schema(engine)
        assert await current_revision(engine) == head_revision()
        await prepare_schema(engine)  # a second start changes nothing
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_the_migrations_build_exactly_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == []


@pytest.mark.empty_database
async def test_migrating_can_be_refused(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with pytest.raises(SchemaOutOfDate, match="cpms db upgrade"):
            await prepare_schema(engine, allow_migrate=False)
        assert await current_revision(engine) is None
        await prepare_schema(engine)
        await prepare_schema(engine, allow_migrate=False)  # at head: nothing to refuse
    finally:
        await engine.dispose()


async def test_sqlite_runs_in_wal_mode_synced_at_each_commit_with_foreign_keys(
    engine: AsyncEngine,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas only")
    async with engine.connect() as connection:

        async def pragma(name: str) -> object:
            return (await connection.execute(text(f"PRAGMA {name}"))).scalar()

        assert await pragma("journal_mode") == "wal"
        assert await pragma("synchronous") == 2  # FULL: a commit survives a power loss
        assert await pragma("wal_autocheckpoint") == WAL_CHECKPOINT_CEILING
        assert await pragma("foreign_keys") == 1


async def test_the_sqlite_pool_hands_out_the_connection_returned_last(
    engine: AsyncEngine,
) -> None:
    # SQLite drops a connection's page cache when another connection wrote since: the group
    # committer's transactions keep theirs warm by getting the same connection each time.
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite pool only")

    async def driver(connection: AsyncConnection) -> object:
        return (await connection.get_raw_connection()).driver_connection

    async with engine.connect() as first, engine.connect() as second:
        older, newer = await driver(first), await driver(second)
    assert older is not newer
    for _ in range(3):  # `first` was returned last: the context managers exit in reverse
        async with engine.connect() as connection:
            assert await driver(connection) is older


def _in_database_file(path: str, location_id: str) -> bool:
    """Whether the database file itself, its write-ahead log ignored, holds the location."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as file:
        found = file.execute("SELECT count(*) FROM location WHERE id = ?", (location_id,))
        return bool(found.fetchone()[0])


async def test_committed_rows_reach_the_database_file_by_background_checkpoints(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    # A commit only appends to the log (WAL_CHECKPOINT_CEILING is far); copying the log
    # into the file is the checkpointer's, on its own connection, not the committing one's.
    if engine.dialect.name != "sqlite":
        checkpointer = WalCheckpointer(engine)
        await checkpointer.start()
        assert not checkpointer.running  # PostgreSQL has no log of ours to copy
        return
    path = engine.url.database
    assert path is not None
    async with uow() as work:
        work.session.add(_location("LOGGED"))
        await work.commit()
    assert not _in_database_file(path, "LOGGED")
    checkpointer = WalCheckpointer(engine, interval=0.02)
    await checkpointer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 5 * TIME_UNIT
        while not _in_database_file(path, "LOGGED"):
            assert asyncio.get_running_loop().time() < deadline, "never checkpointed"
            await asyncio.sleep(0.02)
    finally:
        await checkpointer.stop()
    assert not checkpointer.running
    logged, copied = await checkpointer.checkpoint()
    assert logged == copied  # no reader holds a page back: the whole log is in the file


async def test_a_node_checkpoints_in_the_background_while_it_runs(runtime: Runtime) -> None:
    assert runtime.checkpointer.running == (runtime.engine.dialect.name == "sqlite")
    await runtime.stop()
    assert not runtime.checkpointer.running


async def test_a_connection_is_rolled_back_on_its_return_only_when_a_transaction_is_open(
    engine: AsyncEngine, uow: UnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite every rollback is a trip to aiosqlite's thread; after a commit there is no
    # transaction left to roll back, and the pool's usual reset made that trip each time.
    rollbacks: list[object] = []
    rollback = aiosqlite.Connection.rollback

    async def counted(connection: aiosqlite.Connection) -> None:
        rollbacks.append(connection)
        await rollback(connection)

    monkeypatch.setattr(aiosqlite.Connection, "rollback", counted)
    sqlite = engine.dialect.name == "sqlite"
    async with uow() as work:
        work.session.add(_location("KEPT"))
        await work.commit()
    assert rollbacks == []
    async with uow() as work:
        work.session.add(_location("DROPPED"))
        await work.session.flush()  # written, in a transaction left open
    assert len(rollbacks) == (1 if sqlite else 0)
    async with uow() as work:
        found = await work.session.scalars(select(Location.id).order_by(Location.id))
        assert list(found) == ["KEPT"]


async def test_foreign_keys_are_enforced(uow: UnitOfWorkFactory) -> None:
    async with uow() as work:
        work.session.add(ChargingStation(id="CP1", location_id="NO-SUCH-LOCATION"))
        with pytest.raises(Exception, match=r"(?i)foreign key"):
            await work.commit()


def _location(location_id: str = "L1") -> Location:
    return Location(
        id=location_id, country_code="NL", party_id="CPM", address="Street 1", city="Town",
        country="NLD", latitude="52.00000", longitude="4.00000", time_zone="Europe/Amsterdam",
    )  # fmt: skip


async def test_times_come_back_as_aware_utc(uow: UnitOfWorkFactory) -> None:
    local = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    async with uow() as work:
        location = _location()
        location.last_updated = local
        work.session.add(location)
        await work.commit()
    async with uow() as work:
        stored = await work.get(Location, "L1")
        assert stored.last_updated == local
        assert stored.last_updated.tzinfo is not None
        assert stored.last_updated.utcoffset() == timedelta(0)
        assert stored.last_updated.hour == 1


async def test_a_naive_time_is_refused(uow: UnitOfWorkFactory) -> None:
    async with uow() as work:
        location = _location()
        location.last_updated = datetime(2026, 1, 1)  # naive on purpose
        work.session.add(location)
        with pytest.raises(Exception, match="naive datetime"):
            await work.commit()


async def test_decimals_are_kept_exactly(uow: UnitOfWorkFactory) -> None:
    value = Decimal("12345678901234.123456")
    async with uow() as work:
        work.session.add(_location())
        work.session.add(ChargingStation(id="CP1", location_id="L1"))
        await work.commit()
    async with uow() as work:
        work.session.add(
            MeterSample(
                station_id="CP1", sampled_at=datetime.now(UTC), value=value,
                measurand="Energy.Active.Import.Register", value_si=Decimal("0.1") + Decimal("0.2"),
            )
        )  # fmt: skip
        await work.commit()
    async with uow() as work:
        sample = (await work.session.scalars(select(MeterSample))).one()
        assert sample.value == value
        assert sample.value_si == Decimal("0.3")
        assert isinstance(sample.value, Decimal)


async def test_a_float_is_refused_where_money_and_energy_live(uow: UnitOfWorkFactory) -> None:
    async with uow() as work:
        work.session.add(_location())
        work.session.add(ChargingStation(id="CP1", location_id="L1"))
        work.session.add(
            MeterSample(
                station_id="CP1", sampled_at=datetime.now(UTC), measurand="Voltage",
                value=0.1, value_si=Decimal(0),
            )
        )  # fmt: skip
        with pytest.raises(Exception, match="not a Decimal"):
            await work.commit()
