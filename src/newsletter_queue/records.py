"""Read-side records: job and queue snapshots returned by the manager, monitor and API.

BullMQ stores a job as a Redis hash with camelCase (and some abbreviated) fields; these
dataclasses are the typed, snake_case view of it. They hold plain JSON-able values so
the dev API and the CLI can render them directly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

# States a job can be in, in the order dashboards show them.
JOB_STATES: tuple[str, ...] = (
    "waiting", "prioritized", "active", "delayed", "completed", "failed",
    "paused", "waiting-children",
)


def _json(value: str | None, default: Any = None) -> Any:
    if value is None or value == "":
        return default
    try:
        return json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested beyond what Python parses
        return value


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class EnqueuedJob:
    """What an enqueue call returns: enough to find the job again.

    ``created`` is false when the call named a ``job_id`` that already existed: BullMQ
    then adds nothing, and ``data``/``opts`` are what this call *asked* for.
    """

    id: str
    name: str
    queue: str
    data: dict[str, Any]
    opts: dict[str, Any]
    created: bool = True


@dataclass(frozen=True)
class JobInfo:
    """A snapshot of one job as stored in Redis."""

    id: str
    queue: str
    name: str
    data: Any
    opts: dict[str, Any]
    timestamp: int | None
    delay: int
    priority: int
    progress: Any
    attempts_made: int
    attempts_started: int
    stalled_counter: int
    processed_on: int | None
    finished_on: int | None
    failed_reason: str | None
    stacktrace: list[str] = field(default_factory=list)
    return_value: Any = None
    processed_by: str | None = None
    state: str | None = None

    @classmethod
    def from_hash(
        cls, queue: str, job_id: str, raw: dict[str, str], state: str | None = None
    ) -> JobInfo:
        stack = _json(raw.get("stacktrace"), [])
        return cls(
            id=job_id,
            queue=queue,
            name=raw.get("name", ""),
            data=_json(raw.get("data"), {}),
            opts=_json(raw.get("opts"), {}) or {},
            timestamp=_int(raw.get("timestamp")),
            delay=_int(raw.get("delay")) or 0,
            priority=_int(raw.get("priority")) or 0,
            progress=_json(raw.get("progress"), 0),
            attempts_made=_int(raw.get("atm") or raw.get("attemptsMade")) or 0,
            attempts_started=_int(raw.get("ats")) or 0,
            stalled_counter=_int(raw.get("stc")) or 0,
            processed_on=_int(raw.get("processedOn")),
            finished_on=_int(raw.get("finishedOn")),
            failed_reason=raw.get("failedReason") or None,
            stacktrace=[str(s) for s in stack] if isinstance(stack, list) else [str(stack)],
            return_value=_json(raw.get("returnvalue")),
            processed_by=raw.get("pb") or None,
            state=state,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QueueStats:
    """Job counts of one queue by state, and whether it is paused."""

    queue: str
    waiting: int
    prioritized: int
    active: int
    delayed: int
    completed: int
    failed: int
    paused: int
    waiting_children: int
    is_paused: bool

    @property
    def pending(self) -> int:
        """Jobs not yet finished (waiting in any form, delayed or running)."""
        return (self.waiting + self.prioritized + self.active + self.delayed + self.paused
                + self.waiting_children)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pending"] = self.pending
        return out


@dataclass(frozen=True)
class HealthCheck:
    """Result of ``QueueManager.health_check``."""

    healthy: bool
    redis_ok: bool
    redis_latency_ms: float | None
    redis_version: str | None
    redis_url: str
    queues: dict[str, QueueStats]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "redis": {
                "ok": self.redis_ok,
                "latency_ms": self.redis_latency_ms,
                "version": self.redis_version,
                "url": self.redis_url,
            },
            "queues": {name: s.to_dict() for name, s in self.queues.items()},
            "error": self.error,
        }
