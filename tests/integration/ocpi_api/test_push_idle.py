"""What the outbox costs a node without partners (issue 8): next to nothing.

With no partner registered, ``fan_out`` marks a whole batch of outbox rows processed with
one statement, reading none of them, and the pusher neither wakes for a commit nor looks
for due pushes: a node's commits cost no transaction of the pusher's each. The statement
that marks the rows checks again that nobody registered meanwhile, so a partner that does
misses no event. Counted on the engine's own events, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from push_support import WAIT, import_loc1, settled
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cpms import locations, tariffs
from cpms.model import OcpiPartner, OcpiPush, OutboxEntry
from cpms.push_queue import _Targets, fan_out
from cpms.runtime import Runtime
from cpms.unit_of_work import UnitOfWorkFactory

from support import EXAMPLES


class Counted:
    """The SQL statements and commits an engine ran while counting."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.commits = 0

    def touching(self, table: str) -> list[str]:
        return [s for s in self.statements if table in s]


@contextmanager
def counting(engine: AsyncEngine) -> Iterator[Counted]:
    counted = Counted()

    def statement(_conn: Any, _cursor: Any, text: str, *_: Any) -> None:
        counted.statements.append(text)

    def commit(_conn: Any) -> None:
        counted.commits += 1

    event.listen(engine.sync_engine, "before_cursor_execute", statement)
    event.listen(engine.sync_engine, "commit", commit)
    try:
        yield counted
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", statement)
        event.remove(engine.sync_engine, "commit", commit)


async def waiting_rows(uow: UnitOfWorkFactory) -> int:
    async with uow() as work:
        count = await work.session.scalar(
            select(func.count()).select_from(OutboxEntry).where(OutboxEntry.processed_at.is_(None))
        )
        return int(count or 0)


async def forty_tariff_events(uow: UnitOfWorkFactory) -> None:
    document = json.loads((EXAMPLES / "tariff_1_simple_2hour.json").read_text("utf-8"))
    for n in range(40):
        await tariffs.import_tariffs(uow(), [document | {"id": f"T{n}"}])


async def test_without_partners_fan_out_marks_every_row_with_one_statement(
    uow: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    await forty_tariff_events(uow)
    assert await waiting_rows(uow) == 40

    with counting(engine) as counted:
        result = await fan_out(uow())

    assert (result.events, result.pushes, result.partners) == (40, 0, False)
    assert result.receives == frozenset()
    # The partners, the waiting ids, one UPDATE; no row read, no push looked for.
    assert len(counted.statements) == 3
    assert len(counted.touching("UPDATE outbox")) == 1
    assert counted.touching("ocpi_push") == []
    assert await waiting_rows(uow) == 0
    # Quiet: reads only, nothing written.
    with counting(engine) as counted:
        assert (await fan_out(uow())).events == 0
    assert [s.split()[0].upper() for s in counted.statements] == ["SELECT", "SELECT"]


async def test_a_partner_registered_while_the_rows_are_swept_misses_none(
    uow: UnitOfWorkFactory, monkeypatch: Any
) -> None:
    await forty_tariff_events(uow)
    async with uow() as work:
        work.session.add(
            OcpiPartner(
                name="late",
                state="REGISTERED",
                outgoing_token="sealed",
                endpoints={"tariffs": {"RECEIVER": "https://emsp.example/tariffs"}},
            )
        )
        await work.commit()

    # A fan-out that read the partners just before that registration committed.
    async def nobody(self: _Targets) -> list[OcpiPartner]:
        return []

    with monkeypatch.context() as patched:
        patched.setattr(_Targets, "partners", nobody)
        stale = await fan_out(uow())
    assert (stale.events, stale.contended) == (0, True)  # nothing marked: look again
    assert await waiting_rows(uow) == 40

    again = await fan_out(uow())
    assert (again.events, again.pushes, again.partners) == (40, 40, True)
    assert again.receives == frozenset({"tariffs"})


async def test_a_node_without_partners_pays_no_pusher_transaction_per_commit(
    runtime: Runtime,
) -> None:
    await import_loc1(runtime)
    await settled(runtime)
    await asyncio.sleep(0.2)  # the pusher has looked once and knows nobody is registered

    with counting(runtime.engine) as counted:
        for n in range(20):
            await locations.change_location(runtime.uow(), "LOC1", {"name": f"Name {n}"})
        async with asyncio.timeout(WAIT):
            while await waiting_rows(runtime.uow):  # noqa: ASYNC110 - database state
                await asyncio.sleep(0.05)

    # Each change is one commit; the pusher added a sweep or two (one a second), not 20.
    assert 20 <= counted.commits <= 22
    assert counted.touching("ocpi_push") == []  # no due push looked for: none can be
    async with runtime.uow() as work:
        assert await work.session.scalar(select(func.count()).select_from(OcpiPush)) == 0
