"""Job schedulers keep producing iterations; BullMQ metrics are written and readable."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as aioredis
from bullmq import Queue

from newsletter_queue.config import Settings
from newsletter_queue.engine import Job, UnrecoverableError, Worker, get_metrics
from newsletter_queue.manager import QueueManager
from tests.integration.engine.conftest import QUEUE, Recorder


async def test_recurring_analytics_scheduler_produces_the_next_iterations(
    manager: QueueManager, make_worker: Callable[..., Worker], redis_client: aioredis.Redis,
    prefix: str,
) -> None:
    scheduler_id = await manager.schedule_recurring_analytics("tenant-7", every_ms=1000)

    async def aggregate(job: Job) -> str:
        return f"{job.data['tenantId']} iteration"

    worker = make_worker(aggregate, queue="analytics")
    events = Recorder(worker)
    worker.start()
    done = await events.wait("completed", 2, timeout=10)
    jobs = [job for job, _ in done]
    assert all(job.repeat_job_key == scheduler_id for job in jobs)
    assert all(job.name == "daily-aggregation" for job in jobs)
    assert len({job.id for job in jobs}) == 2
    assert jobs[1].timestamp > jobs[0].timestamp
    # The worker already created the iteration after the second one.
    delayed = await redis_client.zrange(f"{prefix}:analytics:delayed", 0, -1)
    assert len(delayed) == 1
    assert delayed[0].startswith(f"repeat:{scheduler_id}:")
    assert delayed[0] not in {job.id for job in jobs}


async def test_metrics_are_written_in_bullmq_format_and_readable(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis,
    prefix: str, settings: Settings,
) -> None:
    # Pretend the last data point was written two minutes ago with 2 of 5 jobs counted,
    # so the next finished job writes two per-minute points (3 jobs, then 0).
    two_minutes_ago = int(time.time() * 1000) - 120_000
    await redis_client.hset(f"{prefix}:{QUEUE}:metrics:completed",
                            mapping={"count": 5, "prevTS": two_minutes_ago, "prevCount": 2})

    async def work(job: Job) -> None:
        if job.data.get("fail"):
            raise UnrecoverableError("no")

    await bull.addBulk([{"name": "ok", "data": {"i": i}} for i in range(4)])
    await bull.add("bad", {"fail": True})
    worker = make_worker(work, metrics_max_data_points=60)
    events = Recorder(worker)
    worker.start()
    await events.wait("completed", 4)
    await events.wait("failed")

    completed = await get_metrics(redis_client, settings, QUEUE, "completed")
    assert completed.count == 5 + 4
    assert completed.data == [0, 3]  # newest first
    assert completed.total_points == 2
    assert completed.prev_count == 5
    failed = await get_metrics(redis_client, settings, QUEUE, "failed")
    assert failed.count == 1
    assert failed.data == []  # first failure: starts the minute series
    assert failed.prev_ts > 0
    assert await redis_client.lrange(f"{prefix}:{QUEUE}:metrics:completed:data", 0, -1) \
        == ["0", "3"]
