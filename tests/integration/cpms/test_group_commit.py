"""Group commit on a real database: many works, few transactions, each caller told when durable.

Covers ``cpms.group_commit.GroupCommitter``: concurrent works share transactions and get
their own results; a failing work (a Python error or a database error) fails alone while
the rest of its batch commits; ``stop()`` finishes queued and in-flight work; ``run()``
outside start/stop is refused; a result is returned only once its change is committed and
visible to every other connection; batches stay within ``max_batch``. Then
``GroupReader``: it reads committed data and commits nothing its works change, and a bound
method queued by consecutive callers is one group work, called once for their items.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from cpms.database import create_engine
from cpms.group_commit import GroupCommitter, GroupReader
from cpms.model import Location
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

from support import TIME_UNIT

BOUND = 10 * TIME_UNIT
"""Longest wait for anything in these tests (they finish far sooner)."""


def _location(location_id: str) -> Location:
    return Location(
        id=location_id, country_code="NL", party_id="CPM", address="Street 1", city="Town",
        country="NLD", latitude="52.00000", longitude="4.00000", time_zone="Europe/Amsterdam",
    )  # fmt: skip


def _adding(location_id: str, result: object = None) -> Callable[[UnitOfWork], Awaitable[object]]:
    async def work(uow: UnitOfWork) -> object:
        uow.session.add(_location(location_id))
        return location_id if result is None else result

    return work


async def _ids(uow: UnitOfWorkFactory) -> set[str]:
    async with uow() as unit:
        return set(await unit.session.scalars(select(Location.id)))


@pytest.fixture
async def committer(uow: UnitOfWorkFactory) -> AsyncIterator[GroupCommitter]:
    started = GroupCommitter(uow)
    await started.start()
    yield started
    await started.stop()


async def test_concurrent_works_share_transactions_and_get_their_own_results(
    uow: UnitOfWorkFactory, committer: GroupCommitter
) -> None:
    works = [_adding(f"L{index}", result=index * 10) for index in range(50)]
    results = await asyncio.wait_for(asyncio.gather(*(committer.run(w) for w in works)), BOUND)
    assert results == [index * 10 for index in range(50)]
    assert committer.items == 50
    assert committer.batches < committer.items
    assert await _ids(uow) == {f"L{index}" for index in range(50)}


async def test_a_failing_work_fails_alone_and_the_rest_of_its_batch_commits(
    uow: UnitOfWorkFactory, committer: GroupCommitter
) -> None:
    def failing(location_id: str) -> Callable[[UnitOfWork], Awaitable[object]]:
        async def work(uow: UnitOfWork) -> object:
            uow.session.add(_location(location_id))
            raise ValueError(f"cannot store {location_id}")

        return work

    works = [failing(f"L{i}") if i == 3 else _adding(f"L{i}") for i in range(10)]
    results = await asyncio.wait_for(
        asyncio.gather(*(committer.run(w) for w in works), return_exceptions=True), BOUND
    )
    assert isinstance(results[3], ValueError)
    assert str(results[3]) == "cannot store L3"
    assert [r for i, r in enumerate(results) if i != 3] == [f"L{i}" for i in range(10) if i != 3]
    assert await _ids(uow) == {f"L{i}" for i in range(10) if i != 3}
    assert committer.items == 9


async def test_a_work_the_database_refuses_fails_alone(
    uow: UnitOfWorkFactory, committer: GroupCommitter
) -> None:
    await committer.run(_adding("TAKEN"))
    # The duplicate key only surfaces at flush/commit, after every work of the batch ran.
    works = [_adding("TAKEN") if i == 5 else _adding(f"L{i}") for i in range(10)]
    results = await asyncio.wait_for(
        asyncio.gather(*(committer.run(w) for w in works), return_exceptions=True), BOUND
    )
    assert isinstance(results[5], IntegrityError)
    assert [r for i, r in enumerate(results) if i != 5] == [f"L{i}" for i in range(10) if i != 5]
    assert await _ids(uow) == {"TAKEN"} | {f"L{i}" for i in range(10) if i != 5}


async def test_a_result_is_returned_only_once_the_change_is_visible_everywhere(
    uow: UnitOfWorkFactory, committer: GroupCommitter, database_url: str
) -> None:
    other: AsyncEngine = create_engine(database_url)
    try:
        for index in range(3):
            assert await committer.run(_adding(f"L{index}")) == f"L{index}"
            # Another connection pool, as another node would have: the row is there already.
            async with other.connect() as connection:
                count = await connection.scalar(
                    select(func.count()).select_from(Location).where(Location.id == f"L{index}")
                )
            assert count == 1
    finally:
        await other.dispose()


async def test_a_refused_work_is_never_acknowledged(
    uow: UnitOfWorkFactory, committer: GroupCommitter
) -> None:
    await committer.run(_adding("TAKEN"))
    with pytest.raises(IntegrityError):
        await asyncio.wait_for(committer.run(_adding("TAKEN", result="acknowledged")), BOUND)
    assert await _ids(uow) == {"TAKEN"}


async def test_stop_finishes_queued_work(uow: UnitOfWorkFactory) -> None:
    committer = GroupCommitter(uow)
    await committer.start()
    calls = [asyncio.create_task(committer.run(_adding(f"L{i}"))) for i in range(20)]
    await asyncio.sleep(0)  # every call is queued; the writer has taken none yet
    async with asyncio.timeout(BOUND):  # not wait_for: no task, so stop() runs first
        await committer.stop()
    # Every caller was answered by stop(): they need only be scheduled to see it.
    _, pending = await asyncio.wait(calls, timeout=TIME_UNIT)
    assert not pending
    assert [call.result() for call in calls] == [f"L{i}" for i in range(20)]
    assert await _ids(uow) == {f"L{i}" for i in range(20)}


async def test_stop_finishes_the_batch_being_written(uow: UnitOfWorkFactory) -> None:
    committer = GroupCommitter(uow)
    await committer.start()
    writing, may_finish = asyncio.Event(), asyncio.Event()

    async def slow(unit: UnitOfWork) -> str:
        unit.session.add(_location("SLOW"))
        writing.set()
        await may_finish.wait()  # a slow statement, as under load
        return "written"

    call = asyncio.create_task(committer.run(slow))
    try:
        await asyncio.wait_for(writing.wait(), BOUND)
        stopping = asyncio.create_task(committer.stop())
        await asyncio.sleep(0)  # stop() has begun while the batch is being written
        may_finish.set()
        await asyncio.wait_for(stopping, BOUND)
        # The caller was answered by stop(): it needs only be scheduled to see it.
        _, pending = await asyncio.wait([call], timeout=TIME_UNIT)
        assert not pending
        assert call.result() == "written"
        assert await _ids(uow) == {"SLOW"}
    finally:
        call.cancel()
        await asyncio.wait([call], timeout=BOUND)


async def test_run_outside_start_and_stop_is_refused(uow: UnitOfWorkFactory) -> None:
    committer = GroupCommitter(uow)
    with pytest.raises(RuntimeError):
        await committer.run(_adding("EARLY"))
    await committer.start()
    assert await asyncio.wait_for(committer.run(_adding("ON-TIME")), BOUND) == "ON-TIME"
    await committer.stop()
    with pytest.raises(RuntimeError):
        await committer.run(_adding("LATE"))
    assert await _ids(uow) == {"ON-TIME"}


async def test_a_batch_holds_at_most_max_batch_works(uow: UnitOfWorkFactory) -> None:
    committer = GroupCommitter(uow, max_batch=10)
    await committer.start()
    seen: list[UnitOfWork] = []  # kept alive, so identity tells batches apart

    def noting(index: int) -> Callable[[UnitOfWork], Awaitable[object]]:
        async def work(unit: UnitOfWork) -> object:
            seen.append(unit)
            unit.session.add(_location(f"L{index}"))
            return index

        return work

    try:
        await asyncio.wait_for(
            asyncio.gather(*(committer.run(noting(i)) for i in range(50))), BOUND
        )
    finally:
        await committer.stop()
    sizes = [
        sum(1 for other in seen if other is unit) for unit in {id(u): u for u in seen}.values()
    ]
    assert sum(sizes) == 50
    assert max(sizes) <= 10


# GroupReader -----------------------------------------------------------------------------------


@pytest.fixture
async def reader(uow: UnitOfWorkFactory) -> AsyncIterator[GroupReader]:
    started = GroupReader(uow)
    await started.start()
    yield started
    await started.stop()


async def test_a_reader_reads_committed_data_and_commits_nothing(
    uow: UnitOfWorkFactory, committer: GroupCommitter, reader: GroupReader
) -> None:
    await committer.run(_adding("KEPT"))

    async def reading_and_adding(unit: UnitOfWork) -> tuple[set[str], set[str]]:
        before = set(await unit.session.scalars(select(Location.id)))
        unit.session.add(_location("DROPPED"))
        await unit.session.flush()  # written inside its transaction, which is never committed
        return before, set(await unit.session.scalars(select(Location.id)))

    async def adding_many(unit: UnitOfWork, ids: Sequence[str]) -> list[str]:
        unit.session.add_all(_location(location_id) for location_id in ids)
        await unit.session.flush()
        return list(ids)

    before, inside = await asyncio.wait_for(reader.run(reading_and_adding), BOUND)
    assert (before, inside) == ({"KEPT"}, {"KEPT", "DROPPED"})
    added = await asyncio.wait_for(
        asyncio.gather(*(reader.run_grouped(adding_many, f"G{i}") for i in range(5))), BOUND
    )
    assert added == [f"G{i}" for i in range(5)]
    assert await _ids(uow) == {"KEPT"}
    # The reader's connection is back and sees what is committed after it read.
    await committer.run(_adding("LATER"))
    before, _ = await asyncio.wait_for(reader.run(reading_and_adding), BOUND)
    assert before == {"KEPT", "LATER"}
    assert await _ids(uow) == {"KEPT", "LATER"}


class _Lookup:
    """An object whose bound method is a group work, as ``authorizer.prepare_at_stations``."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def find(self, unit: UnitOfWork, ids: Sequence[str]) -> list[bool]:
        self.calls.append(list(ids))
        found = set(await unit.session.scalars(select(Location.id).where(Location.id.in_(ids))))
        return [location_id in found for location_id in ids]


async def test_consecutive_items_of_one_bound_method_are_read_with_one_call(
    uow: UnitOfWorkFactory, committer: GroupCommitter, reader: GroupReader
) -> None:
    await asyncio.gather(*(committer.run(_adding(f"L{i}")) for i in range(0, 30, 2)))
    lookup = _Lookup()
    wanted = [f"L{i}" for i in range(30)]
    # `lookup.find` is a new bound method object each time it is named: equal, not identical.
    found = await asyncio.wait_for(
        asyncio.gather(*(reader.run_grouped(lookup.find, w) for w in wanted)), BOUND
    )
    assert found == [i % 2 == 0 for i in range(30)]
    assert sorted(w for call in lookup.calls for w in call) == sorted(wanted)
    assert len(lookup.calls) < 30
    assert reader.items == 30
    assert reader.batches == len(lookup.calls)
