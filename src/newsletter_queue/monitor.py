"""QueueMonitor: metrics, recent errors, health and reports — read from Redis.

Why everything is in Redis rather than in this process's memory (the original
TypeScript design kept its metrics in a Map): the API, the CLI and the workers are
separate processes, and all of them must see the same picture. The sources:

- counts by state and the paused flag: BullMQ's own keys (``QueueManager``);
- completed / failed per minute: BullMQ's metrics keys (``{prefix}:{queue}:metrics:*``),
  written by the workers' ``moveToFinished`` — what Node's ``getMetrics`` and Bull
  Board read;
- processing times: a capped list ``{prefix}:monitor:{queue}:durations`` (last 1000, for
  percentiles) and bucket counters ``{prefix}:monitor:{queue}:hist`` (for the Prometheus
  histogram), both written by ``MonitorRecorder`` from the workers' ``completed`` hook;
- recent errors: the capped stream ``{prefix}:monitor:errors`` (``XADD MAXLEN ~ 1000``),
  written by ``MonitorRecorder`` from the ``failed`` hook (every failed attempt);
- workers connected: ``CLIENT LIST``, matching the client names BullMQ workers use
  (``{prefix}:{base64(queue)}:w:{name}``), as Node's ``Queue.getWorkers`` does.

Report types and thresholds live in ``monitor_report``; this module reads Redis.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from redis.exceptions import RedisError

from .config import Settings, load_settings
from .connection import AnyRedis, PoolExhaustedError
from .engine.health import is_connection_error
from .engine.jobhash import as_int
from .engine.keys import worker_name_prefix
from .engine.metrics import Metrics, get_metrics
from .errors import QueueNotFoundError, RedisServerError
from .keyspace import durations_key, histogram_key, monitor_errors_key
from .manager import QueueManager
from .monitor_report import (
    DURATIONS_KEEP,
    ERRORS_KEEP,
    HISTOGRAM_BUCKETS_S,
    ErrorRecord,
    MonitorReport,
    MonitorThresholds,
    QueueHealth,
    QueueMetrics,
    RedisInfo,
    WorkerInfo,
    bucket_field,
    percentile,
    worst,
)

if TYPE_CHECKING:
    from .engine import Job, Worker

__all__ = [
    "ErrorRecord",
    "MonitorRecorder",
    "MonitorReport",
    "MonitorThresholds",
    "QueueHealth",
    "QueueMetrics",
    "QueueMonitor",
    "RedisInfo",
    "WorkerInfo",
    "queue_monitor",
]

MINUTES = 60
_PRIORITIZED_SAMPLE = 100
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.I)


def redis_down(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis failing (unreachable, refusing, unusable as it is): the
    monitor reports that. An unknown queue or a full pool here (this process overloaded,
    Redis may answer well) propagate, for the API to answer as what they are."""
    if isinstance(exc, PoolExhaustedError):
        return False
    return isinstance(exc, RedisServerError | RedisError) or is_connection_error(exc)


