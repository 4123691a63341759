"""Fixtures for the engine tests: a bullmq producer and workers that are always closed.

Jobs are added with ``bullmq.Queue`` under the test's own key prefix, exactly as a
producer (ours or Node's) would add them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Queue

from newsletter_queue.config import Settings
from newsletter_queue.engine import Worker
from tests.support.helpers import wait_for

QUEUE = "eng"


@pytest.fixture
async def bull(redis_client: aioredis.Redis, prefix: str) -> Queue:
    """A bullmq producer for the test queue (shares ``redis_client``; not closed here)."""
    return Queue(QUEUE, {"connection": redis_client, "prefix": prefix})


@pytest.fixture
async def make_worker(settings: Settings) -> AsyncIterator[Callable[..., Worker]]:
    """Create workers on the test queue; every one is closed at teardown."""
    workers: list[Worker] = []

    def factory(processor: Any, queue: str = QUEUE, **kwargs: Any) -> Worker:
        worker = Worker(queue, processor, settings=kwargs.pop("settings", settings), **kwargs)
        workers.append(worker)
        return worker

    yield factory
    await asyncio.gather(*(w.close(timeout=2) for w in workers))


class Recorder:
    """Collects a worker's events; ``wait`` polls until enough arrived.

    The default timeout is generous on purpose: it only costs time when a test fails,
    and work has to happen first (on a slow, loaded machine too).
    """

    def __init__(self, worker: Worker) -> None:
        self.events: dict[str, list[tuple[Any, ...]]] = {}
        for event in ("active", "completed", "failed", "stalled", "drained", "error",
                      "progress"):
            worker.on(event, self._hook(event))

    def _hook(self, event: str) -> Callable[..., None]:
        def hook(*args: Any) -> None:
            self.events.setdefault(event, []).append(args)
        return hook

    def of(self, event: str) -> list[tuple[Any, ...]]:
        return self.events.get(event, [])

    async def wait(self, event: str, count: int = 1, timeout: float = 30.0
                   ) -> list[tuple[Any, ...]]:
        async def probe() -> list[tuple[Any, ...]] | None:
            got = self.of(event)
            return got if len(got) >= count else None

        return await wait_for(probe, timeout=timeout, message=f"{count} {event!r} event(s)")


async def job_hash(client: aioredis.Redis, prefix: str, job_id: str, queue: str = QUEUE
                   ) -> dict[str, str]:
    return await client.hgetall(f"{prefix}:{queue}:{job_id}")
