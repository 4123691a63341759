"""QueueManager: enqueue email, analytics and AI jobs; administer the queues.

The producer façade. Jobs go through the ``bullmq`` package's ``Queue`` (BullMQ's own
Lua scripts), so every job is stored exactly as Node BullMQ would store it and can be
processed or displayed by Node tools too. Around it live, each in its own module: the
connection and queues (``backend.QueueBackend``, which this class is), the job options
(``job_options``), the workarounds for adding through ``bullmq`` (``enqueue``) and every
read and administrative operation (``admin.QueueAdmin``, as ``manager.admin``; the
admin methods here are one line each over it), and campaign management
(``campaigns.Campaigns``, as ``manager.campaigns``).

Use it as an async context manager, or the lazily created module-level
``newsletter_queue.queue_manager`` (built from the environment on first use)::

    async with QueueManager(load_settings()) as manager:
        await manager.schedule_batch_email_sending("c-1", "t-1", recipients)
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .admin import QueueAdmin
from .backend import QueueBackend
from .campaigns import CampaignLifecycle, Campaigns, plan_campaign
from .config import Settings
from .engine.states import CleanState
from .enqueue import add_bulk
from .errors import FieldError, JobValidationError
from .job_options import MAX_PRIORITY as MAX_PRIORITY
from .job_options import JobOptions, to_bullmq_options
from .jobs import (
    INBOUND_MAX_BYTES,
    AIJobData,
    AnalyticsJobData,
    EmailJobData,
    InboundMessageData,
    Recipient,
    TrackingEvent,
    field_errors,
    validate_job,
)
from .queues import (
    ANALYTICS_DAILY_AGGREGATION,
    ANALYTICS_INBOUND_MESSAGE,
    EMAIL_BULK_PRIORITY,
    EMAIL_SEND_BATCH,
    QueueName,
)
from .services.store import DeadLetterRecord, EventRecord
from .snapshots import EnqueuedJob, HealthCheck, JobInfo, QueueStats
from .suppressions import Suppressions

__all__ = ["MAX_PRIORITY", "JobOptions", "QueueManager", "to_bullmq_options"]

_EVENTS = TypeAdapter(list[TrackingEvent])


def daily_scheduler_id(tenant_id: str) -> str:
    return f"daily-aggregation-{tenant_id}"


class QueueManager(QueueBackend):
    """High-level interface for scheduling jobs and managing the three queues."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self.admin = QueueAdmin(self)
        self.campaigns = Campaigns(self)
        """Save, send, watch, pause, resume and cancel campaigns (``campaigns.Campaigns``)."""
        self.suppressions = Suppressions(self)
        """The addresses a tenant's campaigns never mail (``suppressions.Suppressions``)."""

    # --- producers ---------------------------------------------------------------------
    async def schedule_email_job(
        self,
        name: str,
        data: EmailJobData | Mapping[str, Any],
        opts: JobOptions | None = None,
    ) -> EnqueuedJob:
        """Enqueue one email job (a batch, or a transactional message with a priority)."""
        model = validate_job(EmailJobData, data, self.settings.job_limits)
        return await self.add_job(QueueName.EMAIL, name, model.to_wire(), opts)

    async def schedule_analytics_job(
        self,
        name: str,
        data: AnalyticsJobData | InboundMessageData | Mapping[str, Any],
        opts: JobOptions | None = None,
    ) -> EnqueuedJob:
        """Enqueue an analytics job (``campaign-complete`` or ``daily-aggregation``, or an
        ``inbound-message`` with ``InboundMessageData``)."""
        limits = self.settings.job_limits
        model: AnalyticsJobData | InboundMessageData = (
            validate_job(InboundMessageData, data, limits)
            if name == ANALYTICS_INBOUND_MESSAGE
            else validate_job(AnalyticsJobData, data, limits))
        return await self.add_job(QueueName.ANALYTICS, name, model.to_wire(), opts)

    async def schedule_inbound_message(self, raw: bytes, *, rcpt: str | None = None
                                       ) -> EnqueuedJob:
        """Enqueue a message that came back to a bounce address (a DSN or an ARF
        report) for the ``inbound-message`` job. A message over ``INBOUND_MAX_BYTES`` is
        cut to it. The job id is the message's hash, so the same message handed over
        twice (an MTA retrying its pipe) is one job while that job is kept; completed
        ones are kept an hour at most (they carry the whole message).

        Raises:
            JobValidationError: ``rcpt`` holds a line break or NUL, or is too long.
        """
        truncated = len(raw) > INBOUND_MAX_BYTES
        kept = raw[:INBOUND_MAX_BYTES]
        digest = hashlib.sha256(kept + b"\0" + (rcpt or "").encode()).hexdigest()[:32]
        data = validate_job(InboundMessageData, {  # a bad rcpt: JobValidationError (422)
            "message": base64.b64encode(kept).decode("ascii"), "rcpt": rcpt or None,
            "truncated": truncated}, self.settings.job_limits)
        return await self.schedule_analytics_job(
            ANALYTICS_INBOUND_MESSAGE, data,
            {"job_id": f"inbound-{digest}",
             "remove_on_complete": {"age": 3600, "count": 200}})

    async def schedule_ai_job(
        self,
        name: str,
        data: AIJobData | Mapping[str, Any],
        opts: JobOptions | None = None,
    ) -> EnqueuedJob:
        """Enqueue an AI job (content generation, subject optimisation, insights)."""
        model = validate_job(AIJobData, data, self.settings.job_limits)
        return await self.add_job(QueueName.AI, name, model.to_wire(), opts)

    async def schedule_batch_email_sending(
        self,
        campaign_id: str,
        tenant_id: str,
        recipients: Iterable[Recipient | Mapping[str, Any]],
        batch_size: int | None = None,
        *,
        name: str = EMAIL_SEND_BATCH,
        priority: int | None = None,
    ) -> list[EnqueuedJob]:
        """Split a campaign's recipients into batch jobs added with one bulk call.

        Batches get ``EMAIL_BULK_PRIORITY`` unless ``priority`` is given, so that
        transactional mail scheduled with ``schedule_email_job`` overtakes a running
        campaign.

        Job ids are deterministic per (tenant, campaign, batch index), so calling this
        twice for the same campaign enqueues nothing new while the first jobs exist.
        (The email processor's per-campaign ledger additionally guarantees one message
        per recipient even if a finished batch was already removed and is re-added.)
        """
        plan = plan_campaign(self.settings, campaign_id, tenant_id, recipients, batch_size)
        jobs = plan.jobs(
            to_bullmq_options({"priority": EMAIL_BULK_PRIORITY if priority is None else priority}),
            self.settings.job_limits.max_payload_bytes, name)
        async with self.redis() as client:
            # The total is stored first, so no batch can finish before it is known.
            await CampaignLifecycle(client, self.settings.key_prefix).planned(plan)
            added = await add_bulk(client, await self.queue(QueueName.EMAIL), jobs)
        return [
            EnqueuedJob(str(job.id), name, str(QueueName.EMAIL), spec["data"], dict(job.opts))
            for job, spec in zip(added, jobs, strict=True)
        ]

    async def schedule_recurring_analytics(
        self,
        tenant_id: str,
        *,
        cron: str | None = None,
        every_ms: int | None = None,
        tz: str = "UTC",
    ) -> str:
        """Schedule the tenant's ``daily-aggregation`` (a BullMQ job scheduler).

        Daily at 02:00 in ``tz`` by default; pass ``cron`` or ``every_ms`` to change it.
        Idempotent per tenant: calling again updates the one scheduler. Returns its id.
        """
        if cron and every_ms:
            raise JobValidationError("RecurringAnalytics", [
                FieldError("cron", "give cron or every_ms, not both")])
        if every_ms is not None and every_ms < 1000:
            raise JobValidationError("RecurringAnalytics", [
                FieldError("every_ms", "must be at least 1000 ms")])
        data = validate_job(AnalyticsJobData, {
            "campaignId": "all", "tenantId": tenant_id, "eventType": ANALYTICS_DAILY_AGGREGATION,
        }, self.settings.job_limits)
        repeat: dict[str, Any] = {"every": every_ms} if every_ms else {
            "pattern": cron or "0 2 * * *", "tz": tz}
        scheduler_id = daily_scheduler_id(tenant_id)
        async with self.redis():
            queue = await self.queue(QueueName.ANALYTICS)
            try:
                await queue.upsertJobScheduler(
                    scheduler_id, repeat, ANALYTICS_DAILY_AGGREGATION, data.to_wire(), {})
            except (ValueError, KeyError) as exc:
                raise JobValidationError("RecurringAnalytics", [
                    FieldError("cron" if cron else "every_ms", str(exc))]) from exc
        return scheduler_id

    async def remove_recurring_analytics(self, tenant_id: str) -> bool:
        """Remove the tenant's scheduler. Returns whether one existed."""
        async with self.redis():
            queue = await self.queue(QueueName.ANALYTICS)
            return bool(await queue.removeJobScheduler(daily_scheduler_id(tenant_id)) == 0)

    # --- records ---------------------------------------------------------------------
    async def record_events(
        self, events: Iterable[TrackingEvent | Mapping[str, Any]]
    ) -> int:
        """Record recipients' events (opens, clicks …) in one batched insert.

        Every event is validated first; one bad event rejects the batch with
        ``JobValidationError`` naming it (``[3].type``). Returns how many were stored.
        """
        rows = [e.to_wire() if isinstance(e, TrackingEvent) else e for e in events]
        try:
            parsed = _EVENTS.validate_python(rows)
        except ValidationError as exc:
            raise JobValidationError("TrackingEvent", field_errors(exc, TrackingEvent)
                                     ) from None
        store = await self.store()
        return await store.record_events([
            EventRecord(tenant_id=e.tenant_id, campaign_id=e.campaign_id,
                        recipient=e.recipient, type=e.type, occurred_at=e.occurred_at,
                        url=e.url) for e in parsed])

    # --- administration: one line each over ``self.admin`` (see ``admin.QueueAdmin``) --
    async def get_queue_stats(self, queue: str) -> QueueStats:
        return await self.admin.get_queue_stats(queue)

    async def get_all_queue_stats(self) -> dict[str, QueueStats]:
        return await self.admin.get_all_queue_stats()

    async def get_jobs(self, queue: str, state: str, start: int = 0, end: int = 9, *,
                       newest_first: bool = True) -> list[JobInfo]:
        return await self.admin.get_jobs(queue, state, start, end, newest_first=newest_first)

    async def get_job(self, queue: str, job_id: str) -> JobInfo | None:
        return await self.admin.get_job(queue, job_id)

    async def get_failed_jobs(self, queue: str, limit: int = 10) -> list[JobInfo]:
        return await self.admin.get_failed_jobs(queue, limit)

    async def health_check(self) -> HealthCheck:
        return await self.admin.health_check()

    async def clean_queue(self, queue: str, grace_ms: int = 0,
                          state: CleanState = "completed", limit: int = 0) -> list[str]:
        return await self.admin.clean_queue(queue, grace_ms, state, limit)

    async def pause_queue(self, queue: str) -> None:
        await self.admin.pause_queue(queue)

    async def resume_queue(self, queue: str) -> None:
        await self.admin.resume_queue(queue)

    async def is_paused(self, queue: str) -> bool:
        return await self.admin.is_paused(queue)

    async def retry_failed(self, queue: str) -> int:
        return await self.admin.retry_failed(queue)

    async def list_dead_letters(self, limit: int = 50, queue: str | None = None, *,
                                include_replayed: bool = False) -> list[DeadLetterRecord]:
        return await self.admin.list_dead_letters(limit, queue,
                                                  include_replayed=include_replayed)

    async def replay_dead_letter(self, dead_letter_id: int) -> EnqueuedJob:
        return await self.admin.replay_dead_letter(dead_letter_id)
