"""Which asyncio event loop runs the node, and running a coroutine on it.

A CPMS node spends much of its time in the event loop itself: reading and writing websocket
frames for every station, waking tasks, resolving futures. ``uvloop`` (libuv under asyncio's
API) does that work in C: on the gateway benchmark it took the node from about 117 to 85 µs
of CPU per OCPP message (docs/PERFORMANCE.md, session 11). It is a dependency where it builds
(Linux and macOS); elsewhere, or with ``CPMS_EVENT_LOOP=asyncio``, the standard library's loop
runs the same code.

``resolve(choice)`` turns the setting into the loop to use (``auto``: uvloop where installed);
``run(main, loop)`` runs a coroutine to completion on it, as ``asyncio.run`` does.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["EventLoop", "installed", "loop_factory", "resolve", "run", "running_loop_name"]

T = TypeVar("T")


class EventLoop(enum.StrEnum):
    """The setting ``CPMS_EVENT_LOOP``."""

    AUTO = "auto"
    """uvloop where it is installed, else asyncio."""
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


def installed() -> bool:
    """Whether uvloop can be imported here."""
    return importlib.util.find_spec("uvloop") is not None


def resolve(choice: EventLoop) -> EventLoop:
    """The loop ``choice`` means on this machine: ``UVLOOP`` or ``ASYNCIO``, never ``AUTO``."""
    if choice is EventLoop.AUTO:
        return EventLoop.UVLOOP if installed() else EventLoop.ASYNCIO
    return choice


def loop_factory(loop: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What creates a new loop of this kind; None means asyncio's default."""
    if resolve(loop) is EventLoop.UVLOOP:
        import uvloop

        return uvloop.new_event_loop
    return None


def run(main: Coroutine[Any, Any, T], loop: EventLoop = EventLoop.AUTO) -> T:
    """Run ``main`` on a new event loop of this kind until it completes; its result."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: the kind of loop running this coroutine, for the log."""
    module = type(asyncio.get_running_loop()).__module__
    return EventLoop.UVLOOP.value if module.startswith("uvloop") else EventLoop.ASYNCIO.value
