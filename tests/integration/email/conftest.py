"""Fixtures for the email pipeline: a real SMTP sink on loopback and a real pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis

from newsletter_queue.campaigns import CampaignLifecycle
from newsletter_queue.config import Settings
from newsletter_queue.processors.email import Delivery, EmailProcessor
from newsletter_queue.services.render import Content
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.smtp import SmtpPool
from newsletter_queue.system import System


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as running:
        yield running


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    """A system (no workers yet) whose send rates never hold a test back."""
    fast = settings.model_copy(update={"emails_per_second": 100_000,
                                       "emails_per_second_per_tenant": 100_000})
    running = System(fast, shutdown_timeout=10)
    yield running
    await running.stop()


@pytest.fixture
async def pool(sink: SmtpSink) -> AsyncIterator[SmtpPool]:
    smtp = SmtpPool(sink.url, size=4, timeout=10)
    yield smtp
    await smtp.close()


class Campaigns:
    """An in-memory campaign source (the store's adapter has the same method)."""

    def __init__(self) -> None:
        self.content: dict[tuple[str, str], Content] = {}

    async def get_content(self, tenant_id: str, campaign_id: str) -> Content | None:
        return self.content.get((tenant_id, campaign_id))


class Recorded:
    def __init__(self) -> None:
        self.rows: list[Delivery] = []

    async def record(self, deliveries: Any, *, only_missing: bool = False) -> None:
        known = {(d.tenant_id, d.campaign_id, d.email) for d in self.rows}
        self.rows.extend(d for d in deliveries if not only_missing
                         or (d.tenant_id, d.campaign_id, d.email) not in known)


@dataclass
class StandInJob:
    """The fields and actions of an engine job that the processor uses."""

    id: str
    data: dict[str, Any]
    attempts_made: int = 0
    progress: list[Any] = field(default_factory=list)
    delayed_until: int | None = None

    async def update_progress(self, value: Any) -> None:
        self.progress.append(value)

    async def move_to_delayed(self, timestamp_ms: int) -> None:
        self.delayed_until = timestamp_ms

    async def log(self, text: str) -> int:
        return 0


@dataclass
class Pipeline:
    processor: EmailProcessor
    campaigns: Campaigns
    recorded: Recorded
    completed: list[tuple[str, str]]


@pytest.fixture
async def make_pipeline(settings: Settings, redis_client: aioredis.Redis,
                        pool: SmtpPool) -> AsyncIterator[Any]:
    def make(**overrides: Any) -> Pipeline:
        s = settings.model_copy(update=overrides) if overrides else settings
        campaigns, recorded, completed = Campaigns(), Recorded(), []

        async def on_complete(tenant: str, campaign: str) -> None:
            completed.append((tenant, campaign))

        lifecycle = CampaignLifecycle(redis_client, s.key_prefix, on_complete=on_complete)
        processor = EmailProcessor(s, redis_client, pool, campaigns, deliveries=recorded,
                                   lifecycle=lifecycle)
        made.append(processor)
        return Pipeline(processor, campaigns, recorded, completed)

    made: list[EmailProcessor] = []
    yield make
    for processor in made:
        await processor.close()
