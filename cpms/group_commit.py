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
    result = await committer.run(lambda uow: record_status(uow, "CS1", report))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

__all__ = ["GroupCommitter", "Work"]

log = logging.getLogger("cpms.group_commit")

T = TypeVar("T")
Work = Callable[[UnitOfWork], Awaitable[T]]
"""Changes to make inside an entered unit of work; must not commit (the committer does)."""

DEFAULT_MAX_BATCH = 500
"""Enough to absorb a reconnect storm's burst in a few transactions, small enough to stay short."""


class _Item:
    __slots__ = ("future", "work")

    def __init__(self, work: Work[Any], future: asyncio.Future[Any]) -> None:
        self.work = work
        self.future = future


_STOP = object()
"""Queued by ``stop()``: the writer finishes everything before it, then ends."""


class GroupCommitter:
    """Runs queued work in shared transactions; see the module docstring."""

    def __init__(self, uow: UnitOfWorkFactory, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._uow = uow
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item | object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.batches = 0
        """How many transactions were committed (for tests and benchmarks)."""
        self.items = 0
        """How many works were committed."""

    async def start(self) -> None:
        """Start the writer task."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._write_forever(), name="group-commit")

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
        if self._task is None or self._stopping:
            raise RuntimeError("GroupCommitter is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(work, future))
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
            results = [await item.work(uow) for item in items]
            await uow.commit()
        return results

    async def _run_alone(self, item: _Item) -> None:
        try:
            async with self._uow() as uow:
                result = await item.work(uow)
                await uow.commit()
        except Exception as error:
            if not item.future.done():
                item.future.set_exception(error)
            return
        self.batches += 1
        self.items += 1
        if not item.future.done():
            item.future.set_result(result)
