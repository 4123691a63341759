"""QueueManager's record side: events in batches, dead letters listed and replayed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from newsletter_queue.config import Settings
from newsletter_queue.errors import JobNotFoundError, JobValidationError
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.store import DeadLetterRecord
from newsletter_queue.system import System
from tests.support.helpers import wait_for


async def test_record_events_in_one_batch(manager: QueueManager) -> None:
    events: list[dict[str, Any]] = [
        {"tenantId": "t1", "campaignId": "c1", "recipient": f"u{i % 500}@example.com",
         "type": "clicked" if i % 4 == 0 else "opened",
         "url": "https://example.com/a" if i % 4 == 0 else None,
         "occurredAt": "2026-11-27T09:30:00Z"} for i in range(10_000)]
    assert await manager.record_events(events) == 10_000
    store = await manager.store()
    assert await store.count_events("t1", "c1", "clicked") == 2_500
    assert await store.count_events("t1", "c1", "opened") == 7_500


async def test_a_bad_event_rejects_the_batch_naming_it(manager: QueueManager) -> None:
    good = {"tenantId": "t1", "campaignId": "c1", "recipient": "a@example.com",
            "type": "opened"}
    with pytest.raises(JobValidationError) as info:
        await manager.record_events([good, {**good, "type": "liked"},
                                     {**good, "recipient": "nope"}])
    assert set(info.value.paths) == {"[1].type", "[2].recipient"}
    assert await (await manager.store()).count_events("t1") == 0


async def test_dead_letters_list_and_replay(manager: QueueManager) -> None:
    store = await manager.store()
    letter_id = await store.add_dead_letter(DeadLetterRecord(
        queue="analytics", job_id="42", job_name="campaign-complete",
        data={"campaignId": "c1", "tenantId": "t1", "eventType": "campaign-complete"},
        error="database unavailable", attempts=3, failed_at=datetime.now(UTC)))
    letters = await manager.list_dead_letters(queue="analytics")
    assert [(d.id, d.error) for d in letters] == [(letter_id, "database unavailable")]
    job = await manager.replay_dead_letter(letter_id)
    assert job.queue == "analytics"
    assert job.name == "campaign-complete"
    assert (await manager.get_queue_stats("analytics")).waiting == 1
    assert await manager.list_dead_letters(queue="analytics") == []
    replayed = await manager.list_dead_letters(queue="analytics", include_replayed=True)
    assert replayed[0].replay_job_id == job.id
    with pytest.raises(JobNotFoundError):
        await manager.replay_dead_letter(letter_id)


async def test_a_job_failing_for_good_becomes_a_dead_letter(
    settings: Settings, manager: QueueManager
) -> None:
    async with SmtpSink() as sink:
        services = await WorkerServices(settings, smtp_url=sink.url).open()
        system = System(settings, shutdown_timeout=10)
        try:
            job = await manager.schedule_email_job("send-batch", {
                "campaignId": "never-stored", "tenantId": "t1",
                "recipients": [{"email": "a@example.com"}]})
            workers = system.start_workers(services.registry(), ["email"])
            services.attach_hooks(workers)
            letters = await wait_for(lambda: manager.list_dead_letters(queue="email"),
                                     timeout=20, message="a dead letter")
        finally:
            await system.stop()
            await services.close()
    assert letters[0].job_id == job.id
    assert "campaign 'never-stored' of tenant 't1' has no content" in letters[0].error
    assert letters[0].stacktrace  # the stack trace is kept for inspection
    failed = await manager.get_failed_jobs("email")
    assert failed[0].id == job.id
    assert sink.handler.accepted == 0
