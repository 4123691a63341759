"""A Redis outage between the SMTP server accepting a message and the ledger recording
it: the worker process is alive and knows the message went out, so it should record it
once Redis is back rather than leave the claim to expire and the message to be re-sent.

Found by the long-outage scenario: every claim pending when Redis stopped (198 of 198 in
a 10 s outage) became a duplicate email, although no process crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from newsletter_queue.processors.email import EmailProcessor
from newsletter_queue.services.send_ledger import CampaignLedger
from newsletter_queue.services.smtp import SmtpPool
from tests.chaos.harness import PREFIX, TENANT, Stage
from tests.chaos.redis_scenarios import AOF_ARGS

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


@dataclass
class _Job:
    id: str
    data: dict[str, Any]
    attempts_made: int = 0
    progress: list[Any] = field(default_factory=list)

    async def update_progress(self, value: Any) -> None:
        self.progress.append(value)

    async def move_to_delayed(self, timestamp_ms: int) -> None:
        raise AssertionError("not expected to park")

    async def log(self, text: str) -> int:
        return 0


async def _outage_after_accept(
    tmp_path: Path, recipients: int, outage_s: float, claim_ttl_ms: int | None = None,
    *, rerun_on_return: bool = False,
) -> tuple[list[str | None], list[int]]:
    """Send one batch; Redis stops the instant the first message is accepted and comes
    back ``outage_s`` later — with ``rerun_on_return``, the batch's next attempt starts
    right then (what the stalled check does once the lock has expired). Returns each
    recipient's ledger status afterwards, and how many messages the sink got for each."""
    async with Stage(tmp_path, redis_args=AOF_ARGS) as stage:
        assert stage.sink is not None
        settings = stage.settings
        if claim_ttl_ms is not None:  # a claim lives as long as the email queue's lock
            email = settings.queues["email"].model_copy(
                update={"lock_duration_ms": claim_ttl_ms})
            settings = settings.model_copy(update={"queues": {**settings.queues,
                                                              "email": email}})
        client = stage.redis.client()
        pool = SmtpPool(stage.sink.url, size=4, timeout=10)
        back: list[asyncio.Task[float]] = []
        reruns: list[asyncio.Task[Any]] = []

        async def restart_soon() -> float:
            await asyncio.sleep(outage_s)  # the outage's length
            up = await stage.redis.start()
            if rerun_on_return:
                again = _Job("b1", job.data, attempts_made=1)
                reruns.append(asyncio.create_task(processor(again)))
            return up

        class OutageAfterAccept:
            """Sends; takes Redis away the instant the server accepted the first one."""

            async def send(self, sender: str, recipient: str, message: bytes) -> str:
                reply = await pool.send(sender, recipient, message)
                if not back:
                    back.append(asyncio.create_task(restart_soon()))
                    await stage.redis.stop()
                return reply

        async def no_campaign(tenant_id: str, campaign_id: str) -> None:
            return None

        source = type("Source", (), {"get_content": staticmethod(no_campaign)})()
        processor = EmailProcessor(settings, client, OutageAfterAccept(), source)
        emails = [f"r{i}@example.com" for i in range(recipients)]
        job = _Job("b1", {"campaignId": "c1", "tenantId": TENANT,
                          "recipients": [{"email": e} for e in emails],
                          "content": {"subject": "Hi", "text": "Hello"}})
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(processor(job), 30 + outage_s)
            await asyncio.gather(*back)
            await asyncio.gather(*reruns, return_exceptions=True)
            await client.connection_pool.disconnect()
            ledger = CampaignLedger(client, PREFIX, TENANT, "c1")
            statuses = [await ledger.status(e) for e in emails]
        finally:
            await processor.close()
            await pool.close()
            await client.aclose()
        sink = await stage.sink.stop()
    return statuses, [sink.counts.get(e, 0) for e in emails]


async def test_a_message_accepted_while_redis_is_down_is_recorded_when_it_is_back(
        tmp_path: Path) -> None:
    assert await _outage_after_accept(tmp_path, 1, outage_s=1.0) == (["sent"], [1])


async def test_an_outage_longer_than_the_claim_still_records_every_message_quietly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="newsletter_queue.processors.acceptances"):
        statuses, received = await _outage_after_accept(tmp_path, 20, outage_s=3.0,
                                                        claim_ttl_ms=1000)
    warnings = [r for r in caplog.records if r.name == "newsletter_queue.processors.acceptances"]
    assert statuses == ["sent"] * 20
    assert received == [1] * 20
    assert len(warnings) <= 1, [r.getMessage() for r in warnings]


async def test_a_rerun_right_after_the_outage_does_not_resend_what_was_accepted(
        tmp_path: Path) -> None:
    statuses, received = await _outage_after_accept(
        tmp_path, 20, outage_s=2.5, claim_ttl_ms=1000, rerun_on_return=True)
    assert statuses == ["sent"] * 20
    assert received == [1] * 20
