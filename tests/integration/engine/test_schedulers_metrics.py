"""Job schedulers keep producing iterations; BullMQ metrics are written and readable."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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
    delayed_while_running: list[Any] = []

    async def aggregate(job: Job) -> str:
        # Read while the iteration runs: by then the worker has created the next one,
        # which is due a whole `every` later — long after this read, however slow.
        delayed_while_running.append(
            await redis_client.zrange(f"{prefix}:analytics:delayed", 0, -1))
        return f"{job.data['tenantId']} iteration"

    worker = make_worker(aggregate, queue="analytics")
    events = Recorder(worker)
    worker.start()
    done = await events.wait("completed", 2, timeout=30)
    jobs = [job for job, _ in done[:2]]
    assert all(job.repeat_job_key == scheduler_id for job in jobs)
    assert all(job.name == "daily-aggregation" for job in jobs)
    assert len({job.id for job in jobs}) == 2
    assert jobs[1].timestamp > jobs[0].timestamp
    # While the second iteration ran, the worker had already created the one after it.
    delayed = delayed_while_running[1]
    assert len(delayed) == 1, delayed
    assert delayed[0].startswith(f"repeat:{scheduler_id}:")
    assert delayed[0] not in {job.id for job in jobs}


async def test_metrics_are_written_in_bullmq_format_and_readable(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis,
    prefix: str, settings: Settings,
) -> None:
    # Pretend the last data point was written two minutes ago with 2 of 5 jobs counted,
    # so the next finished job writes two per-minute points (3 jobs, then 0). Should a
    # minute boundary pass before it finishes, it would be three minutes and three
    # points: keeping at most 2 points makes that [0, 3] too, whatever the clock says.
    two_minutes_ago = int(time.time() * 1000) - 120_000
    await redis_client.hset(f"{prefix}:{QUEUE}:metrics:completed",
                            mapping={"count": 5, "prevTS": two_minutes_ago, "prevCount": 2})

    async def work(job: Job) -> None:
        if job.data.get("fail"):
            raise UnrecoverableError("no")

    # The metrics as the first finished job left them, read in its (awaited) completed
    # hook before the next job finishes: later ones add a point only if they happen to
    # fall into the next minute, so they are not checked point by point.
    after_first: list[Any] = []

    async def snapshot(job: Job, result: Any) -> None:
        if not after_first:
            after_first.append(await get_metrics(redis_client, settings, QUEUE, "completed"))
            after_first.append(await redis_client.lrange(
                f"{prefix}:{QUEUE}:metrics:completed:data", 0, -1))

    await bull.addBulk([{"name": "ok", "data": {"i": i}} for i in range(4)])
    await bull.add("bad", {"fail": True})
    worker = make_worker(work, metrics_max_data_points=2)
    worker.on("completed", snapshot)
    events = Recorder(worker)
    worker.start()
    await events.wait("completed", 4)
    await events.wait("failed")

    first, first_raw = after_first
    assert first.count == 5 + 1
    assert first.data == [0, 3]  # newest first
    assert first.total_points == 2
    assert first.prev_count == 5
    assert first_raw == ["0", "3"]  # the raw list Node's getMetrics reads
    completed = await get_metrics(redis_client, settings, QUEUE, "completed")
    assert completed.count == 5 + 4  # every finished job is counted
    assert completed.total_points == len(completed.data) <= 2  # the cap holds
    failed = await get_metrics(redis_client, settings, QUEUE, "failed")
    assert failed.count == 1
    assert failed.data == []  # first failure: starts the minute series
    assert failed.prev_ts > 0