def _scrub(text: str, limit: int = 2000) -> str:
    """An error message safe to store and show: URL passwords masked, bounded length."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def minute_series(metrics: Metrics, now_ms: int, minutes: int = MINUTES) -> list[int]:
    """Jobs per minute for the last ``minutes`` minutes, oldest first, ending now.

    BullMQ's ``collectMetrics`` only writes a data point when a job finishes in a later
    minute than the previous point, so the list may lag: ``count - prevCount`` is the
    minute of ``prevTS`` (still open), ``data[i]`` is minute ``prevTS - 1 - i``, and the
    minutes since ``prevTS`` with no finished job are zero.
    """
    now_min = now_ms // 60_000
    first = now_min - minutes + 1
    out = [0] * minutes

    def put(minute: int, value: int) -> None:
        if first <= minute <= now_min:
            out[minute - first] += max(value, 0)

    if metrics.prev_ts:
        anchor = metrics.prev_ts // 60_000
        put(anchor, metrics.count - metrics.prev_count)
        for i, value in enumerate(metrics.data):
            put(anchor - 1 - i, value)
    return out


def parse_workers(clients: Iterable[dict[str, Any]], prefix: str,
                  queues: Sequence[str]) -> dict[str, list[WorkerInfo]]:
    """Group ``CLIENT LIST`` entries by the queue whose worker client name they carry."""
    by_prefix = {worker_name_prefix(prefix, q): q for q in queues}
    found: dict[str, dict[str, WorkerInfo]] = {q: {} for q in queues}
    for client in clients:
        name = str(client.get("name") or "")
        for head, queue in by_prefix.items():
            if name.startswith(head):
                worker = name[len(head):]
                # A worker has several connections with the same name; count it once.
                found[queue].setdefault(worker, WorkerInfo(
                    name=worker, queue=queue, addr=str(client.get("addr", "")),
                    age_s=as_int(client.get("age"), 0),
                    idle_s=as_int(client.get("idle"), 0)))
    return {q: sorted(w.values(), key=lambda w: w.name) for q, w in found.items()}


class QueueMonitor:
    """Reads the monitoring picture of every queue from Redis.

    Args:
        settings: configuration (``load_settings()`` if omitted).
        manager: a ``QueueManager`` to share (its client is used); one is created and
            owned otherwise, and closed by ``close()``.
        thresholds: health thresholds (``settings.monitor`` or the defaults).
    """

    def __init__(self, settings: Settings | None = None, *,
                 manager: QueueManager | None = None,
                 thresholds: MonitorThresholds | None = None) -> None:
        self.settings = settings or (manager.settings if manager else load_settings())
        self._owns_manager = manager is None
        self.manager = manager or QueueManager(self.settings)
        self.thresholds = thresholds or self.settings.monitor

    async def __aenter__(self) -> QueueMonitor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_manager:
            await self.manager.close()

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(self.settings.queues)

    def _check(self, queue: str) -> None:
        if queue not in self.settings.queues:
            raise QueueNotFoundError(queue, self.settings.queues)

    async def _client(self) -> AnyRedis:
        return await self.manager.client()

    # --- metrics -------------------------------------------------------------------------
    async def get_workers(self) -> dict[str, list[WorkerInfo]]:
        """Workers connected, by queue. Empty lists where ``CLIENT LIST`` is refused."""
        client = await self._client()
        try:
            clients = cast(list[dict[str, Any]], await client.client_list())
        except RedisError as exc:
            if "CLIENT" not in str(exc).upper() and "NOPERM" not in str(exc).upper():
                raise
            return {q: [] for q in self.queue_names}
        return parse_workers(clients, self.settings.key_prefix, self.queue_names)

    async def get_queue_metrics(self, queue: str, *, now_ms: int | None = None,
                                workers: list[WorkerInfo] | None = None) -> QueueMetrics:
        """Counts, per-minute throughput, processing-time percentiles, error rate, oldest
        waiting job, workers and the paused flag of ``queue``."""
        self._check(queue)
        stats = await self.manager.admin.get_queue_stats(queue)
        client = await self._client()
        completed, failed = await asyncio.gather(
            get_metrics(client, self.settings, queue, "completed", 0, MINUTES - 1),
            get_metrics(client, self.settings, queue, "failed", 0, MINUTES - 1))
        # "Now" is read after the counters: a job finished in a new minute while they were
        # being read must fall inside the series, not one minute past its end.
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        durations = cast(list[str], await client.lrange(
            durations_key(self.settings.key_prefix, queue), 0, DURATIONS_KEEP - 1))
        if workers is None:
            workers = (await self.get_workers()).get(queue, [])
        oldest = await self._oldest_waiting_age_s(client, queue, now)
        done_series = minute_series(completed, now)
        fail_series = minute_series(failed, now)
        done, fails = sum(done_series), sum(fail_series)
        samples = sorted(int(float(x)) for x in durations)
        return QueueMetrics(
            queue=queue, counts={k: v for k, v in stats.to_dict().items()
                                       if isinstance(v, int) and not isinstance(v, bool)},
            is_paused=stats.is_paused,
            minute_start_ms=(now // 60_000 - MINUTES + 1) * 60_000,
            completed_per_minute=done_series, failed_per_minute=fail_series,
            completed_total=completed.count, failed_total=failed.count,
            completed_last_hour=done, failed_last_hour=fails,
            error_rate=(fails / (done + fails)) if done + fails else None,
            processing_ms={"p50": percentile(samples, 50), "p95": percentile(samples, 95),
                           "p99": percentile(samples, 99), "samples": len(samples)},
            oldest_waiting_age_s=oldest, workers=len(workers), worker_list=list(workers))

    async def _oldest_waiting_age_s(self, client: AnyRedis, queue: str, now_ms: int
                                    ) -> float | None:
        """Age of the longest-waiting job that is ready to run.

        ``wait``/``paused`` are FIFO lists (the tail is the oldest). ``prioritized`` is
        ordered by priority, then insertion; the first ``_PRIORITIZED_SAMPLE`` in line
        are checked, which finds the oldest of the groups about to run without a scan.
        """
        keys = self.manager.keys(queue)
        pipe = client.pipeline(transaction=False)
        pipe.lindex(keys.wait, -1)
        pipe.lindex(keys.paused, -1)
        pipe.zrange(keys.prioritized, 0, _PRIORITIZED_SAMPLE - 1)
        tail_wait, tail_paused, prioritized = await pipe.execute()
        ids = [i for i in (tail_wait, tail_paused, *prioritized) if i]
        if not ids:
            return None
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(keys.job(job_id), "timestamp", "delay")
        ages = []
        for ts, delay in await pipe.execute():
            if ts:
                ready_at = int(float(ts)) + int(float(delay or 0))
                ages.append(max(now_ms - ready_at, 0) / 1000)
        return round(max(ages), 3) if ages else None

    # --- errors --------------------------------------------------------------------------
    async def get_recent_errors(self, limit: int = 50, queue: str | None = None
                                ) -> list[ErrorRecord]:
        """The newest failed attempts (all queues, or ``queue``), newest first."""
        if queue is not None:
            self._check(queue)
        limit = max(0, min(int(limit), ERRORS_KEEP))
        if not limit:
            return []
        client = await self._client()
        # The stream is capped at ~1000 entries, so a filtered read scans at most that.
        count = limit if queue is None else ERRORS_KEEP + 100
        key = monitor_errors_key(self.settings.key_prefix)
        entries = cast(list[tuple[str, dict[str, Any]]],
                       await client.xrevrange(key, count=count) or [])
        out: list[ErrorRecord] = []
        for entry_id, fields in entries:
            record = ErrorRecord.from_fields(str(entry_id), fields or {})
            if queue is None or record.queue == queue:
                out.append(record)
                if len(out) >= limit:
                    break
        return out

    # --- health --------------------------------------------------------------------------
    async def get_redis_info(self) -> RedisInfo:
        """Reachability, version and memory of the server. Never raises for an outage."""
        try:
            client = await self._client()
            info = cast(dict[str, Any], await asyncio.wait_for(
                client.info(), timeout=self.settings.redis_connect_timeout_s))
        except Exception as exc:
            if not redis_down(exc):
                raise
            return RedisInfo(ok=False, url=self.manager.url, error=_scrub(str(exc) or
                                                                          type(exc).__name__))
        return RedisInfo(
            ok=True, url=self.manager.url,
            version=str(info.get("valkey_version") or info.get("redis_version") or "?"),
            used_memory=as_int(info.get("used_memory"), 0),
            maxmemory=as_int(info.get("maxmemory"), 0),
            maxmemory_policy=str(info.get("maxmemory_policy", "")),
            connected_clients=as_int(info.get("connected_clients"), 0))

    async def get_queue_health(self, queue: str, *, metrics: QueueMetrics | None = None,
                               redis: RedisInfo | None = None) -> QueueHealth:
        """``healthy`` / ``warning`` / ``critical`` with the reasons, never raising for
        Redis being down (that is itself a critical reason)."""
        self._check(queue)
        redis = redis or await self.get_redis_info()
        if not redis.ok:
            return QueueHealth(queue, "critical", [f"Redis unreachable: {redis.error}"])
        try:
            metrics = metrics or await self.get_queue_metrics(queue)
        except Exception as exc:
            if not redis_down(exc):
                raise
            return QueueHealth(queue, "critical", [f"Redis unreachable: {_scrub(str(exc))}"])
        return assess(metrics, redis, self.thresholds)

    async def get_all_health(self) -> dict[str, QueueHealth]:
        report = await self.generate_report(errors=0)
        return report.health

    async def generate_report(self, *, errors: int = 20) -> MonitorReport:
        """Every queue's metrics and health, the server and the recent errors."""
        redis = await self.get_redis_info()
        queues: dict[str, QueueMetrics] = {}
        health: dict[str, QueueHealth] = {}
        recent: list[ErrorRecord] = []
        if redis.ok:
            try:
                workers = await self.get_workers()
                now = int(time.time() * 1000)
                for name in self.queue_names:
                    queues[name] = await self.get_queue_metrics(
                        name, now_ms=now, workers=workers.get(name, []))
                    health[name] = assess(queues[name], redis, self.thresholds)
                recent = await self.get_recent_errors(errors) if errors else []
            except Exception as exc:
                if not redis_down(exc):
                    raise
                redis = RedisInfo(ok=False, url=self.manager.url, error=_scrub(str(exc)))
                queues.clear()
        if not redis.ok:
            health = {q: QueueHealth(q, "critical", [f"Redis unreachable: {redis.error}"])
                      for q in self.queue_names}
        return MonitorReport(generated_at_ms=int(time.time() * 1000), redis=redis,
                             status=worst(h.status for h in health.values()),
                             queues=queues, health=health, recent_errors=recent)


