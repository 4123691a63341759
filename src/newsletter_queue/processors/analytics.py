"""The analytics processors: ``campaign-complete`` and ``daily-aggregation``.

Both read the records store and write one aggregate row by upsert, so running a job
twice — BullMQ runs every job at least once — leaves the same row behind. The counting
itself is SQL (see ``services.store.aggregate``); these functions validate the job,
drive the work and report progress.

- ``campaign-complete`` (enqueued once when a campaign's last email batch finishes):
  recomputes the campaign's ``campaign_stats`` row — counts, rates, top links, best send
  hour and the trend against the tenant's previous campaigns — and returns it.
- ``daily-aggregation`` (a per-tenant job scheduler, or on demand): rolls up one UTC day
  of the tenant (``data.day``: ``YYYY-MM-DD``, ``"today"`` or ``"yesterday"``, the
  default) into ``daily_tenant_stats``; its ``campaignId`` is not used (the manager's
  scheduler sends ``"all"``). The tenant's campaigns active that day are counted in
  chunks of ``chunk_size`` so that a large tenant's job holds no long transaction and
  reports progress (the percentage of campaigns counted) after each chunk.

Bad job data fails the job as unrecoverable (``UnrecoverableError``), naming the field.
Jobs are typed by a small protocol (the engine's ``Job`` fits it), so tests and other
callers can hand in any object with ``id``, ``name``, ``data`` and ``update_progress``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from ..config import JobLimits
from ..engine.errors import UnrecoverableError
from ..errors import FieldError, JobValidationError
from ..jobs import AnalyticsJobData, validate_job
from ..queues import ANALYTICS_CAMPAIGN_COMPLETE, ANALYTICS_DAILY_AGGREGATION
from ..services.store import DailyTenantStats, Store
from ..services.store.records import utcnow

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 100


class AnalyticsJob(Protocol):
    """What the processors use of a job (the engine's ``Job`` has all of it)."""

    @property
    def id(self) -> str | None: ...

    @property
    def name(self) -> str: ...

    @property
    def data(self) -> Any: ...

    def update_progress(self, value: Any) -> Awaitable[None]: ...


AnalyticsProcessor = Callable[[AnalyticsJob], Awaitable[dict[str, Any]]]


def _unrecoverable(exc: JobValidationError) -> UnrecoverableError:
    return UnrecoverableError(str(exc))


def parse_day(value: Any, now: datetime) -> date:
    """``data.day`` → a date: ``None``/``"yesterday"`` → yesterday (UTC), ``"today"``,
    or an ISO date.

    Raises:
        JobValidationError: naming ``data.day``.
    """
    today = now.date()
    if value is None or value == "yesterday":
        return today - timedelta(days=1)
    if value == "today":
        return today
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise JobValidationError("AnalyticsJobData", [FieldError(
        "data.day", f"{value!r} is not an ISO date (YYYY-MM-DD), 'today' or 'yesterday'")])


def build_analytics_processors(
    store: Store,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    limits: JobLimits | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> dict[str, AnalyticsProcessor]:
    """The ``analytics`` queue's processors by job name.

    Args:
        store: the records store (initialised by the caller).
        chunk_size: campaigns counted per step of ``daily-aggregation``.
        limits: job payload caps applied when validating (default ``JobLimits()``).
        clock: current UTC time; what "today" and "yesterday" mean.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")

    def validated(job: AnalyticsJob, expected: str) -> AnalyticsJobData:
        try:
            data = validate_job(AnalyticsJobData, job.data, limits)
            if data.event_type != expected:
                raise JobValidationError("AnalyticsJobData", [FieldError(
                    "eventType", f"{data.event_type!r} sent to the {expected!r} processor")])
        except JobValidationError as exc:
            raise _unrecoverable(exc) from None
        return data

    async def campaign_complete(job: AnalyticsJob) -> dict[str, Any]:
        data = validated(job, ANALYTICS_CAMPAIGN_COMPLETE)
        stats = await store.refresh_campaign_stats(data.tenant_id, data.campaign_id)
        await job.update_progress(100)
        log.info("campaign %s of tenant %s: stats computed (sent=%d, open rate %.3f)",
                 data.campaign_id, data.tenant_id, stats.sent, stats.open_rate)
        return stats.to_dict()

    async def daily_aggregation(job: AnalyticsJob) -> dict[str, Any]:
        data = validated(job, ANALYTICS_DAILY_AGGREGATION)
        try:
            day = parse_day((data.data or {}).get("day"), clock())
        except JobValidationError as exc:
            raise _unrecoverable(exc) from None
        tenant = data.tenant_id
        campaigns = await store.campaigns_active_on(tenant, day)
        chunks = [campaigns[i:i + chunk_size] for i in range(0, len(campaigns), chunk_size)]
        total = DailyTenantStats(tenant_id=tenant, day=day)
        done = 0
        for chunk in chunks:
            total = total.plus(await store.daily_counts(tenant, day, chunk))
            done += len(chunk)
            await job.update_progress(done * 100 // len(campaigns))
        if not chunks:
            await job.update_progress(100)
        saved = await store.save_daily_stats(total)
        log.info("tenant %s: daily stats for %s computed (%d campaigns in %d chunks)",
                 tenant, day.isoformat(), len(campaigns), len(chunks))
        return {**saved.to_dict(), "chunks": len(chunks)}

    return {
        ANALYTICS_CAMPAIGN_COMPLETE: campaign_complete,
        ANALYTICS_DAILY_AGGREGATION: daily_aggregation,
    }
