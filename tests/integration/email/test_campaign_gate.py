"""The campaign gate of the email processor (real Redis, real SMTP sink): a batch of a
paused campaign parks; one that parked while its campaign was being resumed wakes
itself instead of waiting out ``PAUSE_RECHECK_MS``."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from newsletter_queue.campaigns import CampaignControl
from newsletter_queue.config import Settings
from newsletter_queue.engine.errors import DelayedError
from newsletter_queue.processors.email import PAUSE_RECHECK_MS
from newsletter_queue.services.render import Content
from newsletter_queue.services.sink import SmtpSink
from tests.integration.email.conftest import StandInJob
from tests.integration.email.test_email_processor import batch

EMAILS = ["ann@example.com", "bob@example.com"]


class ResumedWhileParking(StandInJob):
    """A job whose campaign is resumed in the instant between the processor's read of
    the state (paused) and its move to delayed — the window ``wake`` closes."""

    control: CampaignControl | None = None

    async def move_to_delayed(self, timestamp_ms: int) -> None:
        assert self.control is not None
        moved, before = await self.control.move("sending", ("paused",))
        assert (moved, before) == (True, "paused")
        await super().move_to_delayed(timestamp_ms)


async def _paused_campaign(redis_client: aioredis.Redis, settings: Settings,
                           pipeline: Any) -> CampaignControl:
    pipeline.campaigns.content[("t1", "c1")] = Content(subject="S", text="Hi")
    control = CampaignControl(redis_client, settings.key_prefix, "t1", "c1")
    assert await control.start("sending", len(EMAILS), 1, 0) == 1
    await control.mark_enqueued()
    assert await control.move("paused", ("sending",)) == (True, "sending")
    return control


@pytest.mark.parametrize("resumed", [False, True], ids=["still-paused", "resumed-meanwhile"])
async def test_a_parked_batch_wakes_itself_only_if_resumed_meanwhile(
        make_pipeline: Any, redis_client: aioredis.Redis, settings: Settings,
        sink: SmtpSink, resumed: bool) -> None:
    pipeline = make_pipeline()
    woken: list[str] = []

    async def wake(job_id: str) -> bool:
        woken.append(job_id)
        return True

    pipeline.processor.wake = wake
    control = await _paused_campaign(redis_client, settings, pipeline)
    job = (ResumedWhileParking if resumed else StandInJob)("b1", batch("c1", EMAILS))
    if isinstance(job, ResumedWhileParking):
        job.control = control
    before_ms = int(time.time() * 1000)
    with pytest.raises(DelayedError, match="paused"):
        await pipeline.processor(job)
    # Parked either way (no attempt used, nothing sent) …
    assert job.delayed_until is not None
    assert job.delayed_until >= before_ms + PAUSE_RECHECK_MS
    assert sink.handler.accepted == 0
    # … and woken at once only when the campaign is no longer paused.
    assert woken == (["b1"] if resumed else [])
    assert (await control.snapshot()).state == ("sending" if resumed else "paused")
