"""kill -9 a worker process mid-campaign, start another: nobody is missed, and the
only duplicates are messages that were in flight at the kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter_queue.config import Settings
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.send_ledger import CampaignLedger
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.store import CampaignRecord, Store
from tests.support.helpers import wait_for

WORKER = ("import asyncio\n"
          "from newsletter_queue.config import load_settings\n"
          "from newsletter_queue.launch import run_worker_process\n"
          "asyncio.run(run_worker_process(load_settings(), ['email']))\n")


def _worker(settings: Settings, redis_url: str, smtp_url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NLQ_")}
    env.update({
        "REDIS_URL": redis_url, "SMTP_URL": smtp_url,
        "NLQ_KEY_PREFIX": settings.key_prefix, "NLQ_STATE_DIR": str(settings.state_dir),
        "NLQ_EMAILS_PER_SECOND": "100000", "NLQ_EMAILS_PER_SECOND_PER_TENANT": "100000",
        # Short enough that the killed worker's batches are recovered within seconds, long
        # enough that a healthy worker on a slow, busy machine renews its locks (and its
        # ledger claims, which live as long as the lock) in time: a spurious stall would
        # re-run a live batch, or fail it for stalling twice.
        "NLQ_QUEUES__EMAIL__LOCK_DURATION_MS": "10000",
        "NLQ_QUEUES__EMAIL__STALLED_INTERVAL_MS": "3000",
    })
    return subprocess.Popen([sys.executable, "-c", WORKER], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.timeout(400)  # its waits add up to 310 s on a slow machine
async def test_kill_9_mid_campaign_loses_nobody(
    settings: Settings, manager: QueueManager, sink: SmtpSink, redis_url: str,
    tmp_path: Path,
) -> None:
    async with Store.from_settings(settings) as store:
        await store.init()
        await store.upsert_campaign(CampaignRecord(
            tenant_id="t1", campaign_id="crash", subject="S {{ name }}",
            text="Hello {{ name }}"))
    recipients = [{"email": f"r{i}@example.com", "name": f"R{i}"} for i in range(5000)]
    await manager.schedule_batch_email_sending("crash", "t1", recipients, 100)
    ledger = CampaignLedger(await manager.client(), settings.key_prefix, "t1", "crash")
    counts = sink.handler.counts

    first = _worker(settings, redis_url, sink.url)
    try:
        async def quarter_sent() -> bool:
            return sum(counts.values()) >= 1250

        await wait_for(quarter_sent, timeout=120, interval=0.005,
                       message="a quarter of the campaign to be delivered")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    in_flight = (await ledger.counts()).pending  # claimed, outcome unknown at the kill
    delivered_at_kill = sum(counts.values())

    second = _worker(settings, redis_url, sink.url)
    try:
        async def all_delivered() -> bool:
            return len(counts) >= 5000

        await wait_for(all_delivered, timeout=120, interval=0.05,
                       message="every recipient to receive the campaign")
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=60)
    finally:
        if second.poll() is None:
            second.kill()
    duplicates = sink.handler.duplicates()
    print(f"\nkill -9 after {delivered_at_kill} delivered: in flight {in_flight}, "
          f"duplicates {duplicates}, missing {5000 - len(counts)}")
    assert second.returncode == 0, err.decode()[-2000:]
    assert len(counts) == 5000
    assert sink.handler.missing(r["email"] for r in recipients) == []
    assert duplicates <= in_flight
    final = await ledger.counts()
    assert (final.sent, final.pending) == (5000, 0)
    # Every recipient has a delivery row, including those whose row the killed process
    # never wrote (filled in by the batch's next attempt).
    async with Store.from_settings(settings) as store:
        assert await store.count_deliveries("t1", "crash", "sent") == 5000
