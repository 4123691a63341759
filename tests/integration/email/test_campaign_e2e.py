"""End to end: QueueManager → engine workers → email processor → SMTP sink → store →
campaign-complete → stats, each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest

from newsletter_queue.config import Settings
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.store import CampaignRecord
from newsletter_queue.system import System
from tests.support.helpers import wait_for, wait_for_sink_total
from tests.support.postgres import BOTH_STORES

pytestmark = BOTH_STORES  # each test on SQLite and on PostgreSQL


@pytest.fixture
async def services(system: System, sink: SmtpSink) -> WorkerServices:
    opened = await WorkerServices(system.settings, smtp_url=sink.url).open()
    system.close_later(opened.close)  # after its workers
    return opened


def _start(system: System, services: WorkerServices) -> None:
    workers = system.start_workers(services.registry(), ["email", "analytics"])
    services.attach_hooks(workers)


# About 25 s here. The send is waited for while it progresses (a stall of 120 s fails it);
# the hard cap only stops a run that crawls for half an hour.
@pytest.mark.timeout(1800)
async def test_10000_recipients_each_get_one_personalised_message(
    system: System, services: WorkerServices, manager: QueueManager, sink: SmtpSink
) -> None:
    assert services.store is not None
    await services.store.upsert_campaign(CampaignRecord(
        tenant_id="t1", campaign_id="big", subject="News for {{ name }}",
        text="Dear {{ name }}, your number is {{ personalizations.n }}.",
        from_addr="News <news@example.com>"))
    recipients = [{"email": f"reader{i}@example.com", "name": f"Reader {i}",
                   "personalizations": {"n": i}} for i in range(10_000)]
    jobs = await manager.schedule_batch_email_sending("big", "t1", recipients, 100)
    assert len(jobs) == 100
    _start(system, services)

    await wait_for_sink_total(sink.handler, 10_000)
    counts = sink.handler.counts
    assert len(counts) == 10_000
    assert set(counts.values()) == {1}
    for message in sink.handler.recent:  # the last 1,000 messages, fully checked
        n = int(message.rcpt_tos[0].removeprefix("reader").split("@")[0])
        assert message.subject == f"News for Reader {n}"
        assert re.search(rf"Dear Reader {n}, your number is {n}\.", message.text)

    async def stats() -> Any:
        assert services.store is not None
        return await services.store.get_campaign_stats("t1", "big")

    row = await wait_for(stats, timeout=60, message="campaign stats row")
    assert row.sent == sum(counts.values()) == 10_000
    assert (row.failed, row.bounced) == (0, 0)

    # The last batch triggers campaign-complete from inside its processor, so BullMQ can
    # mark it completed after the stats row exists.
    async def all_batches_completed() -> bool:
        return (await manager.get_queue_stats("email")).completed == 100

    await wait_for(all_batches_completed, timeout=60, message="100 completed email jobs")
    # Exactly one campaign-complete job was enqueued.
    analytics = await manager.get_queue_stats("analytics")
    assert analytics.completed + analytics.waiting + analytics.active == 1


async def test_550_recipients_bounce_others_are_delivered(
    system: System, services: WorkerServices, manager: QueueManager, sink: SmtpSink
) -> None:
    sink.handler.rules.reject_if = lambda address: address.startswith("gone")
    emails = [f"gone{i}@example.com" for i in range(5)] + [
        f"ok{i}@example.com" for i in range(45)]
    await manager.schedule_email_job("transactional", {
        "campaignId": "tx", "tenantId": "t1",
        "recipients": [{"email": e} for e in emails],
        "content": {"subject": "Receipt", "text": "Thanks"}})
    _start(system, services)
    done = await wait_for(lambda: manager.get_jobs("email", "completed"), timeout=30,
                          message="the email job to complete")
    assert done[0].return_value["sent"] == 45
    assert done[0].return_value["bounced"] == 5
    assert sorted(sink.handler.counts) == sorted(emails[5:])
    assert services.store is not None
    bounced = await services.store.list_deliveries("t1", "tx", "bounced")
    assert sorted(d.email for d in bounced) == sorted(emails[:5])


@pytest.mark.timeout(360)  # see the wait below
async def test_451_opens_the_circuit_then_everything_is_delivered_once(
    settings: Settings, sink: SmtpSink, manager: QueueManager
) -> None:
    fast = settings.model_copy(update={
        "emails_per_second": 100_000, "emails_per_second_per_tenant": 100_000,
        "smtp_breaker_threshold": 3, "smtp_breaker_cooldown_ms": 500,
        "queues": {**settings.queues, "email": settings.queues["email"].model_copy(
            update={"attempts": 10})}})
    services = await WorkerServices(fast, smtp_url=sink.url).open()
    system = System(fast, shutdown_timeout=10)
    try:
        assert services.store is not None
        await services.store.upsert_campaign(CampaignRecord(
            tenant_id="t1", campaign_id="flaky", subject="S", text="Hi {{ name }}"))
        sink.handler.rules.temp_fail_count = 40  # the server answers 451 for a while
        recipients = [{"email": f"u{i}@example.com", "name": f"U{i}"} for i in range(200)]
        await manager.schedule_batch_email_sending("flaky", "t1", recipients, 20)
        _start(system, services)
        # A few seconds, unless a job asks the breaker while its half-open probe is in
        # flight: that job is told to wait out the probe's TTL (30 s, CircuitBreaker's
        # default) and the whole queue pauses that long, even though the probe succeeds
        # at once. It can happen at each opening, depending on how the jobs interleave
        # (more often on a slow machine): room for several.
        await wait_for_sink_total(sink.handler, 200)
        status = await services.email.breaker.status() if services.email else None
        assert status is not None
        assert status.opened_count >= 1  # it opened …
        assert status.state == "closed"  # … and closed again after a good probe
        assert sink.handler.duplicates() == 0
        assert len(sink.handler.counts) == 200
        assert sink.handler.refused_transient == 40
    finally:
        await system.stop()
        await services.close()


async def test_transactional_mail_overtakes_a_running_campaign(
    settings: Settings, sink: SmtpSink, manager: QueueManager
) -> None:
    one_at_a_time = settings.model_copy(update={
        "emails_per_second": 100_000, "emails_per_second_per_tenant": 100_000,
        "queues": {**settings.queues, "email": settings.queues["email"].model_copy(
            update={"concurrency": 1})}})
    services = await WorkerServices(one_at_a_time, smtp_url=sink.url).open()
    system = System(one_at_a_time, shutdown_timeout=10)
    try:
        assert services.store is not None
        await services.store.upsert_campaign(CampaignRecord(
            tenant_id="t1", campaign_id="bulk", subject="S", text="Hi {{ name }}"))
        recipients = [{"email": f"bulk{i}@example.com"} for i in range(400)]
        batches = await manager.schedule_batch_email_sending("bulk", "t1", recipients, 10)
        _start(system, services)

        async def campaign_running() -> bool:
            return sum(sink.handler.counts.values()) >= 20

        await wait_for(campaign_running, timeout=30, interval=0.002)
        tx = await manager.schedule_email_job("transactional", {
            "campaignId": "receipt-1", "tenantId": "t1",
            "recipients": [{"email": "buyer@example.com"}],
            "content": {"subject": "Your receipt", "text": "Thanks"}})
        # The batches still queued once the transactional job exists (one ZRANGE, read
        # after the add): however long this coroutine was starved before the add, each
        # of them was fetched after it, so each must start after it.
        queued = {j.id for j in await manager.get_jobs("email", "prioritized", 0, -1)}
        queued.discard(tx.id)
        assert queued, "the campaign was fully fetched before the transactional job came"
        await wait_for_sink_total(sink.handler, 401)
        tx_info = await manager.get_job("email", tx.id)
        assert tx_info is not None
        assert tx_info.processed_on is not None
        started_before = []
        for batch in batches:
            info = await manager.get_job("email", batch.id)
            assert info is not None
            assert info.processed_on is not None
            if batch.id in queued and info.processed_on < tx_info.processed_on:
                started_before.append(batch.id)
        # FIFO would serve every queued batch first; the priority serves none of them.
        assert started_before == []
    finally:
        await system.stop()
        await services.close()
