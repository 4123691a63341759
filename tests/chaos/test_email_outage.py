"""A Redis outage between the SMTP server accepting a message and the ledger recording
it: the worker process is alive and knows the message went out, so it should record it
once Redis is back rather than leave the claim to expire and the message to be re-sent.

Found by the long-outage scenario: every claim pending when Redis stopped (198 of 198 in
a 10 s outage) became a duplicate email, although no process crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from newsletter_queue.processors.email import EmailProcessor
from newsletter_queue.services.ledger import CampaignLedger
from newsletter_queue.services.smtp import SmtpPool
from tests.chaos.harness import PREFIX, TENANT, Stage
from tests.chaos.scenarios import AOF_ARGS

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]


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


async def test_a_message_accepted_while_redis_is_down_is_recorded_when_it_is_back(
        tmp_path: Path) -> None:
    async with Stage(tmp_path, redis_args=AOF_ARGS) as stage:
        assert stage.sink is not None
        client = stage.redis.client()
        pool = SmtpPool(stage.sink.url, size=1, timeout=10)
        back: list[asyncio.Task[float]] = []

        async def restart_soon() -> float:
            await asyncio.sleep(1.0)  # the outage's length
            return await stage.redis.start()

        class OutageAfterAccept:
            """Sends, then takes Redis away the instant the server has accepted."""

            async def send(self, sender: str, recipient: str, message: bytes) -> str:
                reply = await pool.send(sender, recipient, message)
                await stage.redis.stop()
                back.append(asyncio.create_task(restart_soon()))
                return reply

        async def no_campaign(tenant_id: str, campaign_id: str) -> None:
            return None

        source = type("Source", (), {"get_content": staticmethod(no_campaign)})()
        processor = EmailProcessor(stage.settings, client, OutageAfterAccept(), source)
        job = _Job("b1", {"campaignId": "c1", "tenantId": TENANT,
                          "recipients": [{"email": "one@example.com"}],
                          "content": {"subject": "Hi", "text": "Hello"}})
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(processor(job), 30)
            await asyncio.gather(*back)
            await client.connection_pool.disconnect()
            status = await CampaignLedger(client, PREFIX, TENANT, "c1").status(
                "one@example.com")
        finally:
            await pool.close()
            await client.aclose()
    assert status == "sent"
