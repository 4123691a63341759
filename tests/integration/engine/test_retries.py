"""Retries, backoff precision, unrecoverable errors, delays and rate limits.

Timing windows are the ones the engine promises: delays start within 150 ms of their
due time, exponential backoff of 200 ms gives 200/400/800 ms gaps (±60 ms), a 5/1000 ms
limiter runs 15 jobs in 2.0–2.4 s.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from bullmq import Queue

from newsletter_queue.engine import DelayedError, Job, RateLimited, UnrecoverableError, Worker
from newsletter_queue.queues import RateLimit
from tests.helpers import wait_for
from tests.integration.engine.conftest import QUEUE, Recorder, job_hash


def ms() -> int:
    return int(time.time() * 1000)


async def test_unrecoverable_error_fails_at_once(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    async def refuse(job: Job) -> None:
        raise UnrecoverableError("recipient list is empty")

    job = await bull.add("refuse", {}, {"attempts": 5, "backoff": 10})
    worker = make_worker(refuse)
    events = Recorder(worker)
    worker.start()
    [(failed, error)] = await events.wait("failed")
    assert isinstance(error, UnrecoverableError)
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw["failedReason"] == "recipient list is empty"
    assert raw["atm"] == "1"
    assert "UnrecoverableError" in raw["stacktrace"]
    assert await redis_client.zscore(f"{prefix}:{QUEUE}:failed", job.id) is not None
    assert failed.attempts_made == 1


async def test_exponential_backoff_gaps(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    starts: list[int] = []

    async def flaky(job: Job) -> str:
        starts.append(ms())
        if job.attempt < 4:
            raise RuntimeError(f"attempt {job.attempt} failed")
        return "fourth time lucky"

    job = await bull.add("flaky", {}, {"attempts": 4,
                                      "backoff": {"type": "exponential", "delay": 200}})
    worker = make_worker(flaky)
    events = Recorder(worker)
    worker.start()
    await events.wait("completed")
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for gap, expected in zip(gaps, (200, 400, 800), strict=True):
        assert expected <= gap <= expected + 60, gaps
    assert len(events.of("failed")) == 3
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw["atm"] == "4"
    assert len(json.loads(raw["stacktrace"])) == 3


async def test_fixed_backoff_with_jitter_and_custom_strategy(
    bull: Queue, make_worker: Callable[..., Worker]
) -> None:
    starts: dict[str, list[int]] = {}

    async def fail_twice(job: Job) -> None:
        starts.setdefault(job.name, []).append(ms())
        if job.attempt < 3:
            raise RuntimeError("not yet")

    def strategy(attempts_made: int, kind: str, error: BaseException, job: Job) -> int:
        assert kind == "linear"
        assert isinstance(error, RuntimeError)
        return 150 * attempts_made

    await bull.add("jitter", {}, {"attempts": 3,
                                  "backoff": {"type": "fixed", "delay": 300, "jitter": 0.5}})
    await bull.add("custom", {}, {"attempts": 3, "backoff": {"type": "linear"}})
    worker = make_worker(fail_twice, backoff_strategy=strategy, concurrency=2)
    events = Recorder(worker)
    worker.start()
    await events.wait("completed", 2)
    jitter = starts["jitter"]
    for gap in (jitter[1] - jitter[0], jitter[2] - jitter[1]):
        assert 150 <= gap <= 300 + 60  # uniform in [delay·(1-j), delay)
    custom = starts["custom"]
    assert 150 <= custom[1] - custom[0] <= 150 + 60
    assert 300 <= custom[2] - custom[1] <= 300 + 60


async def test_backoff_strategy_minus_one_fails_without_retry(
    bull: Queue, make_worker: Callable[..., Worker]
) -> None:
    async def fail(job: Job) -> None:
        raise RuntimeError("bad input")

    await bull.add("give-up", {}, {"attempts": 5, "backoff": {"type": "never"}})
    worker = make_worker(fail, backoff_strategy=lambda *args: -1)
    events = Recorder(worker)
    worker.start()
    [(job, _)] = await events.wait("failed")
    assert job.attempts_made == 1
    assert job.failed_reason == "bad input"


async def test_processor_can_move_its_job_to_delayed(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    starts: list[int] = []

    async def later(job: Job) -> str:
        starts.append(ms())
        if len(starts) == 1:
            await job.move_to_delayed(ms() + 300)
            raise DelayedError()
        return "done"

    job = await bull.add("later", {}, {"attempts": 1})
    worker = make_worker(later, lock_duration_ms=5000)
    events = Recorder(worker)
    worker.start()
    await events.wait("completed")
    assert 300 <= starts[1] - starts[0] <= 300 + 150
    assert events.of("failed") == []
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw["atm"] == "1"  # parking did not use the only attempt
    assert raw["ats"] == "2"


async def test_delayed_jobs_start_on_time_including_long_delays(
    bull: Queue, make_worker: Callable[..., Worker]
) -> None:
    started: dict[str, int] = {}

    async def record(job: Job) -> None:
        started[job.id] = ms() - job.timestamp

    short = await bull.add("short", {}, {"delay": 1500})
    long = await bull.add("long", {}, {"delay": 7000})
    worker = make_worker(record)
    events = Recorder(worker)
    worker.start()
    await events.wait("completed", 2, timeout=15)
    assert 1500 <= started[short.id] <= 1650, started
    # Longer than redis-py's 5 s default socket timeout and than the drain delay.
    assert 7000 <= started[long.id] <= 7150, started


async def test_worker_limiter_is_honoured_to_its_ttl(
    bull: Queue, make_worker: Callable[..., Worker]
) -> None:
    await bull.addBulk([{"name": "limited", "data": {"i": i}} for i in range(15)])
    worker = make_worker(_noop, concurrency=3, limiter=RateLimit(max=5, duration_ms=1000))
    events = Recorder(worker)
    first: list[float] = []
    worker.on("active", lambda job: first.append(time.monotonic()) if not first else None)
    worker.start()
    await events.wait("completed", 15, timeout=10)
    elapsed = time.monotonic() - first[0]
    assert 2.0 <= elapsed <= 2.4, elapsed


async def test_global_rate_limit_in_meta_is_honoured(
    bull: Queue, make_worker: Callable[..., Worker]
) -> None:
    await bull.setGlobalRateLimit(5, 1000)
    await bull.addBulk([{"name": "limited", "data": {"i": i}} for i in range(10)])
    worker = make_worker(_noop, concurrency=4)  # no limiter of its own
    events = Recorder(worker)
    first: list[float] = []
    worker.on("active", lambda job: first.append(time.monotonic()) if not first else None)
    worker.start()
    await events.wait("completed", 10, timeout=10)
    elapsed = time.monotonic() - first[0]
    assert 1.0 <= elapsed <= 1.4, elapsed


async def test_rate_limited_requeues_the_job_without_using_an_attempt(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    starts: list[int] = []
    pttl_seen: list[int] = []

    async def provider(job: Job) -> str:
        starts.append(ms())
        if len(starts) == 1:
            raise RateLimited(500)  # e.g. HTTP 429 with Retry-After
        pttl_seen.append(await redis_client.pttl(f"{prefix}:{QUEUE}:limiter"))
        return "sent"

    job = await bull.add("call", {}, {"attempts": 1})
    worker = make_worker(provider, limiter=RateLimit(max=100, duration_ms=1000))
    events = Recorder(worker)
    worker.start()
    await events.wait("completed")
    assert 500 <= starts[1] - starts[0] <= 500 + 150
    assert events.of("failed") == []
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw["atm"] == "1"  # the rate-limited attempt was not counted
    assert raw["ats"] == "2"


async def test_worker_rate_limit_pauses_the_queue(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    worker = make_worker(_noop, limiter=RateLimit(max=100, duration_ms=1000))
    events = Recorder(worker)
    worker.start()
    await wait_for(lambda: _true(worker.health is not None and worker.is_running))
    await events.wait("drained")
    await worker.rate_limit(400)
    limited_at = ms()
    assert 0 < await redis_client.pttl(f"{prefix}:{QUEUE}:limiter") <= 400
    job = await bull.add("after-limit", {})
    await events.wait("completed")
    [(active,)] = events.of("active")
    assert active.id == job.id
    assert active.processed_on - limited_at >= 380


async def _noop(job: Job) -> None:
    return None


async def _true(value: bool) -> bool:
    return value
