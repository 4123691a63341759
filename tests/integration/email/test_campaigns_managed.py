"""``manager.campaigns`` with real workers, the SMTP sink and the records store (each test
on SQLite and on PostgreSQL): pause, resume, cancel and scheduling asserted at the sink,
and the recipient lookups.

A campaign is caught mid-send deterministically by holding the sink's answer to DATA
once some messages were accepted (``HeldSink``): the test acts while messages are in
flight, then lets them through.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from newsletter_queue.campaigns import CampaignStatus, batch_job_id
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.processors.email import PAUSE_RECHECK_MS
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.system import System
from tests.support.helpers import wait_for
from tests.support.postgres import BOTH_STORES

pytestmark = BOTH_STORES  # each test on SQLite and on PostgreSQL

BATCHES, BATCH = 4, 100  # 2 chunks of 50 per batch: each batch passes the gate twice
ALL = [f"reader{i}@example.com" for i in range(BATCHES * BATCH)]


class HeldSink:
    """Holds the sink's answer to DATA once ``after`` messages were accepted, until
    ``release()``: the campaign is then mid-send, with messages in flight."""

    def __init__(self, sink: SmtpSink, after: int) -> None:
        self.held = asyncio.Event()
        self._open = asyncio.Event()
        handler = sink.handler
        original = handler.handle_DATA

        async def held(server: Any, session: Any, envelope: Any) -> str:
            if handler.accepted >= after and not self._open.is_set():
                self.held.set()
                await self._open.wait()
            return await original(server, session, envelope)

        handler.handle_DATA = held  # type: ignore[method-assign]

    def release(self) -> None:
        self._open.set()


@pytest.fixture
async def services(system: System, sink: SmtpSink) -> WorkerServices:
    opened = await WorkerServices(system.settings, smtp_url=sink.url).open()
    workers = system.start_workers(opened.registry(), ["email", "analytics"])
    opened.attach_hooks(workers)
    system.close_later(opened.close)  # after its workers
    return opened


async def _start_campaign(manager: QueueManager, campaign: str = "june") -> None:
    await manager.campaigns.save("t1", campaign, subject="News for {{ name }}",
                                 text="Dear {{ name }}", from_addr="News <n@example.com>")
    result = await manager.campaigns.send(
        "t1", campaign, [{"email": e, "name": e.split("@")[0]} for e in ALL],
        batch_size=BATCH)
    assert (result.created, result.batches) == (True, BATCHES)


async def _finished(manager: QueueManager, campaign: str = "june") -> CampaignStatus:
    async def probe() -> CampaignStatus | None:
        status = await manager.campaigns.status("t1", campaign)
        return status if status.finished and status.stats is not None else None

    return await wait_for(probe, timeout=120, message="the campaign and its stats")


async def _all_parked(manager: QueueManager) -> bool:
    """Every batch is completed or parked by the pause (delayed well into the future)."""
    delayed_key = manager.keys("email").delayed
    client = await manager.client()
    now_ms = time.time() * 1000
    for index in range(BATCHES):
        job_id = batch_job_id("t1", "june", index)
        state = await (await manager.queue("email")).getJobState(job_id)
        if state == "completed":
            continue
        score = await client.zscore(delayed_key, job_id)
        # the delayed set's score is the due time in ms shifted left by 12 bits
        if state != "delayed" or score is None or \
                (int(score) >> 12) < now_ms + PAUSE_RECHECK_MS / 3:
            return False
    return True


@pytest.mark.timeout(300)
async def test_pause_sends_nothing_more_until_resume_then_each_recipient_once(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink) -> None:
    held = HeldSink(sink, after=30)
    await _start_campaign(manager)
    await asyncio.wait_for(held.held.wait(), 60)
    paused = await manager.campaigns.pause("t1", "june")
    assert paused.state == "paused"
    held.release()  # the messages in flight are accepted; then every batch parks

    await wait_for(lambda: _all_parked(manager), timeout=60, message="batches parked")
    at_pause = sum(sink.handler.counts.values())
    assert 30 <= at_pause < len(ALL)
    status = await manager.campaigns.status("t1", "june")
    assert (status.state, status.sent, status.pending) == (
        "paused", at_pause, len(ALL) - at_pause)
    # Parked batches used no attempt.
    for index in range(BATCHES):
        info = await manager.get_job("email", batch_job_id("t1", "june", index))
        assert info is not None
        assert info.attempts_made == 0 or info.state == "completed"
    assert sum(sink.handler.counts.values()) == at_pause  # still nothing more

    resumed = await manager.campaigns.resume("t1", "june")
    assert resumed.state == "sending"
    # Promoted at once: well before a parked batch would have looked again by itself.
    await asyncio.wait_for(sink.handler.wait_for_total(len(ALL)), PAUSE_RECHECK_MS / 2000)
    done = await _finished(manager)
    assert sorted(sink.handler.counts) == sorted(ALL)
    assert set(sink.handler.counts.values()) == {1}
    assert (done.state, done.sent, done.pending, done.batches_done) == (
        "completed", len(ALL), 0, BATCHES)
    assert done.stats is not None
    assert done.stats.sent == len(ALL)


@pytest.mark.timeout(300)
async def test_cancel_sends_nothing_more_and_campaign_complete_still_runs(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink) -> None:
    held = HeldSink(sink, after=30)
    await _start_campaign(manager)
    await asyncio.wait_for(held.held.wait(), 60)
    cancelled = await manager.campaigns.cancel("t1", "june")
    assert cancelled.state == "cancelled"
    held.release()

    done = await _finished(manager)
    delivered = sum(sink.handler.counts.values())
    assert 30 <= delivered < len(ALL)
    assert set(sink.handler.counts.values()) == {1}
    assert (done.state, done.sent, done.batches_done) == ("cancelled", delivered, BATCHES)
    assert done.stats is not None
    assert done.stats.sent == delivered  # campaign-complete counted what was sent
    results = []
    for index in range(BATCHES):
        info = await manager.get_job("email", batch_job_id("t1", "june", index))
        assert info is not None
        assert info.state == "completed"  # every batch is finished: none can send later
        results.append(info.return_value)
    assert any(r.get("cancelled") for r in results)
    assert sum(r["sent"] for r in results) == delivered
    analytics = await manager.get_queue_stats("analytics")
    assert analytics.completed == 1


@pytest.mark.timeout(120)
async def test_a_scheduled_campaign_sends_nothing_before_its_time(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink) -> None:
    await manager.campaigns.save("t1", "later", subject="S", text="Hi")
    send_at = datetime.now(UTC) + timedelta(hours=1)
    result = await manager.campaigns.send(
        "t1", "later", [{"email": e} for e in ALL[:50]], send_at=send_at, batch_size=25)
    assert result.state == "scheduled"
    for index in range(2):
        info = await manager.get_job("email", batch_job_id("t1", "later", index))
        assert info is not None
        assert info.state == "delayed"  # with the workers running
        assert info.timestamp is not None
        assert abs(info.timestamp + info.delay - send_at.timestamp() * 1000) < 1000
    assert (await manager.campaigns.status("t1", "later")).state == "scheduled"
    assert sink.handler.accepted == 0

    # Cancelling it runs its batches at once, sending nothing; the stats still come.
    await manager.campaigns.cancel("t1", "later")
    done = await _finished(manager, "later")
    assert (done.state, done.sent, done.batches_done) == ("cancelled", 0, 2)
    assert sink.handler.accepted == 0


@pytest.mark.timeout(120)
async def test_a_recipient_lookup_gives_the_servers_answer(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink) -> None:
    sink.handler.rules.reject = {"gone@example.com"}
    for campaign in ("may", "june"):
        await manager.campaigns.save("t1", campaign, subject="S", text="Hi")
        await manager.campaigns.send("t1", campaign, [
            {"email": "Alice@example.com"}, {"email": "gone@example.com"},
            {"email": "bob@example.com"}])
        done = await _finished(manager, campaign)
        assert (done.sent, done.bounced, done.pending) == (2, 1, 0)

    alice = await manager.campaigns.recipient("t1", "june", "alice@EXAMPLE.com")
    assert alice is not None
    assert (alice.status, alice.smtp_code, alice.attempt) == ("sent", 250, 1)
    assert alice.smtp_response is not None
    assert "accepted" in alice.smtp_response.lower()
    assert alice.message_id in sink.handler.message_ids
    assert alice.created_at is not None
    gone = await manager.campaigns.recipient("t1", "june", "gone@example.com")
    assert gone is not None
    assert (gone.status, gone.smtp_code) == ("bounced", 550)
    assert "user unknown" in (gone.smtp_response or "")
    assert await manager.campaigns.recipient("t1", "june", "nobody@example.com") is None
    history = await manager.campaigns.recipient_history("t1", "alice@example.com")
    assert [d.campaign_id for d in history] == ["june", "may"]
