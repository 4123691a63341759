"""Read-side records: job and queue snapshots returned by the manager, monitor and API.

BullMQ stores a job as a Redis hash with camelCase (and some abbreviated) fields; these
dataclasses are the typed, snake_case view of it. They hold plain JSON-able values so
the dev API and the CLI can render them directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .engine.jobhash import JobHash, parse_job_hash
from .engine.states import JOB_STATES

__all__ = ["JOB_STATES", "EnqueuedJob", "HealthCheck", "JobInfo", "QueueStats"]


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


@dataclass(frozen=True, kw_only=True)
class JobInfo(JobHash):
    """A snapshot of one job as stored in Redis: its hash, where it is and its state."""

    id: str
    queue: str
    state: str | None = None

    @classmethod
    def from_hash(
        cls, queue: str, job_id: str, raw: dict[str, str], state: str | None = None
    ) -> JobInfo:
        parsed = parse_job_hash(raw)
        return cls(id=job_id, queue=queue, state=state,
                   **{f.name: getattr(parsed, f.name) for f in fields(JobHash)})

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "queue": self.queue, **asdict(self)}  # id and queue first
        for worker_only in _WORKER_FIELDS:
            out.pop(worker_only)
        return out


# Fields of the hash only the worker acts on; job lists and exports leave them out.
_WORKER_FIELDS = ("deferred_failure", "repeat_job_key")


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
