"""registry.py's processor registry, and ``System`` starting and stopping workers on the
queue table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from newsletter_queue.config import Settings
from newsletter_queue.engine import Job, UnrecoverableError, Worker
from newsletter_queue.errors import QueueNotFoundError
from newsletter_queue.manager import QueueManager
from newsletter_queue.queues import RateLimit
from newsletter_queue.registry import ProcessorRegistry
from newsletter_queue.system import System, run_workers
from tests.integration.engine.conftest import Recorder, job_hash
from tests.support.helpers import wait_for

EMAIL = {"campaignId": "c-1", "tenantId": "t-1", "recipients": [{"email": "a@example.com"}]}


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    running = System(settings, shutdown_timeout=2)
    yield running
    await running.stop()


def test_registry_registers_by_queue_and_name() -> None:
    registry = ProcessorRegistry()

    @registry.processor("email", "send-batch")
    async def send(job: Job) -> None:
        return None

    def report(job: Job) -> None:
        return None

    assert registry.register("analytics", "report", report) is report
    assert registry.names("email") == ["send-batch"]
    assert registry.get("analytics", "report") is report
    with pytest.raises(ValueError, match="already registered"):
        registry.register("email", "send-batch", report)


async def test_workers_dispatch_by_job_name_and_fail_unknown_names(
    settings: Settings, manager: QueueManager, redis_client: aioredis.Redis, prefix: str,
    system: System,
) -> None:
    registry = ProcessorRegistry()
    handled: list[str] = []

    @registry.processor("email", "send-batch")
    async def send(job: Job) -> int:
        handled.append(job.id)
        return len(job.data["recipients"])

    @registry.processor("email", "send-digest")
    def digest(job: Job) -> str:  # sync: runs in the worker's thread pool
        handled.append(job.id)
        return "digest"

    [worker] = system.start_workers(registry, ["email"])
    assert system.workers == [worker]
    cfg = settings.queue_config("email")
    assert worker.options.concurrency == cfg.concurrency
    assert worker.options.limiter == cfg.rate_limit
    assert isinstance(worker.options.limiter, RateLimit)
    events = Recorder(worker)

    known = await manager.schedule_email_job("send-batch", EMAIL)
    other = await manager.schedule_email_job("send-digest", EMAIL)
    unknown = await manager.schedule_email_job("send-mystery", EMAIL, {"attempts": 3})
    await events.wait("completed", 2)
    [(failed, error)] = await events.wait("failed")
    assert sorted(handled) == sorted([known.id, other.id])
    assert failed.id == unknown.id
    assert isinstance(error, UnrecoverableError)
    assert "send-mystery" in str(error)
    assert "registered names: send-batch, send-digest" in str(error)
    raw = await job_hash(redis_client, prefix, unknown.id, queue="email")
    assert raw["atm"] == "1"  # no retries for a job nobody can process

    await system.stop()
    assert system.workers == []
    assert not worker.is_running


async def test_start_workers_rejects_unknown_queues(system: System) -> None:
    with pytest.raises(QueueNotFoundError):
        system.start_workers(ProcessorRegistry(), ["newsletters"])
    assert system.workers == []


async def test_run_workers_runs_until_stopped(
    settings: Settings, manager: QueueManager
) -> None:
    registry = ProcessorRegistry()
    done = asyncio.Event()

    @registry.processor("analytics", "campaign-complete")
    async def complete(job: Job) -> None:
        done.set()

    stop = asyncio.Event()
    started: list[Worker] = []
    runner = asyncio.ensure_future(run_workers(settings, ["analytics"], registry=registry,
                                               shutdown_timeout=2, stop=stop,
                                               on_start=started.extend))
    await manager.schedule_analytics_job("campaign-complete", {
        "campaignId": "c-9", "tenantId": "t-1", "eventType": "campaign-complete"})
    await asyncio.wait_for(done.wait(), 30)
    assert [w.queue for w in started if w.is_running] == ["analytics"]
    stop.set()
    await asyncio.wait_for(runner, 30)
    assert [w for w in started if w.is_running] == []
    await wait_for(lambda: _true(runner.done()), timeout=30, message="run_workers to return")


async def _true(value: bool) -> bool:
    return value
