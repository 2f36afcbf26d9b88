"""The GC freezer: survivors leave the collector's scan, cyclic garbage waits for a thaw.

``cpms.gc_freezer.GcFreezer`` keeps a node's long-lived objects (thousands of connections)
out of CPython's full collections, whose pause grows with every object they scan. What it
must not do is lose garbage for good: a reference cycle that dies frozen is reclaimed at the
next thaw, and stopping the freezer leaves nothing frozen. The node's process runs one;
a ``Runtime`` started in a process of many (the tests) does not.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from cpms.config import Settings
from cpms.gc_freezer import GcFreezer
from cpms.runtime import Runtime, _node


class _Node:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _nothing_frozen_after() -> Iterator[None]:
    yield
    gc.unfreeze()


def _frozen(thing: object) -> bool:
    """Whether ``thing`` is frozen: tracked, yet in none of the generations a collection scans."""
    return gc.is_tracked(thing) and not any(found is thing for found in gc.get_objects())


def _dead_cycle() -> weakref.ref[_Node]:
    """A cycle nothing refers to any more, and a way to tell whether it was freed."""
    return weakref.ref(_Node())


def test_a_frozen_cycle_is_not_scanned_until_a_thaw_collects_it() -> None:
    alive = _Node()
    cycle = weakref.ref(alive)
    GcFreezer.freeze()
    assert _frozen(alive)
    del alive
    gc.collect()
    assert cycle() is not None  # frozen: a full collection does not look at it
    found = GcFreezer.thaw()
    assert cycle() is None
    assert found >= 1
    assert gc.get_freeze_count() > 0  # the survivors are frozen again


def test_the_young_are_collected_before_a_freeze_so_their_garbage_is_not_kept() -> None:
    cycle = _dead_cycle()
    GcFreezer.freeze()
    assert cycle() is None


async def test_the_freezer_thaws_on_its_schedule_and_stop_unfreezes_everything() -> None:
    freezer = GcFreezer(freeze_every=0.01, thaw_every=0.05)
    await freezer.start()
    try:
        alive = _Node()
        cycle = weakref.ref(alive)
        await asyncio.sleep(0.03)  # a freeze or two: it is frozen by now
        assert _frozen(alive)
        del alive
        for _ in range(200):  # bounded: the thaw is due within 0.05 s
            if cycle() is None:
                break
            await asyncio.sleep(0.01)
        assert cycle() is None
    finally:
        await freezer.stop()
    assert gc.get_freeze_count() == 0


async def test_a_node_process_freezes_while_it_serves_and_unfreezes_when_it_stops(
    settings: Settings,
) -> None:
    # `cpms serve` and `cpms demo` run their node in `_node`; a Runtime alone freezes nothing.
    async with _node(settings):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    node = Runtime(settings)
    await node.start()
    try:
        assert gc.get_freeze_count() == 0
    finally:
        await node.stop()
