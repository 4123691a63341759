"""QueueMonitor and MonitorRecorder against a real Redis and real engine workers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from newsletter_queue.config import Settings
from newsletter_queue.engine import Metrics, UnrecoverableError, Worker
from newsletter_queue.manager import QueueManager
from newsletter_queue.monitor import QueueMonitor, assess, minute_series, parse_workers
from newsletter_queue.monitor_report import (
    MonitorThresholds,
    QueueMetrics,
    RedisInfo,
    bucket_field,
    percentile,
)
from tests.conftest import make_settings
from tests.support.helpers import wait_for


async def test_failed_attempts_reach_the_errors_stream_with_attempt_numbers(
        manager: QueueManager, make_worker: Callable[..., Worker], settings: Settings) -> None:
    await manager.schedule_analytics_job("campaign-complete", {
        "campaignId": "c-1", "tenantId": "t-1", "eventType": "campaign-complete"},
        {"attempts": 2, "backoff": 0, "job_id": "flaky"})

    async def always_fails(job: Any) -> None:
        raise RuntimeError(f"db down (redis://user:hunter2@db.example:6379) try {job.attempt}")

    make_worker("analytics", always_fails)
    async with QueueMonitor(settings, manager=manager) as monitor:
        errors = await wait_for(lambda: _errors(monitor, 2, "analytics"),
                                message="two failed attempts")
        assert [e.attempt for e in errors] == [2, 1]  # newest first
        assert [e.final for e in errors] == [True, False]
        assert all(e.job_id == "flaky" and e.name == "campaign-complete" for e in errors)
        assert all(e.max_attempts == 2 and e.error_type == "RuntimeError" for e in errors)
        assert "hunter2" not in errors[0].error
        assert "user:***@db.example" in errors[0].error
        assert await monitor.get_recent_errors(10, "email") == []
        assert len(await monitor.get_recent_errors(1)) == 1


async def _errors(monitor: QueueMonitor, n: int, queue: str) -> Any:
    found = await monitor.get_recent_errors(10, queue)
    return found if len(found) >= n else None


async def test_unrecoverable_error_is_final_on_the_first_attempt(
        manager: QueueManager, make_worker: Callable[..., Worker], settings: Settings) -> None:
    await manager.schedule_analytics_job("campaign-complete", {
        "campaignId": "c-1", "tenantId": "t-1", "eventType": "campaign-complete"},
        {"attempts": 5})

    async def bad(job: Any) -> None:
        raise UnrecoverableError("data.campaignId: no such campaign")

    make_worker("analytics", bad)
    monitor = QueueMonitor(settings, manager=manager)
    (error,) = await wait_for(lambda: _errors(monitor, 1, "analytics"))
    assert error.final
    assert error.attempt == 1


async def test_metrics_count_throughput_durations_and_workers(
        manager: QueueManager, make_worker: Callable[..., Worker], settings: Settings) -> None:
    began = time.monotonic()
    for i in range(6):
        await manager.schedule_analytics_job("campaign-complete", {
            "campaignId": f"c-{i}", "tenantId": "t-1", "eventType": "campaign-complete"},
            {"attempts": 1})

    async def work(job: Any) -> dict[str, int]:
        if job.data["campaignId"] == "c-5":
            raise ValueError("bad campaign")
        await asyncio.sleep(0.01)
        return {"ok": 1}

    worker = make_worker("analytics", work, concurrency=2)
    monitor = QueueMonitor(settings, manager=manager)

    async def finished() -> QueueMetrics | None:
        # Two writers, one after the other: BullMQ's counters in the completion script,
        # then the processing times in the worker's completed hook. Wait for both.
        m = await monitor.get_queue_metrics("analytics")
        hist = await (await manager.client()).hget(
            f"{settings.key_prefix}:monitor:analytics:hist", "count")
        done = (m.completed_last_hour == 5 and m.failed_last_hour == 1
                and m.processing_ms["samples"] == 5 and hist == "5"
                and m.counts["completed"] == 5 and m.counts["failed"] == 1)
        return m if done else None

    m = await wait_for(finished, message="5 completed and 1 failed in the metrics, "
                                         "5 processing times")
    elapsed_ms = (time.monotonic() - began) * 1000
    assert m.completed_total == 5
    assert m.failed_total == 1
    assert sum(m.completed_per_minute) == 5
    assert len(m.completed_per_minute) == 60
    assert m.error_rate == pytest.approx(1 / 6)
    assert m.processing_ms["samples"] == 5
    p50, p99 = m.processing_ms["p50"], m.processing_ms["p99"]
    assert p50 is not None
    assert p99 is not None
    # each job slept 10 ms; none can have taken longer than the whole test so far
    assert 10 <= p50 <= p99 <= elapsed_ms
    assert m.workers == 1
    assert m.worker_list[0].name == worker.name
    assert m.counts["completed"] == 5
    assert m.counts["failed"] == 1
    assert not m.is_paused
    hist = await (await manager.client()).hgetall(f"{settings.key_prefix}:monitor:analytics:hist")
    assert int(hist["count"]) == 5
    assert int(hist["sum_ms"]) >= 50
    await worker.close(2)

    async def gone() -> bool:
        return (await monitor.get_queue_metrics("analytics")).workers == 0

    await wait_for(gone, message="the worker to disconnect")


async def test_oldest_waiting_age_and_health_reasons(
        manager: QueueManager, settings: Settings, redis_client: aioredis.Redis) -> None:
    job = await manager.schedule_email_job("send-newsletter", {
        "campaignId": "c-1", "tenantId": "t-1", "recipients": [{"email": "a@example.com"}]})
    # Backdate the job by ten minutes, as if nobody had processed it since.
    key = manager.key("email", job.id)
    await redis_client.hset(key, "timestamp", int(time.time() * 1000) - 600_000)
    monitor = QueueMonitor(settings, manager=manager,
                           thresholds=MonitorThresholds(no_workers_grace_s=60))
    m = await monitor.get_queue_metrics("email")
    assert m.oldest_waiting_age_s is not None
    assert 590 <= m.oldest_waiting_age_s < 700
    health = await monitor.get_queue_health("email")
    assert health.status == "critical"
    assert any("no workers connected while 1 job(s) wait" in r for r in health.reasons)
    assert any("oldest waiting job is" in r for r in health.reasons)
    await manager.pause_queue("email")
    paused = await monitor.get_queue_health("email")
    assert paused.status == "warning"
    assert paused.reasons == ["queue is paused"]
    assert (await monitor.get_queue_health("ai")).status == "healthy"


async def test_prioritized_jobs_count_towards_backlog_age(
        manager: QueueManager, settings: Settings, redis_client: aioredis.Redis) -> None:
    jobs = await manager.schedule_batch_email_sending(
        "c-1", "t-1", [{"email": f"r{i}@example.com"} for i in range(3)], 1)
    await redis_client.hset(manager.key("email", jobs[0].id), "timestamp",
                            int(time.time() * 1000) - 120_000)
    m = await QueueMonitor(settings, manager=manager).get_queue_metrics("email")
    assert m.counts["prioritized"] == 3
    assert m.oldest_waiting_age_s is not None
    assert m.oldest_waiting_age_s >= 119


async def test_unreachable_redis_is_critical_not_an_exception(tmp_path: Any) -> None:
    settings = make_settings(redis_url="redis://:s3cret@127.0.0.1:1/0", key_prefix="nope",
                             state_dir=tmp_path, redis_connect_timeout_s=0.5)
    async with QueueMonitor(settings) as monitor:
        started = time.monotonic()
        health = await monitor.get_queue_health("email")
        report = await monitor.generate_report()
    assert time.monotonic() - started < 5
    assert health.status == "critical"
    assert health.reasons[0].startswith("Redis unreachable")
    assert report.status == "critical"
    assert not report.redis.ok
    assert "s3cret" not in report.to_json()
    assert "s3cret" not in report.to_markdown()


async def test_report_renders_json_and_markdown(
        manager: QueueManager, make_worker: Callable[..., Worker], settings: Settings) -> None:
    await manager.schedule_email_job("send-newsletter", {
        "campaignId": "c-1", "tenantId": "t-1", "recipients": [{"email": "a@example.com"}]})
    await manager.pause_queue("email")
    report = await QueueMonitor(settings, manager=manager).generate_report()
    data = json.loads(report.to_json())
    assert data["status"] == "warning"
    assert data["queues"]["email"]["counts"]["waiting"] == 1
    assert data["health"]["email"]["reasons"] == ["queue is paused"]
    md = report.to_markdown()
    assert "| email (paused) | warning | 1 |" in md
    assert "**email**: queue is paused" in md


def test_minute_series_places_points_relative_to_now() -> None:
    minute = 60_000
    now = 1_000 * minute + 30_000
    # Last data point written two minutes ago; 3 jobs since then in that minute; older
    # minutes 5 and 7 (newest first); nothing finished in the last two minutes.
    metrics = Metrics(count=15, prev_ts=998 * minute + 10, prev_count=12, data=[5, 7],
                      total_points=2)
    series = minute_series(metrics, now)
    assert len(series) == 60
    assert series[-1] == 0
    assert series[-2] == 0
    assert series[-3:-6:-1] == [3, 5, 7]
    assert sum(series) == 15
    empty = minute_series(Metrics(0, 0, 0, [], 0), now)
    assert empty == [0] * 60


def test_parse_workers_groups_client_names_by_queue() -> None:
    clients = [{"name": "nlq:ZW1haWw=:w:host-1", "addr": "127.0.0.1:5", "age": "9", "idle": "1"},
               {"name": "nlq:ZW1haWw=:w:host-1", "addr": "127.0.0.1:6", "age": "9", "idle": "0"},
               {"name": "nlq:YWk=:w:host-2", "addr": "127.0.0.1:7", "age": "3", "idle": "3"},
               {"name": "nlq:ZW1haWw=", "addr": "127.0.0.1:8"},
               {"name": "other:ZW1haWw=:w:host-9"}]
    found = parse_workers(clients, "nlq", ["email", "analytics", "ai"])
    assert [w.name for w in found["email"]] == ["host-1"]
    assert [w.name for w in found["ai"]] == ["host-2"]
    assert found["analytics"] == []


def _metrics(**kw: Any) -> QueueMetrics:
    base: dict[str, Any] = dict(
        queue="email", counts={"waiting": 0, "prioritized": 0}, is_paused=False,
        minute_start_ms=0, completed_per_minute=[0] * 60, failed_per_minute=[0] * 60,
        completed_total=0, failed_total=0, completed_last_hour=0, failed_last_hour=0,
        error_rate=None, processing_ms={}, oldest_waiting_age_s=None, workers=1)
    base.update(kw)
    return QueueMetrics(**base)


def test_assess_applies_each_threshold() -> None:
    t = MonitorThresholds()
    redis = RedisInfo(ok=True, url="redis://x")
    assert assess(_metrics(), redis, t).status == "healthy"
    high = _metrics(completed_last_hour=60, failed_last_hour=40, error_rate=0.4)
    assert assess(high, redis, t).status == "critical"
    some = _metrics(completed_last_hour=90, failed_last_hour=10, error_rate=0.1)
    assert assess(some, redis, t).reasons == ["error rate 10% of 100 jobs failed in the last hour"]
    few = _metrics(completed_last_hour=1, failed_last_hour=1, error_rate=0.5)
    assert assess(few, redis, t).status == "healthy"  # too few jobs to judge
    full = RedisInfo(ok=True, url="redis://x", used_memory=97, maxmemory=100)
    assert assess(_metrics(), full, t).reasons == ["Redis memory at 97% of maxmemory"]
    near = RedisInfo(ok=True, url="redis://x", used_memory=85, maxmemory=100)
    assert assess(_metrics(), near, t).status == "warning"
    fresh = _metrics(counts={"waiting": 2}, workers=0, oldest_waiting_age_s=1)
    assert assess(fresh, redis, t).status == "warning"
    stale = _metrics(counts={"waiting": 2}, workers=0, oldest_waiting_age_s=400)
    assert assess(stale, redis, t).status == "critical"


def test_percentile_and_buckets() -> None:
    assert percentile([], 50) is None
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert bucket_field(0.004) == "0.005"
    assert bucket_field(0.005) == "0.005"
    assert bucket_field(7) == "10.0"
    assert bucket_field(10_000) == "+Inf"


def test_settings_embedding_is_optional(settings: Settings) -> None:
    assert QueueMonitor(settings).thresholds == MonitorThresholds()
