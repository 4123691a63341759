"""Fixtures for the operations tests: engine workers with the monitor's recorder, an
HTTP client on the app (no network), and helpers that put jobs in known states."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from newsletter_queue.api import create_app
from newsletter_queue.config import Settings
from newsletter_queue.engine import Worker
from newsletter_queue.manager import QueueManager
from newsletter_queue.monitor import MonitorRecorder, QueueMonitor
from tests.support.helpers import wait_for

BASE_URL = "http://127.0.0.1:8000"


@pytest.fixture
async def make_worker(settings: Settings, redis_client: aioredis.Redis
                      ) -> AsyncIterator[Callable[..., Worker]]:
    """Engine workers with ``MonitorRecorder`` attached and metrics on; closed at teardown."""
    workers: list[Worker] = []
    recorder = MonitorRecorder(redis_client, settings)

    def factory(queue: str, processor: Any, **kwargs: Any) -> Worker:
        kwargs.setdefault("metrics_max_data_points", 60)
        worker = Worker(queue, processor, settings=settings, **kwargs)
        recorder.attach([worker])
        worker.start()
        workers.append(worker)
        return worker

    yield factory
    await asyncio.gather(*(w.close(2) for w in workers))


@pytest.fixture
async def api_client(settings: Settings, manager: QueueManager
                     ) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, manager=manager)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


async def fail_one_job(manager: QueueManager, make_worker: Callable[..., Worker],
                       queue: str = "ai", message: str = "boom: the provider said no") -> str:
    """Enqueue one AI job with a single attempt and let a worker fail it for good."""
    job = await manager.schedule_ai_job("subject-optimization", {
        "tenantId": "t-1", "type": "subject-optimization", "data": {"subjects": ["Hi"]}},
        {"attempts": 1, "job_id": "doomed-job"})

    async def explode(job: Any) -> None:
        await job.log("about to fail")
        raise ValueError(message)

    make_worker(queue, explode)

    async def failed() -> bool:
        return (await manager.get_queue_stats(queue)).failed == 1

    await wait_for(failed, timeout=30, message="the job to fail")
    # The monitor's errors stream is written by the worker's 'failed' hook, which runs
    # after BullMQ's state change: callers that read it must not race the hook.
    monitor = QueueMonitor(manager=manager)

    async def error_recorded() -> bool:
        errors = await monitor.get_recent_errors(queue=queue)
        return any(e.job_id == str(job.id) for e in errors)

    await wait_for(error_recorded, timeout=30, message="the failed hook to record the error")
    return job.id
