"""Short garbage-collector pauses for a node that holds thousands of connections.

CPython's cyclic garbage collector scans every object it tracks in a full collection, and
runs one whenever the objects that survived earlier collections have grown by a quarter. A
node holding 10,000 stations tracks 1.2 million objects (their connections, tasks, buffers),
so a full collection stopped the event loop for 0.6 to 0.8 s on the benchmark machine, every
few seconds while stations connected and now and then after: every station's Heartbeat
waited behind it (``bench.idle_capacity``: heartbeat p99 450 to 780 ms at 10,000 stations,
target 50 ms; docs/PERFORMANCE.md, session 18).

``GcFreezer`` keeps those objects out of the collector's sight. Every ``freeze_every``
seconds it collects the young generations (cheap: only what was allocated since) and then
freezes whatever survived (``gc.freeze``): frozen objects are never scanned, so a full
collection costs what the heap's recent growth holds, not the whole heap. Objects that die
while frozen are still freed at once when nothing refers to them; only garbage held in
reference cycles (a closed connection's objects) waits, for the next thaw. Every
``thaw_every`` seconds everything is unfrozen, collected once in full (the one long pause,
on a schedule), and frozen again. ``stop()`` unfreezes, so nothing stays frozen after the
node.

Freezing is process-wide, so the node's process runs one (``cpms.runtime``'s ``serve`` and
``demo``), not each ``Runtime``: a process that starts and stops many nodes, the test suite,
would otherwise pay a full collection of its whole heap soon after every stop (CPython
counts frozen objects out of the heap size that paces full collections).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time

__all__ = ["FREEZE_EVERY", "THAW_EVERY", "GcFreezer"]

log = logging.getLogger("cpms.gc")

FREEZE_EVERY = 10.0
"""Seconds between freezes: newly connected stations are out of the scan within this."""
THAW_EVERY = 900.0
"""Seconds between full collections of everything, which reclaim cyclic garbage that died
frozen (a closed connection's objects: some tens of KiB each)."""


class GcFreezer:
    """Freezes long-lived objects for the cyclic collector; see the module docstring."""

    def __init__(
        self, *, freeze_every: float = FREEZE_EVERY, thaw_every: float = THAW_EVERY
    ) -> None:
        self.freeze_every = freeze_every
        self.thaw_every = thaw_every
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start freezing (the first freeze is at once: what the node loaded to start)."""
        if self._task is None:
            self.freeze()
            self._task = asyncio.create_task(self._freeze_forever(), name="gc-freezer")

    async def stop(self) -> None:
        """Stop, and unfreeze everything so the collector sees it all again."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            gc.unfreeze()

    @staticmethod
    def freeze() -> None:
        """Collect the young generations, then freeze what survived them."""
        gc.collect(1)
        gc.freeze()

    @staticmethod
    def thaw() -> int:
        """Unfreeze and collect everything once (a full pause); freeze the survivors again.

        Returns how many unreachable objects the collection found.
        """
        gc.unfreeze()
        began = time.perf_counter()
        found = gc.collect()
        pause = time.perf_counter() - began
        gc.freeze()
        log.debug("full collection: %d unreachable objects, %.0f ms", found, pause * 1000)
        return found

    async def _freeze_forever(self) -> None:
        thawed = time.monotonic()
        while True:
            await asyncio.sleep(self.freeze_every)
            if time.monotonic() - thawed >= self.thaw_every:
                self.thaw()
                thawed = time.monotonic()
            else:
                self.freeze()
