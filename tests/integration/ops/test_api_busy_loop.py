"""A busy API is never taken for a Redis outage; a full pool is *overloaded*, not *down*.

The event loop is made slow on purpose: a task that holds the loop for 0.5 s at a time
(CPU work, as parsing a burst of requests is) and then yields, so every turn of the loop
takes at least that long — what a burst of a thousand requests does on a slow machine.
The readiness ping then needs more wall time than its 0.8 s deadline to be read, though
Redis answers it at once. (A slower machine only makes the turns longer.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from newsletter_queue.api import create_app
from newsletter_queue.api.context import REDIS_DEADLINE_S, ApiContext
from newsletter_queue.config import Settings
from newsletter_queue.connection import finished_within
from newsletter_queue.errors import RedisUnavailableError
from newsletter_queue.manager import QueueManager
from tests.conftest import make_settings
from tests.integration.ops.conftest import BASE_URL
from tests.support.helpers import silent_server

TURN_S = 0.5


@contextlib.asynccontextmanager
async def slow_loop(turn_s: float = TURN_S) -> AsyncIterator[list[int]]:
    """Hold the event loop ``turn_s`` at a time until the block exits; yields the count
    of turns held, so a test can show the loop really was slow."""
    turns = [0]
    stop = asyncio.Event()

    async def hog() -> None:
        while not stop.is_set():
            end = time.perf_counter() + turn_s
            while time.perf_counter() < end:
                pass  # CPU work, holding the loop
            turns[0] += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(hog())
    await asyncio.sleep(0)
    try:
        yield turns
    finally:
        stop.set()
        await task


async def test_finished_within_gives_a_slow_loop_its_turns() -> None:
    async def three_turns() -> str:
        for _ in range(3):
            await asyncio.sleep(0)
        return "done"

    async with slow_loop() as turns:
        task = asyncio.ensure_future(three_turns())
        # 3 turns of 0.5 s exceed 0.5 s of wall time, but not 0.5 s of loop ticks
        assert await finished_within(task, 0.5)
        assert task.result() == "done"
        assert turns[0] >= 3
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert not await finished_within(never, 0.1)


async def test_a_slow_loop_is_not_a_redis_outage(settings: Settings,
                                                 manager: QueueManager) -> None:
    ctx = ApiContext(settings, manager)
    async with slow_loop() as turns:
        # the first check also opens the probe's connection (about 22 turns)
        await ctx.redis_ready()
        ctx._ready_at = -1e9  # let the success expire
        started = time.monotonic()
        await ctx.redis_ready()  # must not raise
        waited = time.monotonic() - started
        held = turns[0]
    # the loop was slow enough to break a wall-clock deadline of 0.8 s …
    assert held >= 2
    assert waited > REDIS_DEADLINE_S
    # … and the verdict came from Redis's answer, whatever the time it took
    assert ctx._ready_at > 0


async def test_a_cold_api_hit_by_a_burst_connects_instead_of_reporting_an_outage(
        settings: Settings) -> None:
    """Nothing connected yet (the first request is the burst): connecting, checking the
    server, opening the probe's socket and the PING take about 75 slow turns in all.
    Each step that gets its answer earns the next one its turns."""
    ctx = ApiContext(settings, None)
    try:
        async with slow_loop(0.2) as turns:
            await ctx.redis_ready()  # must not raise
            held = turns[0]
        assert held * 0.2 > REDIS_DEADLINE_S  # far slower than the deadline allows
        assert ctx._ready_at > 0
    finally:
        await ctx.close()


async def test_a_silent_redis_is_still_reported_on_a_slow_loop(tmp_path: Path) -> None:
    async with silent_server() as port:
        settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0", key_prefix="hung",
                                 state_dir=tmp_path)
        ctx = ApiContext(settings, None)
        try:
            async with slow_loop(0.1):
                with pytest.raises(RedisUnavailableError) as caught:
                    await ctx.redis_ready()
        finally:
            await ctx.close()
    # by the deadline, or by the connect's own timeout if that comes first: reported
    assert "no answer" in str(caught.value) or "TimeoutError" in str(caught.value)


async def test_a_full_pool_is_overloaded_with_retry_after_not_redis_down(
        redis_url: str, prefix: str, tmp_path: Path, redis_client: aioredis.Redis) -> None:
    # One pooled connection, taken away below; the pool wait is 1 s.
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path,
                             redis_max_connections=1, redis_command_timeout_s=1.0)
    async with QueueManager(settings) as manager:
        client = await manager.client()
        pool = client.connection_pool  # type: ignore[union-attr]
        taken = await pool.get_connection()
        app = create_app(settings, manager=manager)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
                enqueue = await http.post("/api/dev/queues/analytics/jobs", json={
                    "name": "campaign-complete",
                    "data": {"campaignId": "c-1", "tenantId": "t-1",
                             "eventType": "campaign-complete"},
                    "opts": {"job_id": "full-pool"}})
                stats = await http.get("/api/dev/queue?action=stats")
                ready = await http.get("/readyz")
        finally:
            await pool.release(taken)
        for response in (enqueue, stats):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            body = response.json()
            assert body["overloaded"] is True
            assert body["retry_after_s"] == 1
            assert body["error"].startswith("overloaded")
            assert "unavailable" not in body["error"]
        # Redis itself answers: readiness says so, over the probe's own connection
        assert ready.status_code == 200, ready.text
        # the refused enqueue wrote nothing
        assert not await (await manager.probe_client()).exists(
            f"{prefix}:analytics:full-pool")
