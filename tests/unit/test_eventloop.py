"""The long-running commands' event loop: uvloop when installed, asyncio's on request or
when uvloop cannot be imported (a platform without a build)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from newsletter_queue import eventloop
from newsletter_queue.errors import ConfigurationError

uvloop = pytest.importorskip("uvloop")


async def _which() -> str:
    await asyncio.sleep(0)
    return eventloop.loop_name()


def test_auto_runs_on_uvloop_when_it_is_installed() -> None:
    assert eventloop.loop_factory("auto") is uvloop.new_event_loop
    assert eventloop.run(_which()) == "uvloop"
    assert eventloop.run(_which(), "uvloop") == "uvloop"


def test_asyncio_is_chosen_on_request() -> None:
    assert eventloop.loop_factory("asyncio") is None
    assert eventloop.run(_which(), "asyncio") == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what a missing package raises
    assert eventloop.loop_factory("auto") is None
    assert eventloop.run(_which(), "auto") == "asyncio"
    coroutine = _which()
    with pytest.raises(ConfigurationError, match="uvloop is not installed"):
        eventloop.run(coroutine, "uvloop")
    assert coroutine.cr_frame is None  # closed, not left un-awaited