def assess(m: QueueMetrics, redis: RedisInfo, t: MonitorThresholds) -> QueueHealth:
    """Apply the thresholds to one queue's metrics (pure: easy to test and explain)."""
    levels: list[tuple[str, str]] = []
    if m.is_paused:
        levels.append(("warning", "queue is paused"))
    finished = m.completed_last_hour + m.failed_last_hour
    if m.error_rate is not None and finished >= t.error_rate_min_jobs:
        pct = f"{m.error_rate:.0%} of {finished} jobs failed in the last hour"
        if m.error_rate >= t.error_rate_critical:
            levels.append(("critical", f"error rate {pct}"))
        elif m.error_rate >= t.error_rate_warning:
            levels.append(("warning", f"error rate {pct}"))
    age = m.oldest_waiting_age_s
    if age is not None and not m.is_paused:
        if age >= t.backlog_age_critical_s:
            levels.append(("critical", f"oldest waiting job is {age:.0f}s old"))
        elif age >= t.backlog_age_warning_s:
            levels.append(("warning", f"oldest waiting job is {age:.0f}s old"))
    ready = m.counts.get("waiting", 0) + m.counts.get("prioritized", 0)
    if ready and m.workers == 0 and not m.is_paused:
        level = "critical" if (age or 0) >= t.no_workers_grace_s else "warning"
        levels.append((level, f"no workers connected while {ready} job(s) wait"))
    if redis.maxmemory:
        ratio = redis.used_memory / redis.maxmemory
        if ratio >= t.memory_critical_ratio:
            levels.append(("critical", f"Redis memory at {ratio:.0%} of maxmemory"))
        elif ratio >= t.memory_warning_ratio:
            levels.append(("warning", f"Redis memory at {ratio:.0%} of maxmemory"))
    return QueueHealth(m.queue, worst(level for level, _ in levels),
                       [reason for _, reason in levels])


