"""``/metrics``: Prometheus text, read from Redis at scrape time.

Why a collector built per scrape rather than counters in this process: jobs are
processed by other processes (workers), so the numbers live in Redis — BullMQ's state
keys and metrics counters, the monitor's histogram hash, the email counters and the
circuit breakers. Each scrape reads them (a handful of pipelined round trips) and
renders them through prometheus-client's ``generate_latest`` with a one-off registry.

If Redis cannot be read, the scrape still answers 200 with ``nlq_redis_up 0`` — the
usual exporter convention, so alerting sees "down" rather than a failed scrape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..connection import finished_within
from ..engine.metrics import get_metrics
from ..engine.states import JobState
from ..keyspace import histogram_key
from ..monitor_report import HISTOGRAM_BUCKETS_S
from .context import REDIS_DEADLINE_S, ApiContext

log = logging.getLogger(__name__)

BREAKER_STATES = ("closed", "open", "half-open")
EMAIL_STATUSES = ("sent", "bounced", "failed")


@dataclass
class Snapshot:
    """Everything one scrape reports, read from Redis."""

    redis_up: bool = False
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    paused: dict[str, bool] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, dict[str, int]] = field(default_factory=dict)
    emails: dict[str, int] = field(default_factory=dict)
    breakers: dict[str, str] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)


async def read_snapshot(ctx: ApiContext) -> Snapshot:
    snap = Snapshot()
    try:
        await ctx.redis_ready()
        client = await ctx.manager.client()
        prefix = ctx.settings.key_prefix
        workers = await ctx.monitor.get_workers()
        for queue in ctx.settings.queues:
            stats = await ctx.admin.get_queue_stats(queue)
            snap.counts[queue] = {s.value: int(getattr(stats, s.field)) for s in JobState}
            snap.paused[queue] = stats.is_paused
            done, fail = await asyncio.gather(
                get_metrics(client, ctx.settings, queue, "completed", 0, 0),
                get_metrics(client, ctx.settings, queue, "failed", 0, 0))
            snap.completed[queue], snap.failed[queue] = done.count, fail.count
            raw = cast(dict[str, str], await client.hgetall(histogram_key(prefix, queue)))
            snap.histograms[queue] = {k: int(v) for k, v in raw.items()}
            snap.workers[queue] = len(workers.get(queue, []))
        snap.emails = await ctx.admin.email_counts()
        snap.breakers = {name: b["state"] for name, b in (await ctx.admin.breaker_states()).items()}
        snap.redis_up = True
    except Exception as exc:  # an outage is nlq_redis_up 0, never a failed scrape
        log.warning("metrics scrape could not read Redis: %s", type(exc).__name__)
        return Snapshot()
    return snap


class SnapshotCollector(Collector):
    """Turns one ``Snapshot`` into metric families."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        up = GaugeMetricFamily("nlq_redis_up", "Whether Redis answered this scrape")
        up.add_metric([], 1 if s.redis_up else 0)
        yield up
        if not s.redis_up:
            return
        jobs = GaugeMetricFamily("nlq_queue_jobs", "Jobs by queue and state",
                                 labels=["queue", "state"])
        for queue, counts in s.counts.items():
            for state, n in counts.items():
                jobs.add_metric([queue, state], n)
        yield jobs
        paused = GaugeMetricFamily("nlq_queue_paused", "1 when the queue is paused",
                                   labels=["queue"])
        workers = GaugeMetricFamily("nlq_queue_workers", "Workers connected",
                                    labels=["queue"])
        for queue in s.counts:
            paused.add_metric([queue], 1 if s.paused.get(queue) else 0)
            workers.add_metric([queue], s.workers.get(queue, 0))
        yield paused
        yield workers
        done = CounterMetricFamily("nlq_jobs_completed", "Jobs completed (BullMQ metrics)",
                                   labels=["queue"])
        fail = CounterMetricFamily("nlq_jobs_failed", "Jobs failed for good (BullMQ metrics)",
                                   labels=["queue"])
        for queue in s.counts:
            done.add_metric([queue], s.completed.get(queue, 0))
            fail.add_metric([queue], s.failed.get(queue, 0))
        yield done
        yield fail
        hist = HistogramMetricFamily("nlq_job_processing_seconds",
                                     "Job processing time (start of attempt to completion)",
                                     labels=["queue"])
        for queue, raw in s.histograms.items():
            hist.add_metric([queue], *_buckets(raw))
        yield hist
        for status in EMAIL_STATUSES:
            family = CounterMetricFamily(f"nlq_emails_{status}", f"Emails {status}")
            family.add_metric([], s.emails.get(status, 0))
            yield family
        breaker = GaugeMetricFamily("nlq_circuit_breaker_state",
                                    "1 for the breaker's current state",
                                    labels=["breaker", "state"])
        opened = GaugeMetricFamily("nlq_circuit_breaker_open",
                                   "1 when the breaker refuses calls (open or half-open)",
                                   labels=["breaker"])
        for name, state in s.breakers.items():
            for candidate in BREAKER_STATES:
                breaker.add_metric([name, candidate], 1 if candidate == state else 0)
            opened.add_metric([name], 0 if state == "closed" else 1)
        yield breaker
        yield opened


def _buckets(raw: dict[str, int]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative buckets and the sum (seconds) from the per-bucket counters."""
    running = 0
    out: list[tuple[str, float]] = []
    for bound in HISTOGRAM_BUCKETS_S:
        running += raw.get(repr(bound), 0)
        out.append((repr(bound), running))
    running += raw.get("+Inf", 0)
    out.append(("+Inf", running))
    return out, raw.get("sum_ms", 0) / 1000


async def render_metrics(ctx: ApiContext) -> tuple[bytes, str]:
    reading = asyncio.ensure_future(read_snapshot(ctx))
    if await finished_within(reading, REDIS_DEADLINE_S * 3):
        snap = reading.result()
    else:
        reading.cancel()
        snap = Snapshot()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    return generate_latest(registry), CONTENT_TYPE_LATEST

