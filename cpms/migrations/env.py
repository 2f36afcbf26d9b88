"""Alembic environment: runs on the connection the server hands over, or on a URL.

The server calls migrations through ``cpms.database.prepare_schema`` with a live connection
in ``config.attributes["connection"]``. Developers generating a revision run, e.g.::

    .venv/bin/alembic -c cpms/migrations/alembic.ini revision --autogenerate -m "add x"

which uses the URL in ``CPMS_DATABASE_URL`` (default: a scratch SQLite file).
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from cpms.config import normalise_database_url
from cpms.database import create_engine
from cpms.model import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(url: str) -> None:
    engine = create_engine(normalise_database_url(url))
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_on_url(os.environ.get("CPMS_DATABASE_URL", "sqlite:///./migrations.db")))
