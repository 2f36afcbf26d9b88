"""Group commit: many small writes, one database transaction, each caller told when durable.

The hot path of a CPMS is thousands of stations each sending heartbeats, status notifications
and meter values. One transaction per message would make the database's commit (an fsync)
the ceiling. ``GroupCommitter`` queues units of work from many callers, runs whatever has
queued up inside one transaction, commits once, and only then resolves every caller, so a
station is acknowledged after its data is durable, never before (DESIGN, Persistence).

If any work in a batch fails, the batch is rolled back and each work is retried alone in its
own transaction, so one bad message costs only its own caller an error::

    committer = GroupCommitter(uow_factory)
    await committer.start()
    result = await committer.run(lambda uow: record_boot(uow, "CS1", report))

The commonest writes can go further: ``run_grouped(group_work, item)`` queues an item for a
``GroupWork``, which takes the items of consecutive callers in one call and writes them with
a few statements for the lot (``cpms.station_lifecycle.record_statuses``: one SELECT and one
executemany UPDATE for a hundred status reports). Consecutive only: a group never jumps over
another work, so every change still lands in the order it was queued.

``GroupReader`` batches reads the same way, on a connection of its own and without a commit,
beside the writer rather than in its queue: the token decisions before a hundred
StartTransactions (``Authorizer.prepare_at_stations``) cost three SELECTs, and the stations
of a hundred handshakes (``cpms.stations.find_stations``) one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

__all__ = ["GroupCommitter", "GroupReader", "GroupWork", "Work"]

log = logging.getLogger("cpms.group_commit")

T = TypeVar("T")
ItemT = TypeVar("ItemT")
Work = Callable[[UnitOfWork], Awaitable[T]]
"""Changes to make inside an entered unit of work; must not commit (the committer does)."""
GroupWork = Callable[[UnitOfWork, Sequence[ItemT]], Awaitable[Sequence[T]]]
"""Changes for many items at once, one result per item in their order; must not commit."""

DEFAULT_MAX_BATCH = 500
"""Enough to absorb a reconnect storm's burst in a few transactions, small enough to stay short."""


class _Item:
    __slots__ = ("future", "group", "work")

    def __init__(
        self,
        work: Work[Any],
        future: asyncio.Future[Any],
        group: tuple[GroupWork[Any, Any], Any] | None = None,
    ) -> None:
        self.work = work
        self.future = future
        self.group = group
        """``(group_work, item)`` when queued by ``run_grouped``."""


_STOP = object()
"""Queued by ``stop()``: the writer finishes everything before it, then ends."""


class GroupCommitter:
    """Runs queued work in shared transactions; see the module docstring."""

    _task_name = "group-commit"

    def __init__(self, uow: UnitOfWorkFactory, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._uow = uow
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item | object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.batches = 0
        """How many batches ended well: transactions committed (for tests and benchmarks)."""
        self.items = 0
        """How many works ended well in them."""

    async def start(self) -> None:
        """Start the writer task."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._write_forever(), name=self._task_name)

    async def stop(self) -> None:
        """Finish everything queued (the batch being written included), then stop the writer."""
        if self._task is None:
            return
        self._stopping = True
        self._queue.put_nowait(_STOP)
        try:
            await self._task
        finally:
            self._task = None

    @property
    def running(self) -> bool:
        """Whether ``run`` accepts work."""
        return self._task is not None and not self._stopping

    async def run(self, work: Work[T]) -> T:
        """Queue ``work`` and return its result once its transaction has committed."""
        return await self._queue_item(work)

    async def run_grouped(self, group_work: GroupWork[ItemT, T], item: ItemT) -> T:
        """Queue ``item`` for ``group_work``; return its result once committed.

        Items queued one after another for the same ``group_work`` are written by one call
        of it. Alone (a retry after a failed batch) an item is a group of one.
        """

        async def alone(uow: UnitOfWork) -> T:
            return (await group_work(uow, (item,)))[0]

        return await self._queue_item(alone, (group_work, item))

    async def _queue_item(
        self, work: Work[T], group: tuple[GroupWork[Any, Any], Any] | None = None
    ) -> T:
        if self._task is None or self._stopping:
            raise RuntimeError(f"{type(self).__name__} is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(work, future, group))
        return await future

    async def _write_forever(self) -> None:
        while True:
            first = await self._queue.get()
            if first is _STOP:
                return
            # Whatever arrived while the previous batch committed rides along with `first`.
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            await self._write_batch([item for item in batch if isinstance(item, _Item)])
            if stopping:
                return

    async def _write_batch(self, batch: list[_Item]) -> None:
        waiting = [item for item in batch if not item.future.cancelled()]
        if not waiting:
            return
        try:
            results = await self._run_together(waiting)
        except Exception:
            log.debug("batch of %d failed; retrying each alone", len(waiting), exc_info=True)
            for item in waiting:
                await self._run_alone(item)
            return
        self.batches += 1
        self.items += len(waiting)
        for item, result in zip(waiting, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    async def _run_together(self, items: list[_Item]) -> list[Any]:
        async with self._uow() as uow:
            results: list[Any] = []
            start = 0
            while start < len(items):
                group = items[start].group
                if group is None:
                    results.append(await items[start].work(uow))
                    start += 1
                    continue
                end = start + 1
                while end < len(items) and (following := items[end].group) is not None:
                    # Equality, not identity: a bound method (``authorizer.prepare_at_stations``)
                    # is a new object each time it is named, and equal to its earlier self.
                    if following[0] != group[0]:
                        break
                    end += 1
                arguments = [item.group[1] for item in items[start:end] if item.group]
                written = await group[0](uow, arguments)
                if len(written) != len(arguments):
                    raise RuntimeError(f"{group[0]!r} returned {len(written)} results")
                results.extend(written)
                start = end
            await self._finish(uow)
        return results

    async def _run_alone(self, item: _Item) -> None:
        try:
            async with self._uow() as uow:
                result = await item.work(uow)
                await self._finish(uow)
        except Exception as error:
            if not item.future.done():
                item.future.set_exception(error)
            return
        self.batches += 1
        self.items += 1
        if not item.future.done():
            item.future.set_result(result)

    async def _finish(self, uow: UnitOfWork) -> None:
        """End a batch's transaction successfully: commit it."""
        await uow.commit()


class GroupReader(GroupCommitter):
    """Runs queued reads in shared units of work; the works must not change anything.

    A read's unit of work ends without a commit (closing it releases the connection), and
    it runs beside the group committer's writes, not behind them: on SQLite a reader never
    waits for the write lock. Grouping is what it is for: ``run_grouped`` callers whose
    items arrive together are answered by one call of the group work, a few statements for
    all of them instead of a few each.
    """

    _task_name = "group-read"

    async def _finish(self, uow: UnitOfWork) -> None:
        # Nothing to commit. The unit of work's close rolls back whatever the driver opened.
        return None
