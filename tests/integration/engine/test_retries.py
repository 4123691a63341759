"""Retries, backoff, unrecoverable errors, delays and rate limits.

What these tests assert about time holds on any machine, however slow or loaded:

- a job never runs early: every gap is at least its delay, backoff or limiter window
  (the delays themselves are read exactly from the engine's "retrying in N ms" line);
- a job is woken by its own timer or limiter TTL, not by whatever would wake an idle
  worker otherwise — the 5 s drain delay: upper bounds leave ``SLACK_MS`` (half the
  drain delay) for a slow machine and nothing more.

How precisely the engine keeps its times (delays within ~150 ms, backoff ±60 ms, a
5/1000 ms limiter running 15 jobs in 2.0–2.4 s here) is a benchmark figure, not a
test: it depends on the machine.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from bullmq import Queue

from newsletter_queue.engine import (
    DelayedError,
    Job,
    RateLimited,
    UnrecoverableError,
    Worker,
    WorkerOptions,
)
from newsletter_queue.queues import RateLimit
from tests.integration.engine.conftest import QUEUE, Recorder, job_hash
from tests.support.helpers import wait_for

# An idle worker that ignored a due time would only look again after its drain delay.
DRAIN_DELAY_MS = WorkerOptions().drain_delay_ms
SLACK_MS = DRAIN_DELAY_MS // 2
_RETRYING = re.compile(r"job \S+ \((?P<name>[^)]*)\) attempt \d+/\d+ failed, "
                       r"retrying in (?P<ms>\d+) ms")


def ms() -> int:
    return int(time.time() * 1000)


def retry_delays(caplog: pytest.LogCaptureFixture, name: str) -> list[int]:
    """The backoff delays the worker computed for job ``name``, in order (from its log)."""
    found = (_RETRYING.search(r.getMessage()) for r in caplog.records)
    return [int(m["ms"]) for m in found if m is not None and m["name"] == name]


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
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str,
    caplog: pytest.LogCaptureFixture,
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
    with caplog.at_level(logging.INFO, logger="newsletter_queue.engine"):
        worker.start()
        await events.wait("completed")
    assert retry_delays(caplog, "flaky") == [200, 400, 800]  # doubling, not fixed
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for gap, expected in zip(gaps, (200, 400, 800), strict=True):
        # Never early; woken by the backoff's own timer, not the drain delay.
        assert expected <= gap < expected + SLACK_MS, gaps
    assert len(events.of("failed")) == 3
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw["atm"] == "4"
    assert len(json.loads(raw["stacktrace"])) == 3


async def test_fixed_backoff_with_jitter_and_custom_strategy(
    bull: Queue, make_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
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
    with caplog.at_level(logging.INFO, logger="newsletter_queue.engine"):
        worker.start()
        await events.wait("completed", 2)
    jittered = retry_delays(caplog, "jitter")
    assert len(jittered) == 2
    assert all(150 <= d < 300 for d in jittered), jittered  # uniform in [delay·(1-j), delay)
    assert retry_delays(caplog, "custom") == [150, 300]  # the strategy's 150 · attempts_made
    for name, delays in (("jitter", jittered), ("custom", [150, 300])):
        gaps = [b - a for a, b in itertools.pairwise(starts[name])]
        for gap, delay in zip(gaps, delays, strict=True):
            assert delay <= gap < delay + SLACK_MS, (name, gaps, delays)


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


async def test_failed_hooks_are_told_whether_the_failure_is_final(
    bull: Queue, make_worker: Callable[..., Worker]
) -> None:
    async def fail(job: Job) -> None:
        if job.name == "unrecoverable":
            raise UnrecoverableError("never")
        raise RuntimeError("no")

    def strategy(attempts_made: int, kind: str, error: BaseException, job: Job) -> int:
        if kind == "broken":
            raise ValueError("broken strategy")
        return -1

    await bull.add("twice", {}, {"attempts": 2})  # a retry, then exhausted
    await bull.add("unrecoverable", {}, {"attempts": 3})
    await bull.add("minus-one", {}, {"attempts": 3, "backoff": {"type": "give-up"}})
    await bull.add("raising", {}, {"attempts": 3, "backoff": {"type": "broken"}})
    worker = make_worker(fail, backoff_strategy=strategy)
    seen: list[tuple[str, int, bool]] = []
    worker.on("failed", lambda job, error: seen.append(
        (job.name, job.attempts_made, job.failed_for_good)))
    events = Recorder(worker)
    worker.start()
    await events.wait("failed", 5)
    assert sorted(seen) == [("minus-one", 1, True), ("raising", 1, True),
                            ("twice", 1, False), ("twice", 2, True),
                            ("unrecoverable", 1, True)]


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
    # Woken when its 300 ms were up, not by the 5 s drain delay or its 5 s lock expiring.
    assert 300 <= starts[1] - starts[0] < 300 + SLACK_MS, starts
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

    worker = make_worker(record)
    events = Recorder(worker)
    worker.start()
    await events.wait("drained")  # idle, waiting on the marker: start-up is not timed
    short = await bull.add("short", {}, {"delay": 1500})
    long = await bull.add("long", {}, {"delay": 7000})
    await events.wait("completed", 2, timeout=40)
    # Never early; started by the worker's timer, not by the drain delay running out
    # (which would take until 5 s for the short job, 10 s for the long one).
    assert 1500 <= started[short.id] < 1500 + SLACK_MS, started
    # Longer than redis-py's 5 s default socket timeout and than the drain delay.
    assert 7000 <= started[long.id] < 7000 + SLACK_MS, started


async def test_worker_limiter_is_honoured_to_its_ttl(
    bull: Queue, make_worker: Callable[..., Worker]
) -> None:
    await bull.addBulk([{"name": "limited", "data": {"i": i}} for i in range(15)])
    worker = make_worker(_noop, concurrency=3, limiter=RateLimit(max=5, duration_ms=1000))
    events = Recorder(worker)
    first: list[float] = []
    worker.on("active", lambda job: first.append(time.monotonic()) if not first else None)
    worker.start()
    await events.wait("completed", 15, timeout=40)
    elapsed = time.monotonic() - first[0]
    # Three windows of 5: at least two whole limiter windows; each one resumed at the
    # limiter's TTL, not after the drain delay (waiting that even once: 5 s or more).
    assert 2.0 <= elapsed < 2.0 + SLACK_MS / 1000, elapsed


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
    await events.wait("completed", 10, timeout=40)
    elapsed = time.monotonic() - first[0]
    # Two windows of 5: one whole window, resumed at its TTL, not after the drain delay
    # (5 s or more).
    assert 1.0 <= elapsed < 1.0 + SLACK_MS / 1000, elapsed


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
    # Back when the 500 ms limit ran out, not after the drain delay.
    assert 500 <= starts[1] - starts[0] < 500 + SLACK_MS, starts
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
    await wait_for(lambda: _true(worker.health is not None and worker.is_running),
                   timeout=30, message="the worker to start")
    await events.wait("drained")
    limited_at = ms()  # before the limit is set: the job may start 1000 ms after, no sooner
    await worker.rate_limit(1000)  # long enough to still be running when read back
    assert 0 < await redis_client.pttl(f"{prefix}:{QUEUE}:limiter") <= 1000
    job = await bull.add("after-limit", {})
    await events.wait("completed")
    [(active,)] = events.of("active")
    assert active.id == job.id
    assert active.processed_on - limited_at >= 1000


async def _noop(job: Job) -> None:
    return None


async def _true(value: bool) -> bool:
    return value
