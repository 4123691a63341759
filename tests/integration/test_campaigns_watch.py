"""``manager.campaigns`` without a worker, continued: how far ahead ``send_at`` may be, a
send cancelled while its recipients are read, ``follow``/``wait``, and the campaign's
Redis keys outliving a long send — against real Redis and the SQLite store."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from newsletter_queue import CampaignStateError, JobValidationError, QueueManager
from newsletter_queue.campaigns import CampaignLifecycle, batch_job_id
from newsletter_queue.campaigns.control import TTL_S
from newsletter_queue.campaigns.manage import MAX_SEND_AHEAD_S
from tests.support.helpers import wait_for


async def _save(manager: QueueManager, campaign: str = "june") -> None:
    await manager.campaigns.save("t1", campaign, subject="Hi", text="Hello")


async def _email_jobs(manager: QueueManager) -> int:
    stats = await manager.get_queue_stats("email")
    return stats.waiting + stats.prioritized + stats.delayed + stats.active


async def test_send_at_is_at_most_28_days_ahead(manager: QueueManager) -> None:
    await _save(manager)
    rows = [{"email": "a@example.com"}]
    too_far = datetime.now(UTC) + timedelta(seconds=MAX_SEND_AHEAD_S + 3600)
    with pytest.raises(JobValidationError) as caught:
        await manager.campaigns.send("t1", "june", rows, send_at=too_far)
    assert [e.path for e in caught.value.errors] == ["send_at"]
    assert "28 days" in str(caught.value)
    assert (await manager.campaigns.status("t1", "june")).state == "draft"
    assert await _email_jobs(manager) == 0

    within = datetime.now(UTC) + timedelta(seconds=MAX_SEND_AHEAD_S - 3600)
    result = await manager.campaigns.send("t1", "june", rows, send_at=within)
    assert (result.created, result.state) == (True, "scheduled")


async def test_a_send_cancelled_while_reading_its_recipients_stops_reading(
        manager: QueueManager) -> None:
    await _save(manager)
    total = 5_000_000  # minutes of reading: only a stopped pass ends in time
    pulled = 0
    closed = threading.Event()

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        nonlocal pulled
        try:
            for i in range(1, total + 1):
                pulled = i
                yield i, {"email": f"r{i}@example.com"}
        finally:
            closed.set()

    async def started() -> bool:
        return pulled >= 10_000

    send = asyncio.ensure_future(manager.campaigns.send("t1", "june", rows()))
    await wait_for(started, timeout=60, message="the pass to start")
    send.cancel()
    with pytest.raises(asyncio.CancelledError):
        await send

    async def gone() -> bool:
        gc.collect()  # the stopped pass's traceback may hold the generator in a cycle
        return closed.is_set()

    await wait_for(gone, timeout=60, message="the recipients' pass to stop")
    assert pulled < total
    assert (await manager.campaigns.status("t1", "june")).state == "draft"
    assert await _email_jobs(manager) == 0


async def test_follow_and_wait(manager: QueueManager) -> None:
    await _save(manager)
    with pytest.raises(CampaignStateError, match="draft"):
        await manager.campaigns.wait("t1", "june", timeout=60)
    await manager.campaigns.send("t1", "june", [{"email": "a@example.com"}])
    # No worker runs here: the campaign cannot finish, so the wait runs out.
    with pytest.raises(TimeoutError):
        await manager.campaigns.wait("t1", "june", timeout=0.3, interval=0.05)
    seen = []
    async for status in manager.campaigns.follow("t1", "june", interval=0.05):
        seen.append(status.state)
        if len(seen) == 2:
            await manager.campaigns.cancel("t1", "june")
    assert seen[:2] == ["sending", "sending"]
    assert seen[-1] == "cancelled"  # nothing more will be sent: the follow ends
    final = await manager.campaigns.wait("t1", "june", timeout=60)
    assert final.state == "cancelled"


async def test_a_campaigns_keys_are_renewed_while_it_runs(
        manager: QueueManager, redis_client: aioredis.Redis) -> None:
    await _save(manager)
    await manager.campaigns.send("t1", "june", [{"email": f"r{i}@example.com"}
                                                for i in range(4)], batch_size=2)
    lifecycle = CampaignLifecycle(redis_client, manager.settings.key_prefix)
    progress = lifecycle.progress("t1", "june")
    state_key = f"{progress.total_key.rsplit(':', 1)[0]}:state"
    # As if the send had started 29 days ago: the keys are about to expire.
    for key in (progress.total_key, state_key):
        await redis_client.expire(key, 3600)
    assert not await lifecycle.batch_finished("t1", "june", batch_job_id("t1", "june", 0))
    assert await redis_client.ttl(progress.total_key) > TTL_S - 600
    await manager.campaigns.pause("t1", "june")
    assert await redis_client.ttl(state_key) > TTL_S - 600
    await redis_client.expire(progress.total_key, 3600)
    await manager.campaigns.resume("t1", "june")
    assert await redis_client.ttl(progress.total_key) > TTL_S - 600
    assert await lifecycle.batch_finished("t1", "june", batch_job_id("t1", "june", 1))
