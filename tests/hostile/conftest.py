"""The whole worker side, running, for hostile-input tests: ``WorkerServices`` with the
dev SMTP sink and engine workers on every queue, plus helpers that wait for a job to end
and check that no worker crashed and that a normal job still completes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from newsletter_queue.config import Settings
from newsletter_queue.engine import Worker
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.snapshots import JobInfo
from newsletter_queue.system import System
from tests.support.helpers import wait_for

# What the engine logs when a task of a worker dies, a worker stops, or a slot meets an
# exception it did not expect: a "crash", for these tests.
CRASH_MARKERS = ("died", "stopped with an error", "unexpected error", "stopped unexpectedly")


@dataclass
class Engine:
    settings: Settings
    manager: QueueManager
    services: WorkerServices
    sink: SmtpSink
    workers: list[Worker]
    caplog: pytest.LogCaptureFixture

    async def finished(self, queue: str, job_id: str, timeout: float = 15.0) -> JobInfo:
        """Wait until the job is completed or failed; return it."""
        async def probe() -> bool:
            info = await self.manager.get_job(queue, job_id)
            return info is not None and info.state in ("completed", "failed")

        await wait_for(probe, timeout=timeout, message=f"job {job_id} of {queue}")
        # get_job reads the hash before the state: read again now that it is final.
        info = await self.manager.get_job(queue, job_id)
        assert info is not None
        return info

    async def assert_alive(self) -> None:
        """0 crashes: every worker runs, nothing crash-like was logged, and a normal job
        added now is processed to the end (mail at the sink)."""
        assert all(w.is_running for w in self.workers)
        crashes = [r.getMessage() for r in self.caplog.records
                   if r.name.startswith("newsletter_queue") and r.levelno >= logging.ERROR
                   and any(m in r.getMessage() for m in CRASH_MARKERS)]
        assert crashes == []
        before = self.sink.handler.counts.get("alive@example.com", 0)
        job = await self.manager.schedule_email_job("transactional", {
            "campaignId": "alive", "tenantId": "t-alive",
            "recipients": [{"email": "alive@example.com"}],
            "content": {"subject": "Still here", "text": "ok"}})
        done = await self.finished("email", job.id)
        assert done.state == "completed", done.failed_reason
        assert self.sink.handler.counts["alive@example.com"] == before + 1



@pytest.fixture
async def engine(settings: Settings, caplog: pytest.LogCaptureFixture
                 ) -> AsyncIterator[Engine]:
    caplog.set_level(logging.INFO, logger="newsletter_queue")
    fast = settings.model_copy(update={"emails_per_second": 100_000,
                                       "emails_per_second_per_tenant": 100_000})
    async with SmtpSink() as sink, QueueManager(fast) as manager:
        services = await WorkerServices(fast, smtp_url=sink.url).open()
        system = System(fast, shutdown_timeout=10)
        try:
            workers = system.start_workers(services.registry())
            services.attach_hooks(workers)
            yield Engine(fast, manager, services, sink, workers, caplog)
        finally:
            await system.stop()
            await services.close()
