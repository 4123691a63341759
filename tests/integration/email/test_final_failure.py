"""A batch the engine fails for good before its attempts run out still ends its campaign.

A custom backoff that answers ``-1`` ("do not retry") and a backoff that raises both fail
the job at once, with attempts left. The worker's hooks must take the engine's word for
it: the job becomes a dead letter, the batch counts towards its campaign, the campaign's
``campaign-complete`` job is enqueued, and the monitor records the attempt as final.
Real worker, real Redis, real SMTP sink (answering 451 to every recipient).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from newsletter_queue.campaigns import CampaignProgress, batch_job_id
from newsletter_queue.config import Settings
from newsletter_queue.engine import Job, Worker
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.monitor import QueueMonitor
from newsletter_queue.queues import EMAIL_SEND_BATCH, QueueName
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.store import CampaignRecord

TENANT = "t1"


def give_up(attempts_made: int, kind: str, error: BaseException, job: Job) -> int:
    return -1


def broken(attempts_made: int, kind: str, error: BaseException, job: Job) -> int:
    raise ZeroDivisionError("the strategy itself is broken")


@pytest.fixture
async def services(settings: Settings, sink: SmtpSink) -> AsyncIterator[WorkerServices]:
    opened = await WorkerServices(settings, smtp_url=sink.url).open()
    yield opened
    await opened.close()


@pytest.mark.parametrize(("strategy", "reason"), [
    (give_up, "deferred (will retry)"),
    (broken, "backoff failed: the strategy itself is broken"),
])
async def test_a_batch_failed_for_good_by_its_backoff_is_a_dead_letter_and_completes(
    services: WorkerServices, manager: QueueManager, sink: SmtpSink, settings: Settings,
    strategy: Any, reason: str,
) -> None:
    assert services.store is not None
    campaign = f"camp-{strategy.__name__}"
    await services.store.upsert_campaign(CampaignRecord(
        tenant_id=TENANT, campaign_id=campaign, subject="S", text="Hi {{ name }}"))
    # One batch, as schedule_batch_email_sending plans it, but with a backoff of the
    # worker's own kind (a producer passing its options, e.g. a Node service).
    await CampaignProgress(await manager.client(), settings.key_prefix, TENANT,
                           campaign).set_total(1)
    batch_id = batch_job_id(TENANT, campaign, 0)
    await manager.schedule_email_job(EMAIL_SEND_BATCH, {
        "campaignId": campaign, "tenantId": TENANT,
        "recipients": [{"email": f"r{i}@example.com"} for i in range(3)]},
        {"job_id": batch_id, "attempts": 5, "backoff": {"type": "house-rule"}})
    sink.handler.rules.temp_fail_count = 1000  # every recipient: 451, try again later

    worker = Worker(QueueName.EMAIL, services.registry().router(QueueName.EMAIL),
                    settings=settings, backoff_strategy=strategy)
    services.attach_hooks([worker])  # dead letters, campaign completion, monitor
    failed: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
    # Registered after the services' hooks, so it runs once they are done.
    worker.on("failed", lambda job, error: failed.done() or failed.set_result(job))
    worker.start()
    try:
        job = await asyncio.wait_for(failed, timeout=60)
    finally:
        await worker.close(timeout=10)

    assert job.id == batch_id
    assert job.attempts_made == 1 < job.max_attempts  # attempts were left
    assert reason in (job.failed_reason or "")
    letters = await services.store.list_dead_letters(queue=QueueName.EMAIL)
    assert [(d.job_id, d.attempts) for d in letters] == [(batch_id, 1)]
    complete = await manager.get_job(QueueName.ANALYTICS,
                                     f"campaign-complete-{TENANT}-{campaign}")
    assert complete is not None
    assert complete.data == {"campaignId": campaign, "tenantId": TENANT,
                             "eventType": "campaign-complete"}
    async with QueueMonitor(settings, manager=manager) as monitor:
        [error] = await monitor.get_recent_errors(queue=QueueName.EMAIL)
    assert (error.job_id, error.attempt, error.final) == (batch_id, 1, True)
