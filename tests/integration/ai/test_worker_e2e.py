"""End to end: a producer enqueues an AI job, an engine ``Worker`` on the ``ai`` queue runs
the AI processor, the provider talks HTTP to the fake OpenAI server — which answers 429
first. The queue pauses for Retry-After, the job keeps its attempt, and completes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis.asyncio as aioredis

from newsletter_queue.config import Settings
from newsletter_queue.engine import Job, Worker, WorkerOptions
from newsletter_queue.manager import QueueManager
from newsletter_queue.processors.ai import build_ai_processors
from newsletter_queue.services.ai import OpenAICompatibleProvider
from newsletter_queue.services.circuit import CircuitBreaker
from tests.integration.ai.conftest import MODEL
from tests.support.fakeopenai import FakeOpenAI


async def test_rate_limited_job_completes_without_losing_an_attempt(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider, manager: QueueManager,
    settings: Settings, redis_client: aioredis.Redis, prefix: str,
) -> None:
    fake_openai.rate_limit("1")  # pause the queue for 1000 ms
    fake_openai.reply('{"alternatives": ["Plan your spring garden in 5 steps"]}')
    breaker = CircuitBreaker(redis_client, prefix, "ai", threshold=3, cooldown_ms=60_000)
    processor = build_ai_processors(provider, breaker)["ai-job"]
    enqueued = await manager.schedule_ai_job("optimize-subject", {
        "tenantId": "tenant-7", "type": "subject-optimization",
        "data": {"subjects": ["FREE seeds!!! Act now"]}})

    done: asyncio.Future[tuple[Job, Any]] = asyncio.get_running_loop().create_future()

    def on_completed(job: Job, result: Any) -> None:
        if not done.done():
            done.set_result((job, result))

    def on_failed(job: Job, error: BaseException) -> None:
        if not done.done():
            done.set_exception(AssertionError(f"job failed: {error!r}"))

    # Configured as System.start_workers configures it.
    worker = Worker("ai", processor, settings=settings,
                    options=WorkerOptions.for_queue(settings.queue_config("ai")))
    worker.on("completed", on_completed)
    worker.on("failed", on_failed)
    worker.start()
    try:
        job, result = await asyncio.wait_for(done, timeout=15)
    finally:
        await worker.close(timeout=5)

    assert job.id == enqueued.id
    assert result["provider"] == "openai-compatible"
    assert result["model"] == MODEL
    assert result["result"]["best"]["subject"] == "Plan your spring garden in 5 steps"
    first, second = await fake_openai.wait_requests(2)
    assert len(fake_openai.requests) == 2
    assert second.at - first.at >= 0.95  # the whole queue waited for Retry-After

    raw = await redis_client.hgetall(f"{prefix}:ai:{enqueued.id}")
    assert raw["atm"] == "1"  # one attempt made: the rate-limited run did not count
    assert "failedReason" not in raw
    assert json.loads(raw["returnvalue"]) == result
    assert await redis_client.zscore(f"{prefix}:ai:completed", enqueued.id) is not None
    assert (await breaker.status()).state == "closed"
    logs = await redis_client.lrange(f"{prefix}:ai:{enqueued.id}:logs", 0, -1)
    assert logs[0] == "openai-compatible rate limited the request; pausing the queue for 1000 ms"
    assert logs[1].startswith(f"openai-compatible ({MODEL}) answered in ")
    assert time.time() * 1000 - int(raw["finishedOn"]) < 15_000
