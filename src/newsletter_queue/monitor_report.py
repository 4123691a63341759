"""The monitor's records and thresholds: plain data with JSON and Markdown renderings.

Kept apart from ``monitor.py`` (which reads Redis) so that the API, the CLI and the
Prometheus collector can use the types, and the health rules can be tested without a
server. Key names of the monitor's own Redis data are in ``keyspace``.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

HealthStatus = Literal["healthy", "warning", "critical"]
_RANK: dict[str, int] = {"healthy": 0, "warning": 1, "critical": 2}

ERRORS_KEEP = 1000
DURATIONS_KEEP = 1000
# Prometheus histogram bucket bounds (seconds) for job processing time.
HISTOGRAM_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def bucket_field(seconds: float, bounds: tuple[float, ...] = HISTOGRAM_BUCKETS_S) -> str:
    """The histogram hash field of the smallest bucket holding ``seconds``."""
    index = bisect.bisect_left(bounds, seconds)
    return "+Inf" if index >= len(bounds) else repr(bounds[index])


def percentile(sorted_values: list[int], pct: float) -> int | None:
    """Nearest-rank percentile of an ascending list (``None`` when empty)."""
    if not sorted_values:
        return None
    rank = max(math.ceil(pct / 100 * len(sorted_values)), 1)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def worst(statuses: Iterable[str]) -> HealthStatus:
    """The most severe of ``statuses`` (``healthy`` when there are none)."""
    top = max((_RANK.get(s, 0) for s in statuses), default=0)
    levels: tuple[HealthStatus, ...] = ("healthy", "warning", "critical")
    return levels[top]


def _iso(ms: int | None) -> str | None:
    return None if not ms else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


class MonitorThresholds(BaseModel):
    """When a queue counts as ``warning`` or ``critical`` (``Settings.monitor``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_rate_warning: float = Field(default=0.05, ge=0, le=1)
    error_rate_critical: float = Field(default=0.25, ge=0, le=1)
    error_rate_min_jobs: int = Field(
        default=10, ge=1, description="Finished jobs in the hour before the rate counts")
    backlog_age_warning_s: float = Field(default=300, gt=0)
    backlog_age_critical_s: float = Field(default=1800, gt=0)
    no_workers_grace_s: float = Field(
        default=30, ge=0, description="Jobs may wait this long without workers before "
        "it is critical (a warning until then)")
    memory_warning_ratio: float = Field(default=0.8, gt=0, le=1)
    memory_critical_ratio: float = Field(default=0.95, gt=0, le=1)


@dataclass(frozen=True)
class WorkerInfo:
    """One connected worker, from ``CLIENT LIST``."""

    name: str
    queue: str
    addr: str
    age_s: int
    idle_s: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RedisInfo:
    """The server as the monitor saw it; ``url`` is always masked."""

    ok: bool
    url: str
    version: str | None = None
    used_memory: int = 0
    maxmemory: int = 0
    maxmemory_policy: str = ""
    connected_clients: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ErrorRecord:
    """One failed attempt, as the workers wrote it to the errors stream."""

    id: str
    queue: str
    job_id: str
    name: str
    error: str
    error_type: str
    attempt: int
    max_attempts: int
    final: bool
    timestamp_ms: int

    @classmethod
    def from_fields(cls, entry_id: str, raw: Mapping[str, Any]) -> ErrorRecord:
        def num(key: str) -> int:
            try:
                return int(raw.get(key) or 0)
            except ValueError:
                return 0

        return cls(id=entry_id, queue=str(raw.get("queue", "")),
                   job_id=str(raw.get("job_id", "")), name=str(raw.get("name", "")),
                   error=str(raw.get("error", "")), error_type=str(raw.get("error_type", "")),
                   attempt=num("attempt"), max_attempts=num("max_attempts"),
                   final=raw.get("final") == "1", timestamp_ms=num("ts"))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time"] = _iso(self.timestamp_ms)
        return out


@dataclass(frozen=True)
class QueueMetrics:
    """``QueueMonitor.get_queue_metrics``: one queue's numbers at one moment.

    ``*_per_minute`` hold 60 values, oldest first; the first is the minute starting at
    ``minute_start_ms``, the last is the current (unfinished) minute.
    """

    queue: str
    counts: dict[str, int]
    is_paused: bool
    minute_start_ms: int
    completed_per_minute: list[int]
    failed_per_minute: list[int]
    completed_total: int
    failed_total: int
    completed_last_hour: int
    failed_last_hour: int
    error_rate: float | None
    processing_ms: dict[str, int | None]
    oldest_waiting_age_s: float | None
    workers: int
    worker_list: list[WorkerInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["worker_list"] = [w.to_dict() for w in self.worker_list]
        return out


@dataclass(frozen=True)
class QueueHealth:
    """A queue's health verdict and why."""

    queue: str
    status: HealthStatus
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MonitorReport:
    """``QueueMonitor.generate_report``: all queues, with JSON and Markdown renderings."""

    generated_at_ms: int
    redis: RedisInfo
    status: HealthStatus
    queues: dict[str, QueueMetrics]
    health: dict[str, QueueHealth]
    recent_errors: list[ErrorRecord]

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": _iso(self.generated_at_ms),
            "status": self.status,
            "redis": self.redis.to_dict(),
            "queues": {name: {**m.to_dict(), "health": self.health[name].to_dict()}
                       for name, m in self.queues.items() if name in self.health},
            "health": {name: h.to_dict() for name, h in self.health.items()},
            "recent_errors": [e.to_dict() for e in self.recent_errors],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def to_markdown(self) -> str:
        lines = [f"# Queue report — {_iso(self.generated_at_ms)}", "",
                 f"Overall: **{self.status}**", ""]
        r = self.redis
        if r.ok:
            memory = f"{r.used_memory / 1048576:.1f} MiB"
            if r.maxmemory:
                memory += f" of {r.maxmemory / 1048576:.0f} MiB"
            lines += [f"Redis {r.version} at {r.url}: {memory} used", ""]
        else:
            lines += [f"Redis at {r.url} is **unreachable**: {r.error}", ""]
        if self.queues:
            lines += ["| queue | health | waiting | active | delayed | completed | failed "
                      "| done/h | failed/h | error rate | p95 ms | oldest wait s | workers |",
                      "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
            for name, m in self.queues.items():
                c = m.counts
                rate = "–" if m.error_rate is None else f"{m.error_rate:.1%}"
                p95 = m.processing_ms.get("p95")
                age = "–" if m.oldest_waiting_age_s is None else f"{m.oldest_waiting_age_s:.0f}"
                paused = " (paused)" if m.is_paused else ""
                lines.append(
                    f"| {name}{paused} | {self.health[name].status} | "
                    f"{c.get('waiting', 0) + c.get('prioritized', 0)} | {c.get('active', 0)} | "
                    f"{c.get('delayed', 0)} | {c.get('completed', 0)} | {c.get('failed', 0)} | "
                    f"{m.completed_last_hour} | {m.failed_last_hour} | {rate} | "
                    f"{'–' if p95 is None else p95} | {age} | {m.workers} |")
            lines.append("")
        reasons = [(q, why) for q, h in self.health.items() for why in h.reasons]
        if reasons:
            lines += ["## Problems", ""] + [f"- **{q}**: {why}" for q, why in reasons] + [""]
        if self.recent_errors:
            lines += ["## Recent errors", "", "| time | queue | job | name | attempt | error |",
                      "|---|---|---|---|--:|---|"]
            for e in self.recent_errors:
                text = e.error.replace("|", "\\|").replace("\n", " ")[:120]
                lines.append(f"| {_iso(e.timestamp_ms)} | {e.queue} | {e.job_id} | {e.name} | "
                             f"{e.attempt}{' (final)' if e.final else ''} | {text} |")
            lines.append("")
        return "\n".join(lines)
