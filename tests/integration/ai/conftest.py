"""Fixtures for the AI tests: the fake OpenAI server, providers on it, recording jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from newsletter_queue.services.ai import OpenAICompatibleProvider
from tests.support.fakeopenai import FakeOpenAI

# Not shaped like an "sk-" key on purpose: the exact value must never leak, whatever
# the generic redaction pattern catches.
API_KEY = "test-key-Zq8v2N5xW1"
MODEL = "test-model-1"


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def provider(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAICompatibleProvider]:
    p = OpenAICompatibleProvider(fake_openai.base_url, SecretStr(API_KEY), MODEL, timeout_s=5)
    yield p
    await p.aclose()


@dataclass
class RecordingJob:
    """The part of an engine ``Job`` the AI processor uses, recording what it did.

    Processor tests call the processor directly with it; ``test_worker_e2e`` runs the
    same processor under a real engine ``Worker``.
    """

    data: Any
    id: str = "job-1"
    name: str = "ai-job"
    attempts_made: int = 0
    progress: list[Any] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    async def update_progress(self, value: Any) -> None:
        self.progress.append(value)

    async def log(self, text: str) -> int:
        self.logs.append(text)
        return len(self.logs)


def ai_job(type_: str, data: dict[str, Any], tenant: str = "tenant-1") -> RecordingJob:
    return RecordingJob({"tenantId": tenant, "type": type_, "data": data})
