"""QueueManager against a real Redis: scheduling, order, idempotency, admin actions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from newsletter_queue import (
    EmailJobData,
    JobValidationError,
    QueueManager,
    QueueNotFoundError,
    Recipient,
)
from tests.conftest import make_settings
from tests.support.bullhelpers import complete_next, fail_next, take_next


def email(campaign: str = "campaign-123", *emails: str) -> dict[str, Any]:
    return {"campaignId": campaign, "tenantId": "tenant-456",
            "recipients": [{"email": e} for e in (emails or ("user@example.com",))]}


async def test_schedule_email_job_stores_the_bullmq_job(
    manager: QueueManager, redis_client: aioredis.Redis, prefix: str
) -> None:
    job = await manager.schedule_email_job("welcome-email", email("welcome-123"))
    raw = await redis_client.hgetall(f"{prefix}:email:{job.id}")
    assert raw["name"] == "welcome-email"
    assert raw["data"] == ('{"campaignId":"welcome-123","tenantId":"tenant-456",'
                           '"recipients":[{"email":"user@example.com"}]}')
    assert job.id in await redis_client.lrange(f"{prefix}:email:wait", 0, -1)
    # Queue defaults were applied: attempts, backoff and bounded retention.
    assert job.opts["attempts"] == 5
    assert set(job.opts["removeOnComplete"]) == {"age", "count"}


async def test_model_and_snake_case_input(manager: QueueManager) -> None:
    model = EmailJobData(campaign_id="c-1", tenant_id="t-1",
                         recipients=[Recipient(email="a@example.com", name="A")])
    job = await manager.schedule_email_job("welcome", model)
    info = await manager.get_job("email", job.id)
    assert info is not None
    assert info.data["recipients"] == [{"email": "a@example.com", "name": "A"}]
    assert info.state == "waiting"


async def test_delayed_job(manager: QueueManager, redis_client: aioredis.Redis,
                           prefix: str) -> None:
    before = int(time.time() * 1000)
    job = await manager.schedule_email_job("reminder-email", email("reminder-123"),
                                           {"delay": 24 * 60 * 60 * 1000})
    stats = await manager.get_queue_stats("email")
    assert (stats.delayed, stats.waiting) == (1, 0)
    score = await redis_client.zscore(f"{prefix}:email:delayed", job.id)
    assert score is not None
    # BullMQ stores delayed jobs scored by (timestamp << 12) + counter.
    due_ms = int(score) >> 12
    assert before + 24 * 3600 * 1000 <= due_ms <= int(time.time() * 1000) + 24 * 3600 * 1000


async def test_priority_order(manager: QueueManager) -> None:
    low = await manager.schedule_email_job("bulk", email("c-low"), {"priority": 100})
    high = await manager.schedule_email_job("transactional", email("c-high"), {"priority": 1})
    mid = await manager.schedule_email_job("digest", email("c-mid"), {"priority": 10})
    assert (await manager.get_queue_stats("email")).prioritized == 3
    queue = await manager.queue("email")
    order = []
    for _ in range(3):
        taken = await take_next(queue)
        assert taken is not None
        order.append(taken[0].id)
    assert order == [high.id, mid.id, low.id]


async def test_job_id_makes_scheduling_idempotent(manager: QueueManager) -> None:
    first = await manager.schedule_email_job("welcome", email(), {"job_id": "welcome-u1"})
    second = await manager.schedule_email_job("welcome", email(), {"job_id": "welcome-u1"})
    assert first.id == second.id == "welcome-u1"
    assert (first.created, second.created) == (True, False)
    assert (await manager.get_queue_stats("email")).waiting == 1


async def test_simultaneous_adds_of_one_id_report_exactly_one_creation(
        settings: Any) -> None:
    """50 producers (own connections) add the same id at once: one job, one ``created``."""
    managers = [QueueManager(settings) for _ in range(10)]
    try:
        results = await asyncio.gather(*(
            managers[i % 10].schedule_email_job("welcome", email(f"c-{i}"),
                                                {"job_id": "same-id", "delay": i % 2})
            for i in range(50)))
    finally:
        await asyncio.gather(*(m.close() for m in managers))
    assert [r.created for r in results].count(True) == 1
    assert {r.id for r in results} == {"same-id"}
    async with QueueManager(settings) as check:
        stats = await check.get_queue_stats("email")
        assert stats.waiting + stats.delayed == 1
        # the stored job is the one whose call said it created it
        winner = next(r for r in results if r.created)
        stored = await check.get_job("email", "same-id")
        assert stored is not None
        assert stored.data == winner.data


async def test_batch_sending_splits_and_is_idempotent(manager: QueueManager) -> None:
    recipients = [{"email": f"user{i}@example.com", "name": f"User {i}"} for i in range(250)]
    jobs = await manager.schedule_batch_email_sending("campaign-123", "tenant-456",
                                                      recipients, 100)
    assert [len(j.data["recipients"]) for j in jobs] == [100, 100, 50]
    assert len({j.id for j in jobs}) == 3
    again = await manager.schedule_batch_email_sending("campaign-123", "tenant-456",
                                                       recipients, 100)
    assert [j.id for j in again] == [j.id for j in jobs]
    stats = await manager.get_queue_stats("email")
    # Campaign batches are prioritised below transactional mail.
    assert (stats.prioritized, stats.waiting) == (3, 0)
    stored = [r for j in jobs for r in (await manager.get_job("email", j.id)).data[  # type: ignore[union-attr]
        "recipients"]]
    assert [r["email"] for r in stored] == [r["email"] for r in recipients]


async def test_batch_sending_rejects_bad_recipients_before_enqueueing(
    manager: QueueManager,
) -> None:
    recipients = [{"email": "ok@example.com"}, {"email": "broken"}, {"name": "no email"}]
    with pytest.raises(JobValidationError) as info:
        await manager.schedule_batch_email_sending("c-1", "t-1", recipients, 2)
    assert {"recipients[1].email", "recipients[2].email"} <= set(info.value.paths)
    assert (await manager.get_queue_stats("email")).waiting == 0
    with pytest.raises(JobValidationError) as info:
        await manager.schedule_batch_email_sending("c:1", "t-1", recipients[:1], 0)
    assert {"campaignId", "batch_size"} <= set(info.value.paths)


async def test_stats_and_failed_jobs(manager: QueueManager) -> None:
    for i in range(4):
        await manager.schedule_email_job("send", email(f"c-{i}"))
    queue = await manager.queue("email")
    failed_ids = [await fail_next(queue, f"SMTP 451 try later #{i}") for i in range(2)]
    assert await complete_next(queue, {"sent": 1}) is not None
    stats = await manager.get_queue_stats("email")
    assert (stats.waiting, stats.completed, stats.failed, stats.active) == (1, 1, 2, 0)
    all_stats = await manager.get_all_queue_stats()
    assert set(all_stats) == {"email", "analytics", "ai"}
    assert all_stats["email"] == stats
    failed = await manager.get_failed_jobs("email", 10)
    assert [f.id for f in failed] == list(reversed(failed_ids))
    assert failed[0].failed_reason == "SMTP 451 try later #1"
    assert failed[0].finished_on is not None
    assert await manager.get_failed_jobs("email", 1) == failed[:1]


async def test_retry_failed_moves_jobs_back(manager: QueueManager) -> None:
    for i in range(3):
        await manager.schedule_email_job("send", email(f"c-{i}"))
    queue = await manager.queue("email")
    for _ in range(3):
        await fail_next(queue, "boom")
    assert await manager.retry_failed("email") == 3
    stats = await manager.get_queue_stats("email")
    assert (stats.failed, stats.waiting) == (0, 3)


async def test_clean_queue(manager: QueueManager) -> None:
    for i in range(3):
        await manager.schedule_email_job("send", email(f"c-{i}"))
    queue = await manager.queue("email")
    done = [await complete_next(queue) for _ in range(2)]
    # A grace period keeps recent jobs.
    assert await manager.clean_queue("email", grace_ms=60_000) == []
    removed = await manager.clean_queue("email", 0)
    assert sorted(removed) == sorted(done)
    stats = await manager.get_queue_stats("email")
    assert (stats.completed, stats.waiting) == (0, 1)
    assert await manager.clean_queue("email", 0, "waiting") != []
    assert (await manager.get_queue_stats("email")).waiting == 0


async def test_clean_queue_refuses_numbers_the_script_cannot_take(
        manager: QueueManager) -> None:
    await manager.schedule_email_job("send", email("kept"))
    # schemathesis found limit=30485510157674119168 reaching the Lua script as a double
    for kwargs, field in (({"limit": 30485510157674119168}, "limit"),
                          ({"grace_ms": 2**63}, "grace_ms"), ({"limit": -1}, "limit")):
        with pytest.raises(JobValidationError) as caught:
            await manager.clean_queue("email", state="waiting", **kwargs)
        assert caught.value.paths == [field]
    assert (await manager.get_queue_stats("email")).waiting == 1


async def test_pause_and_resume(manager: QueueManager) -> None:
    await manager.schedule_email_job("send", email())
    await manager.pause_queue("email")
    stats = await manager.get_queue_stats("email")
    assert stats.is_paused
    assert await manager.is_paused("email")
    assert await take_next(await manager.queue("email")) is None  # nothing is handed out
    await manager.schedule_email_job("send", email("c-2"))  # adding still works
    await manager.resume_queue("email")
    stats = await manager.get_queue_stats("email")
    assert not stats.is_paused
    assert stats.waiting == 2


async def test_recurring_analytics_is_one_scheduler_per_tenant(
    manager: QueueManager,
) -> None:
    sid = await manager.schedule_recurring_analytics("company-456")
    again = await manager.schedule_recurring_analytics("company-456", cron="30 3 * * *")
    assert sid == again == "daily-aggregation-company-456"
    queue = await manager.queue("analytics")
    assert await queue.getJobSchedulersCount() == 1
    scheduler = await queue.getJobScheduler(sid)
    assert scheduler["pattern"] == "30 3 * * *"
    delayed = await manager.get_jobs("analytics", "delayed", 0, 10)
    assert len(delayed) == 1
    assert delayed[0].name == "daily-aggregation"
    assert delayed[0].data == {"campaignId": "all", "tenantId": "company-456",
                               "eventType": "daily-aggregation"}
    await manager.schedule_recurring_analytics("other-tenant", every_ms=3_600_000)
    assert await queue.getJobSchedulersCount() == 2
    assert await manager.remove_recurring_analytics("other-tenant")
    assert await queue.getJobSchedulersCount() == 1


async def test_recurring_analytics_bad_cron(manager: QueueManager) -> None:
    with pytest.raises(JobValidationError) as info:
        await manager.schedule_recurring_analytics("t1", cron="not a cron")
    assert info.value.paths == ["cron"]
    with pytest.raises(JobValidationError):
        await manager.schedule_recurring_analytics("t1", every_ms=10)


async def test_bad_input_is_rejected_with_paths(manager: QueueManager) -> None:
    with pytest.raises(JobValidationError) as info:
        await manager.schedule_email_job("send", {"campaignId": "c", "recipients": [
            {"email": "nope"}]})
    assert {"tenantId", "recipients[0].email"} <= set(info.value.paths)
    with pytest.raises(JobValidationError) as info:
        await manager.schedule_ai_job("gen", {"tenantId": "t", "type": "poem", "data": {}})
    assert info.value.paths == ["type"]
    with pytest.raises(JobValidationError):
        await manager.schedule_email_job("send", email(), {"priority": -5})
    with pytest.raises(JobValidationError):
        await manager.schedule_email_job("", email())
    total = sum(s.pending for s in (await manager.get_all_queue_stats()).values())
    assert total == 0


async def test_unknown_queue_lists_the_known_ones(manager: QueueManager) -> None:
    with pytest.raises(QueueNotFoundError, match="known queues: email, analytics, ai"):
        await manager.get_queue_stats("sms")
    with pytest.raises(QueueNotFoundError):
        await manager.pause_queue("sms")
    with pytest.raises(KeyError):  # also a KeyError, for dict-style callers
        await manager.clean_queue("sms")


async def test_analytics_and_ai_jobs(manager: QueueManager) -> None:
    a = await manager.schedule_analytics_job("campaign-complete", {
        "campaignId": "c-1", "tenantId": "t-1", "eventType": "campaign-complete"})
    b = await manager.schedule_ai_job("subject-optimization", {
        "tenantId": "t-1", "type": "subject-optimization", "data": {"subjects": ["Hi"]}})
    assert (a.queue, b.queue) == ("analytics", "ai")
    assert (await manager.get_queue_stats("analytics")).waiting == 1
    assert (await manager.get_queue_stats("ai")).waiting == 1


async def test_health_check(manager: QueueManager) -> None:
    health = await manager.health_check()
    assert health.healthy
    assert health.redis_ok
    assert health.redis_latency_ms is not None
    assert set(health.queues) == {"email", "analytics", "ai"}
    assert health.to_dict()["redis"]["version"]


async def test_hash_tagged_prefix_keeps_a_queue_in_one_slot(
    redis_url: str, redis_client: aioredis.Redis, prefix: str
) -> None:
    tagged = "{" + prefix + "}"
    settings = make_settings(redis_url=redis_url, key_prefix=tagged)
    async with QueueManager(settings) as manager:
        await manager.schedule_batch_email_sending("c-1", "t-1", [
            {"email": f"u{i}@example.com"} for i in range(30)], 10)
        await manager.schedule_email_job("later", email(), {"delay": 60_000})
        await manager.schedule_recurring_analytics("t-1")
        keys = [k async for k in redis_client.scan_iter(f"{tagged}:*", count=1000)]
        assert len(keys) > 10
        assert len({key_slot(k.encode()) for k in keys}) == 1
        await redis_client.unlink(*keys)


async def test_context_manager_closes_and_reconnects(settings: Any) -> None:
    manager = QueueManager(settings)
    async with manager:
        assert (await manager.get_queue_stats("email")).waiting == 0
    # Used again after close: it reconnects instead of failing.
    assert (await manager.get_queue_stats("email")).waiting == 0
    await manager.close()
