"""DevTools: inspect, fill, clear, watch, load-test and export the queues in development.

The original design's ``queueDevTools`` / ``devHelpers`` in Python. Everything goes through
Redis (``QueueAdmin`` for jobs and counts, ``QueueMonitor`` for the picture), so the tools
work from any process — a REPL, the CLI or the dev API — against the workers of another.

``clear`` is destructive: it obliterates a queue's keys (and the monitor's data for it)
under the configured prefix only, and refuses unless dev mode is on or ``force=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .config import Settings, load_settings
from .engine.states import JOB_STATES
from .enqueue import add_bulk
from .errors import ConfigurationError, JobValidationError
from .keyspace import durations_key, histogram_key, monitor_errors_key
from .manager import QueueManager
from .monitor import QueueMonitor
from .monitor_report import MonitorReport
from .queues import ANALYTICS_CAMPAIGN_COMPLETE, QueueName

Progress = Callable[[str, int, int], None]
_EXPORT_PAGE = 500
_PERF_CHUNK = 500
MAX_PERF_JOBS = 100_000


@dataclass(frozen=True)
class PerformanceResult:
    """What ``performance_test`` measured. Durations in ms; rates in jobs/s."""

    queue: str
    jobs_created: int
    duration_ms: float
    rate: float
    workers: int
    drained: bool | None = None  # None: no workers were running, nothing to wait for
    drain_ms: float | None = None
    drain_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DevTools:
    """Development helpers over one ``QueueManager`` (shared or owned)."""

    def __init__(self, settings: Settings | None = None, *,
                 manager: QueueManager | None = None,
                 monitor: QueueMonitor | None = None) -> None:
        self.settings = settings or (manager.settings if manager else load_settings())
        self._owns_manager = manager is None
        self.manager = manager or QueueManager(self.settings)
        self.admin = self.manager.admin
        self.monitor_ = monitor or QueueMonitor(self.settings, manager=self.manager)

    async def close(self) -> None:
        if self._owns_manager:
            await self.manager.close()

    async def __aenter__(self) -> DevTools:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check(self, queue: str) -> str:
        return self.manager.check_queue(queue)

    # --- inspect -------------------------------------------------------------------------
    async def inspect(self, queue: str, *, per_state: int = 5) -> dict[str, Any]:
        """Counts, metrics, health, workers, the newest jobs of each state and the
        queue's recent errors — one dict, ready for JSON."""
        self._check(queue)
        metrics = await self.monitor_.get_queue_metrics(queue)
        health = await self.monitor_.get_queue_health(queue, metrics=metrics)
        jobs: dict[str, list[dict[str, Any]]] = {}
        for state in JOB_STATES:
            if metrics.counts.get(state.replace("-", "_"), 0):
                found = await self.admin.get_jobs(queue, state, 0, per_state - 1)
                jobs[state] = [_summary(j.to_dict()) for j in found]
        errors = await self.monitor_.get_recent_errors(10, queue)
        return {"queue": queue, "config": self.settings.queue_config(queue).model_dump(),
                "metrics": metrics.to_dict(), "health": health.to_dict(), "jobs": jobs,
                "recent_errors": [e.to_dict() for e in errors]}

    # --- test jobs -----------------------------------------------------------------------
    async def create_test_jobs(self) -> dict[str, list[str]]:
        """A realistic mix on all three queues; returns the new job ids by queue.

        Email: a small campaign in two batches with inline content (so it renders
        without a stored campaign) plus one transactional message; the addresses are
        on ``example.com`` and go to whatever SMTP server is configured — the dev sink
        under ``nlq up``. Analytics: the campaign's ``campaign-complete`` and a
        ``daily-aggregation``. AI: one job of each type.
        """
        m = self.manager
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
        tenant, campaign = "dev-tenant", f"dev-campaign-{stamp}"
        content = {"subject": "Dev test issue for {{ name }}",
                   "html": "<h1>Hello {{ name }}</h1><p>This is a dev test message.</p>",
                   "text": "Hello {{ name }}\nThis is a dev test message.\n"}
        people = [{"email": f"dev-reader{i}@example.com", "name": f"Reader {i}",
                   "personalizations": {"plan": "pro" if i % 2 else "free"}} for i in range(6)]
        ids: dict[str, list[str]] = {q: [] for q in self.settings.queues}
        for part in (people[:3], people[3:]):
            job = await m.schedule_email_job("send-newsletter", {
                "campaignId": campaign, "tenantId": tenant, "recipients": part,
                "content": content})
            ids[QueueName.EMAIL].append(job.id)
        welcome = await m.schedule_email_job("welcome-email", {
            "campaignId": f"welcome-{stamp}", "tenantId": tenant,
            "recipients": [{"email": "new-user@example.com", "name": "New User"}],
            "content": {"subject": "Welcome aboard", "text": "Glad to have you."}},
            {"priority": 1})
        ids[QueueName.EMAIL].append(welcome.id)
        for name, event in ((ANALYTICS_CAMPAIGN_COMPLETE, "campaign-complete"),
                            ("daily-aggregation", "daily-aggregation")):
            job = await m.schedule_analytics_job(name, {
                "campaignId": campaign if event == "campaign-complete" else "all",
                "tenantId": tenant, "eventType": event})
            ids[QueueName.ANALYTICS].append(job.id)
        ai_jobs: list[tuple[str, dict[str, Any]]] = [
            ("content-generation", {"topic": "Spring product update", "tone": "friendly",
                                    "audience": "customers", "outline": ["news", "tips"]}),
            ("subject-optimization", {"subjects": ["Our spring update",
                                                   "FREE!!! Click now", "{{ name }}, new in May"]}),
            ("campaign-insights", {"stats": {"sent": 1000, "opens": 220, "clicks": 31,
                                             "bounced": 12, "unsubscribes": 3}}),
        ]
        for kind, data in ai_jobs:
            job = await m.schedule_ai_job(kind, {"tenantId": tenant, "type": kind, "data": data})
            ids[QueueName.AI].append(job.id)
        return ids

    # --- clear ---------------------------------------------------------------------------
    async def clear(self, queue: str = "all", *, force: bool = False) -> dict[str, int]:
        """Obliterate ``queue`` (or every queue with ``"all"``): jobs, schedulers, metrics,
        pause state and the monitor's data for it. Returns jobs removed per queue.

        Raises:
            ConfigurationError: dev mode is off and ``force`` is not set.
            QueueNotFoundError: unknown queue.
        """
        if not (self.settings.dev_mode or force):
            raise ConfigurationError(
                "clear refuses to run outside dev mode (NLQ_DEV_MODE=false); "
                "pass force=True (CLI: --force) to clear anyway")
        names = list(self.settings.queues) if queue == "all" else [self._check(queue)]
        client = await self.manager.client()
        removed: dict[str, int] = {}
        for name in names:
            before = (await self.admin.get_queue_stats(name))
            q = await self.manager.queue(name)
            await q.obliterate(force=True)
            await client.delete(durations_key(self.settings.key_prefix, name),
                                histogram_key(self.settings.key_prefix, name))
            removed[name] = before.pending + before.completed + before.failed
        await self._drop_errors(client, None if queue == "all" else names[0])
        return removed

    async def _drop_errors(self, client: Any, queue: str | None) -> None:
        key = monitor_errors_key(self.settings.key_prefix)
        if queue is None:
            await client.delete(key)
            return
        entries = await client.xrange(key) or []
        stale = [entry_id for entry_id, fields in entries if fields.get("queue") == queue]
        if stale:
            await client.xdel(key, *stale)

    # --- live monitor --------------------------------------------------------------------
    async def monitor(self, *, duration: float | None = None, interval: float = 1.0,
                      console: Console | None = None) -> None:
        """A live terminal table (Rich) of every queue until Ctrl-C or ``duration`` s."""
        deadline = None if duration is None else time.monotonic() + duration
        report = await self.monitor_.generate_report(errors=5)
        with (Live(render_report(report), console=console, refresh_per_second=4) as live,
              contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError)):
            while deadline is None or time.monotonic() < deadline:
                wait = interval if deadline is None else min(
                    interval, max(deadline - time.monotonic(), 0))
                await asyncio.sleep(wait)
                report = await self.monitor_.generate_report(errors=5)
                live.update(render_report(report))

    # --- performance ---------------------------------------------------------------------
    async def performance_test(self, job_count: int = 100, *, queue: str = "analytics",
                               drain_timeout_s: float = 60.0,
                               on_progress: Progress | None = None) -> PerformanceResult:
        """Enqueue ``job_count`` jobs in bulk and time it; when workers are connected to
        ``queue``, also wait (at most ``drain_timeout_s``) until they processed them all.

        The jobs are ``campaign-complete`` analytics jobs of synthetic campaigns (cheap
        to process, no mail sent) unless another queue is chosen; on ``email`` they are
        one-recipient messages to ``example.com`` with inline content.
        """
        self._check(queue)
        if not 1 <= job_count <= MAX_PERF_JOBS:
            raise JobValidationError("performance", [_field("jobCount",
                                                           f"must be 1..{MAX_PERF_JOBS}")])
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
        q = await self.manager.queue(queue)
        client = await self.manager.client()
        ids: list[str] = []
        started = time.perf_counter()
        for start in range(0, job_count, _PERF_CHUNK):
            batch = [_perf_job(queue, stamp, i)
                     for i in range(start, min(start + _PERF_CHUNK, job_count))]
            added = await add_bulk(client, q, batch)
            ids.extend(str(job.id) for job in added)
            if on_progress:
                on_progress("enqueue", len(ids), job_count)
        elapsed = (time.perf_counter() - started) * 1000
        workers = len((await self.monitor_.get_workers()).get(queue, []))
        result = PerformanceResult(queue, len(ids), round(elapsed, 1),
                                   round(len(ids) / (elapsed / 1000), 1) if elapsed else 0.0,
                                   workers)
        if not workers:
            return result
        drained, drain_ms = await self._wait_drained(queue, ids, drain_timeout_s, on_progress)
        return PerformanceResult(
            queue, len(ids), result.duration_ms, result.rate, workers, drained,
            round(drain_ms, 1), round(len(ids) / (drain_ms / 1000), 1) if drained else None)

    async def _wait_drained(self, queue: str, ids: list[str], limit_s: float,
                            on_progress: Progress | None) -> tuple[bool, float]:
        """Poll until every job is finished (or already removed by retention)."""
        client = await self.manager.client()
        keys = self.manager.keys(queue)
        pending = list(ids)
        started = time.perf_counter()
        deadline = time.monotonic() + limit_s
        while pending and time.monotonic() < deadline:
            pipe = client.pipeline(transaction=False)
            for job_id in pending:
                pipe.hget(keys.job(job_id), "finishedOn")
            finished = await pipe.execute()
            pending = [i for i, done in zip(pending, finished, strict=True) if done is None
                       and await _exists(client, keys.job(i))]
            if on_progress:
                on_progress("drain", len(ids) - len(pending), len(ids))
            if pending:
                await asyncio.sleep(0.1)
        return not pending, (time.perf_counter() - started) * 1000

    # --- export --------------------------------------------------------------------------
    async def export_queue_data(self, queue: str, path: Path | str | None = None) -> Path:
        """Write every job of ``queue`` (all states) as NDJSON; returns the file path.

        One line per job: the job's fields, its state, data and options. The file goes
        to ``{state_dir}/exports/{queue}-{timestamp}.ndjson`` unless ``path`` is given.
        """
        self._check(queue)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = Path(path) if path else (
            self.settings.state_dir / "exports" / f"{queue}-{stamp}.ndjson")
        target.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with target.open("w", encoding="utf-8") as out:
            for state in JOB_STATES:
                start = 0
                while True:
                    page = await self.admin.get_jobs(queue, state, start,
                                                     start + _EXPORT_PAGE - 1)
                    for job in page:
                        out.write(json.dumps(job.to_dict(), default=str) + "\n")
                        count += 1
                    if len(page) < _EXPORT_PAGE:
                        break
                    start += _EXPORT_PAGE
        return target


