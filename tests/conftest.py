"""Fixtures shared by all tests: real databases, real servers, one scalable time unit.

``database_url`` runs a test once on a fresh SQLite file and, when ``CPMS_TEST_POSTGRES_URL``
is set, once more on a fresh PostgreSQL database created for that test alone. Each fresh
database is already migrated to head: the migrations run once per test run, into a template
(a SQLite file copied per test; a PostgreSQL ``CREATE DATABASE ... TEMPLATE``), because
running them for every test cost most of the suite's time. A test about migrating itself
asks for an empty database with ``@pytest.mark.empty_database``.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from ocpi_peer import EmspPeer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cpms.config import Settings, normalise_database_url
from cpms.database import create_engine, prepare_schema
from cpms.event_loop import loop_factory
from cpms.runtime import Runtime
from cpms.unit_of_work import UnitOfWorkFactory

from support import ADMIN_TOKEN, EVENT_LOOP, EXAMPLES, POSTGRES_URL, TIME_UNIT

__all__ = ["ADMIN_TOKEN", "EXAMPLES", "POSTGRES_URL", "TIME_UNIT"]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Async tests run on the event loop ``cpms serve`` runs on (``support.EVENT_LOOP``)."""
    return {EVENT_LOOP.value: loop_factory(EVENT_LOOP) or asyncio.new_event_loop}


def _engines() -> list[object]:
    engines: list[object] = ["sqlite"]
    engines.append(
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not POSTGRES_URL, reason="CPMS_TEST_POSTGRES_URL is not set"),
            ],
        )
    )
    return engines


@pytest.fixture
def examples_dir() -> Path:
    """The official OCPI 2.2.1 example payloads (shared/, never modified)."""
    if not EXAMPLES.is_dir():
        pytest.fail(f"official OCPI examples not found at {EXAMPLES}")
    return EXAMPLES


async def _create_postgres_database(template: str | None = None) -> tuple[str, str]:
    assert POSTGRES_URL is not None
    admin_url = normalise_database_url(POSTGRES_URL)
    name = f"cpms_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    copied = f' TEMPLATE "{template}"' if template is not None else ""
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"{copied}'))
    await admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await prepare_schema(engine)
        if engine.dialect.name == "sqlite":
            async with engine.connect() as connection:
                # Everything into the main file, so copying that one file copies the database.
                await connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, copied for each test that wants a database."""
    path = tmp_path_factory.mktemp("template") / "cpms.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def _postgres_template() -> Iterator[str]:
    """A PostgreSQL database migrated to head, the template of each test's database."""
    url, name = asyncio.run(_create_postgres_database())
    try:
        asyncio.run(_migrate(url))
        yield name
    finally:
        asyncio.run(_drop_postgres_database(name))


async def _drop_postgres_database(name: str) -> None:
    assert POSTGRES_URL is not None
    admin = create_engine(normalise_database_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(params=_engines())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a fresh database of each engine under test, migrated to head.

    Empty instead (no schema at all) for a test marked ``empty_database``.
    """
    empty = request.node.get_closest_marker("empty_database") is not None
    if request.param == "sqlite":
        path = tmp_path / "cpms.db"
        if not empty:
            shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template = None if empty else request.getfixturevalue("_postgres_template")
    url, name = asyncio.run(_create_postgres_database(template))
    try:
        yield url
    finally:
        asyncio.run(_drop_postgres_database(name))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database migrated to head."""
    engine = create_engine(database_url)
    await prepare_schema(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def uow(engine: AsyncEngine) -> UnitOfWorkFactory:
    """A unit-of-work factory over the migrated database."""
    return UnitOfWorkFactory(engine)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for a node on free loopback ports with a known operator token."""
    return Settings(
        database_url=database_url,
        secret_key_file=str(tmp_path / "cpms.key"),
        ocpp_port=0,
        http_port=0,
        admin_token=ADMIN_TOKEN,
        ping_interval=5 * TIME_UNIT,
        ping_timeout=5 * TIME_UNIT,
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A started node: OCPP and HTTP servers on loopback, database migrated."""
    node = Runtime(settings, node="test-node")
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


@pytest.fixture
async def emsp_peer() -> AsyncIterator[EmspPeer]:
    """A started eMSP test peer on loopback (see ``tests/ocpi_peer.py``)."""
    async with EmspPeer() as peer:
        yield peer