class MonitorRecorder:
    """Worker-side writer of the monitor's data; attach it to engine workers.

    ``on_failed`` adds every failed attempt to the errors stream; ``on_completed``
    records the processing time. Both are cheap (one pipelined round trip) because they
    run in the worker's hook, on the job's slot.
    """

    def __init__(self, client: AnyRedis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.prefix = settings.key_prefix

    def attach(self, workers: Iterable[Worker]) -> None:
        """Register ``on_failed`` / ``on_completed`` on each worker."""
        for worker in workers:
            worker.on("failed", self.on_failed)
            worker.on("completed", self.on_completed)

    async def on_failed(self, job: Job, error: BaseException) -> None:
        """XADD the attempt to ``{prefix}:monitor:errors`` (capped at ~1000)."""
        # The engine counts the attempt before the hook runs: attempts_made is this one.
        attempt = max(job.attempts_made, 1)
        fields = {
            "queue": job.queue, "job_id": str(job.id), "name": job.name,
            "error": _scrub(str(error) or type(error).__name__),
            "error_type": type(error).__name__, "attempt": attempt,
            "max_attempts": job.max_attempts, "final": int(job.failed_for_good),
            "ts": int(time.time() * 1000),
        }
        await self.client.xadd(monitor_errors_key(self.prefix), fields,  # type: ignore[arg-type]
                               maxlen=ERRORS_KEEP, approximate=True)

    async def on_completed(self, job: Job, result: Any) -> None:
        """Record now − ``processed_on`` in the durations list and the histogram."""
        if not job.processed_on:
            return
        ms = max(int(time.time() * 1000) - int(job.processed_on), 0)
        await record_duration(self.client, self.prefix, job.queue, ms)


async def record_duration(client: AnyRedis, prefix: str, queue: str, ms: int) -> None:
    """Add one processing time (ms) to ``queue``'s durations list and histogram."""
    durations = durations_key(prefix, queue)
    hist = histogram_key(prefix, queue)
    pipe = client.pipeline(transaction=False)
    pipe.lpush(durations, ms)
    pipe.ltrim(durations, 0, DURATIONS_KEEP - 1)
    pipe.hincrby(hist, bucket_field(ms / 1000, HISTOGRAM_BUCKETS_S), 1)
    pipe.hincrby(hist, "count", 1)
    pipe.hincrby(hist, "sum_ms", ms)
    await pipe.execute()


_lazy: dict[str, QueueMonitor] = {}


def __getattr__(name: str) -> Any:
    """``queue_monitor`` is created from the environment on first use."""
    if name == "queue_monitor":
        if name not in _lazy:
            _lazy[name] = QueueMonitor(load_settings())
        return _lazy[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    queue_monitor: QueueMonitor