async def _exists(client: Any, key: str) -> bool:
    return bool(await client.exists(key))


def _field(path: str, message: str) -> Any:
    from .errors import FieldError

    return FieldError(path, message)


def _perf_job(queue: str, stamp: str, i: int) -> dict[str, Any]:
    tenant = "perf-tenant"
    if queue == QueueName.EMAIL:
        data: dict[str, Any] = {
            "campaignId": f"perf-{stamp}-{i}", "tenantId": tenant,
            "recipients": [{"email": f"perf{i}@example.com"}],
            "content": {"subject": "perf", "text": "performance test"}}
        return {"name": "send-newsletter", "data": data, "opts": {}}
    if queue == QueueName.AI:
        return {"name": "subject-optimization", "data": {
            "tenantId": tenant, "type": "subject-optimization",
            "data": {"subjects": [f"Perf subject {i}"]}}, "opts": {}}
    return {"name": ANALYTICS_CAMPAIGN_COMPLETE, "data": {
        "campaignId": f"perf-{stamp}-{i}", "tenantId": tenant,
        "eventType": "campaign-complete"}, "opts": {}}


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "name", "state", "timestamp", "attempts_made", "failed_reason",
            "processed_on", "finished_on", "progress")
    return {k: job.get(k) for k in keep}


def render_report(report: MonitorReport) -> Table:
    """The live monitor's table (also used by ``nlq monitor``)."""
    styles = {"healthy": "green", "warning": "yellow", "critical": "bold red"}
    table = Table(title=f"newsletter-queue — {report.status} — Redis {report.redis.url}",
                  caption=None if report.redis.ok else f"Redis unreachable: {report.redis.error}")
    for column in ("queue", "health", "waiting", "active", "delayed", "completed", "failed",
                   "done/min", "p95 ms", "workers", "why"):
        table.add_column(column, justify="left" if column in ("queue", "health", "why")
                         else "right", no_wrap=column in ("queue", "health"),
                         min_width=9 if column == "queue" else None)
    for name, health in report.health.items():
        m = report.queues.get(name)
        style = styles.get(health.status, "")
        if m is None:
            table.add_row(name, f"[{style}]{health.status}[/]", *["–"] * 8,
                          "; ".join(health.reasons))
            continue
        c = m.counts
        last = m.completed_per_minute[-2] if len(m.completed_per_minute) > 1 else 0
        table.add_row(
            name + (" (paused)" if m.is_paused else ""), f"[{style}]{health.status}[/]",
            str(c.get("waiting", 0) + c.get("prioritized", 0)), str(c.get("active", 0)),
            str(c.get("delayed", 0)), str(c.get("completed", 0)), str(c.get("failed", 0)),
            str(last), str(m.processing_ms.get("p95") or "–"), str(m.workers),
            "; ".join(health.reasons))
    return table


class DevHelpers:
    """The original design's ``devHelpers``: one-word shortcuts over ``queue_dev_tools``."""

    def __init__(self, tools: Callable[[], DevTools]) -> None:
        self._tools = tools

    async def inspect(self, queue: str = "email") -> dict[str, Any]:
        return await self._tools().inspect(queue)

    async def test(self) -> dict[str, list[str]]:
        return await self._tools().create_test_jobs()

    async def clear(self, queue: str = "all", *, force: bool = False) -> dict[str, int]:
        return await self._tools().clear(queue, force=force)

    async def monitor(self, duration: float | None = None) -> None:
        await self._tools().monitor(duration=duration)


_lazy: dict[str, Any] = {}


def _default_tools() -> DevTools:
    if "queue_dev_tools" not in _lazy:
        _lazy["queue_dev_tools"] = DevTools(load_settings())
    return cast(DevTools, _lazy["queue_dev_tools"])


dev_helpers = DevHelpers(_default_tools)


def __getattr__(name: str) -> Any:
    """``queue_dev_tools`` is created from the environment on first use."""
    if name == "queue_dev_tools":
        return _default_tools()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
