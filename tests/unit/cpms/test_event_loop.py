"""The node's event loop: uvloop where installed, asyncio on request or where it is not."""

from __future__ import annotations

import asyncio

import pytest

from cpms import event_loop
from cpms.config import load_settings
from cpms.errors import ConfigError
from cpms.event_loop import EventLoop, resolve, run, running_loop_name


async def _kind() -> str:
    return running_loop_name()


def test_auto_means_uvloop_where_it_is_installed_and_asyncio_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve(EventLoop.AUTO) is EventLoop.UVLOOP  # a dependency on Linux and macOS
    monkeypatch.setattr(event_loop, "installed", lambda: False)
    assert resolve(EventLoop.AUTO) is EventLoop.ASYNCIO
    assert run(_kind(), EventLoop.AUTO) == "asyncio"


@pytest.mark.parametrize("loop", [EventLoop.UVLOOP, EventLoop.ASYNCIO])
def test_run_runs_the_coroutine_on_the_loop_asked_for(loop: EventLoop) -> None:
    assert run(_kind(), loop) == loop.value
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # run() left no loop behind


def test_the_setting_names_a_loop_and_refuses_others_and_a_missing_uvloop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings({}, {}).event_loop is EventLoop.AUTO
    assert load_settings({}, {"CPMS_EVENT_LOOP": " AsyncIO "}).event_loop is EventLoop.ASYNCIO
    with pytest.raises(ConfigError, match=r"CPMS_EVENT_LOOP.*'trio'.*'auto'.*'uvloop'.*'asyncio'"):
        load_settings({}, {"CPMS_EVENT_LOOP": "trio"})
    monkeypatch.setattr("cpms.config.installed", lambda: False)
    with pytest.raises(ConfigError, match=r"'uvloop'.*not installed"):
        load_settings({}, {"CPMS_EVENT_LOOP": "uvloop"})
