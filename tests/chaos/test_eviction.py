"""Scenario 7: an evicting Redis is refused or warned about; a full one refuses
enqueues loudly and loses nothing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from newsletter_queue.engine import Job, Worker
from newsletter_queue.errors import RedisOutOfMemoryError
from newsletter_queue.manager import QueueManager
from tests.chaos.harness import Stage, report
from tests.chaos.processes import wait_until
from tests.chaos.redis_scenarios import eviction_policy
from tests.chaos.scenarios import QUICK
from tests.chaos.worker_entry import CHAOS_QUEUE

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


async def test_eviction_policy_is_refused_or_warned_and_a_full_redis_drops_nothing(
        tmp_path: Path) -> None:
    r = await eviction_policy(QUICK, tmp_path)
    report(r)
    # allkeys-lru: a warning by default; NLQ_STRICT=1 refuses (manager and worker process).
    assert r.extra["lru_warning"] is True
    assert r.extra["worker_warning"] is True
    assert r.extra["strict_refused"] == "EvictionPolicyError"
    assert r.extra["strict_worker_exit"] not in (0, None)
    assert r.extra["strict_worker_says"] is True
    # noeviction, full: enqueues were refused to the caller, and no call was silent —
    # every acknowledged job exists, no refused one does, no campaign half-enqueued.
    assert r.extra["enqueues_refused"] >= 1
    assert r.extra["refusal_errors"] == ["RedisOutOfMemoryError"]
    assert r.extra["campaign_enqueue"] == "RedisOutOfMemoryError"
    assert r.extra["accepted_missing_while_full"] == 0
    assert r.extra["refused_but_stored"] == 0
    assert r.extra["campaign_batches_stored"] == 0
    # The worker survived the full server and, once memory was raised, ran every job.
    assert r.extra["worker_alive_while_full"] is True
    assert r.accepted > 0
    assert (r.completed, r.lost) == (r.accepted, 0)
    assert r.recovery_s is not None


async def test_a_full_redis_raises_redis_out_of_memory_error(tmp_path: Path) -> None:
    async with Stage(tmp_path, sink=False, redis_args=("--maxmemory-policy", "noeviction")
                     ) as stage:
        client = stage.redis.client()
        try:
            used = int((await client.info("memory"))["used_memory"])
            await client.config_set("maxmemory", used + 512 * 1024)
        finally:
            await client.aclose()
        async with QueueManager(stage.settings) as manager:
            with pytest.raises(RedisOutOfMemoryError):  # noqa: PT012 - fill until it says so
                for i in range(10_000):
                    await manager.schedule_analytics_job("fill", {
                        "campaignId": "c", "tenantId": "t", "eventType": "daily-aggregation",
                        "data": {"i": i, "pad": "x" * 4096}})


async def test_a_worker_on_a_full_redis_does_not_flood_its_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with Stage(tmp_path, sink=False, redis_args=("--maxmemory-policy", "noeviction")
                     ) as stage:
        client = stage.redis.client()
        producer = stage.producer()
        try:
            await producer.add_many(5)
            used = int((await client.info("memory"))["used_memory"])
            await client.config_set("maxmemory", used + 512 * 1024)
            while await producer.add(0, pad="x" * 4096):
                pass
            worker = Worker(CHAOS_QUEUE, _noop, settings=stage.settings, concurrency=10)
            with caplog.at_level(logging.WARNING, logger="newsletter_queue.engine"):
                worker.start()
                try:
                    await wait_until(lambda: _logged(caplog), timeout=10,
                                     message="the worker to meet the full Redis")
                    first = len(caplog.records)
                    # a window to measure the rate in: what a minute of this would write
                    await asyncio.sleep(3)
                    repeated = len(caplog.records) - first
                finally:
                    await worker.close(timeout=1)
        finally:
            await client.aclose()
    # An outage writes one warning and a reminder every 30 s; a full Redis should too.
    assert repeated <= 2, f"{repeated} more log records in 3 s"


async def _noop(job: Job) -> None:
    return None


async def _logged(caplog: pytest.LogCaptureFixture) -> bool:
    return bool(caplog.records)
