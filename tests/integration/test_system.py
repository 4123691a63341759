"""``System``: the one object every long-running command runs — the order of its stop,
closing what it holds even when something fails, and stopping when a part ends."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
from fastapi import FastAPI

from newsletter_queue.config import Settings
from newsletter_queue.engine import Job
from newsletter_queue.manager import QueueManager
from newsletter_queue.registry import ProcessorRegistry
from newsletter_queue.system import System


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _registry(done: asyncio.Event) -> ProcessorRegistry:
    registry = ProcessorRegistry()

    @registry.processor("analytics", "campaign-complete")
    async def complete(job: Job) -> None:
        done.set()

    return registry


async def test_resources_close_after_the_server_and_the_workers_newest_first(
    settings: Settings, manager: QueueManager
) -> None:
    done = asyncio.Event()
    system = System(settings, shutdown_timeout=5)
    seen: list[tuple[str, bool, bool]] = []
    port = _free_port()
    try:
        workers = system.start_workers(_registry(done), ["analytics"])

        def closer(name: str) -> Callable[[], Awaitable[None]]:
            async def close() -> None:
                seen.append((name, any(w.is_running for w in workers), _listening(port)))
            return close

        system.close_later(closer("opened first"))
        system.close_later(closer("opened last"))
        await system.serve(FastAPI(), host="127.0.0.1", port=port)
        assert _listening(port)
        await manager.schedule_analytics_job("campaign-complete", {
            "campaignId": "c-1", "tenantId": "t-1", "eventType": "campaign-complete"})
        await asyncio.wait_for(done.wait(), 30)  # the workers really run
    finally:
        await system.stop()
    # Resources close after the workers and the server, the newest first.
    assert seen == [("opened last", False, False), ("opened first", False, False)]
    assert system.workers == []
    assert system.stop_requested
    await system.stop()  # idempotent
    assert len(seen) == 2


async def test_every_resource_is_closed_even_when_one_fails(settings: Settings) -> None:
    system = System(settings)
    closed: list[str] = []

    async def ok(name: str) -> None:
        closed.append(name)

    async def broken() -> None:
        raise OSError("the disk is gone")

    system.close_later(lambda: ok("first"))
    system.close_later(broken)
    system.close_later(lambda: ok("last"))
    with pytest.raises(OSError, match="the disk is gone"):
        await system.stop()
    assert closed == ["last", "first"]


async def test_wait_returns_when_a_part_ends_by_itself(settings: Settings) -> None:
    system = System(settings, shutdown_timeout=5)
    try:
        [worker] = system.start_workers(ProcessorRegistry(), ["ai"])
        waiting = asyncio.ensure_future(system.wait())
        await worker.close(timeout=0)  # as if it had died: the rest must not run on
        await asyncio.wait_for(waiting, 30)
        assert not system.stop_requested  # nobody asked; the part ended
    finally:
        await system.stop()


async def test_wait_returns_when_a_stop_is_asked_for(settings: Settings) -> None:
    stop = asyncio.Event()
    system = System(settings, stop=stop)
    waiting = asyncio.ensure_future(system.wait())
    stop.set()
    await asyncio.wait_for(waiting, 30)
    await system.stop()


async def test_a_stopped_system_starts_nothing(settings: Settings) -> None:
    system = System(settings)
    await system.stop()
    with pytest.raises(RuntimeError, match="stopping"):
        system.start_workers(ProcessorRegistry(), ["ai"])
