"""``WorkerOptions``: the validated knobs of one ``Worker``, and where they come from.

Defaults are Node BullMQ's (30 s lock, 30 s stalled check, one allowed stall, 5 s
drain delay), so a queue behaves the same whichever worker runs it.

The knobs are declared once, here. ``WorkerKnobs`` is their typed keyword-argument view
(``Worker("email", fn, concurrency=5)``; a unit test keeps it equal to the dataclass),
and ``WorkerOptions.for_queue`` is the one place a queue of the table (``QueueConfig``)
becomes a worker's options — whoever starts a worker for a configured queue asks it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from ..queues import QueueConfig, RateLimit
from .backoff import BackoffStrategy
from .metrics import ONE_WEEK_POINTS


class WorkerKnobs(TypedDict, total=False):
    """Any ``WorkerOptions`` field as a keyword argument (see ``WorkerOptions``)."""

    concurrency: int
    limiter: RateLimit | None
    lock_duration_ms: int
    stalled_interval_ms: int
    max_stalled_count: int
    drain_delay_ms: int
    use_process_pool: bool
    metrics_max_data_points: int | None
    backoff_strategy: BackoffStrategy | None
    name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    """How a ``Worker`` processes its queue.

    Attributes:
        concurrency: jobs processed at once (slot tasks).
        limiter: at most ``max`` jobs per ``duration_ms`` for the whole queue.
        lock_duration_ms: TTL of a job's lock; renewed every half of it.
        stalled_interval_ms: how often active jobs with an expired lock are recovered.
        max_stalled_count: stalls allowed before a job fails as stalled.
        drain_delay_ms: longest wait on the marker when the queue is empty.
        use_process_pool: run plain-function processors in a process pool (they get
            ``job.snapshot()``).
        metrics_max_data_points: keep BullMQ metrics with this many per-minute points.
        backoff_strategy: custom backoff for job ``backoff.type`` values other than
            ``fixed``/``exponential``: ``(attempts_made, type, error, job) -> ms``.
        name: the worker's name (client names, the jobs' ``processedBy``); generated
            if omitted.
    """

    concurrency: int = 1
    limiter: RateLimit | None = None
    lock_duration_ms: int = 30_000
    stalled_interval_ms: int = 30_000
    max_stalled_count: int = 1
    drain_delay_ms: int = 5_000
    use_process_pool: bool = False
    metrics_max_data_points: int | None = None
    backoff_strategy: BackoffStrategy | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.concurrency < 1:
            problems.append("concurrency must be ≥ 1")
        if self.lock_duration_ms < 10:
            problems.append("lock_duration_ms must be ≥ 10")
        if self.stalled_interval_ms < 10:
            problems.append("stalled_interval_ms must be ≥ 10")
        if self.max_stalled_count < 0:
            problems.append("max_stalled_count must be ≥ 0")
        if self.drain_delay_ms < 1:
            problems.append("drain_delay_ms must be ≥ 1")
        if self.metrics_max_data_points is not None and self.metrics_max_data_points < 1:
            problems.append("metrics_max_data_points must be ≥ 1 (or None)")
        if self.name is not None and (not self.name or any(c.isspace() for c in self.name)):
            problems.append("name must be non-empty and contain no whitespace")
        if problems:
            raise ValueError("invalid worker options: " + "; ".join(problems))

    @classmethod
    def for_queue(cls, config: QueueConfig, **knobs: Unpack[WorkerKnobs]) -> WorkerOptions:
        """The options of a worker for a queue of the table, ``knobs`` overriding them.

        The queue's concurrency, rate limit, lock and stall rules, and BullMQ metrics a
        week long (what the monitor, ``/metrics`` and Bull Board read back).
        """
        return cls(
            concurrency=config.concurrency, limiter=config.rate_limit,
            lock_duration_ms=config.lock_duration_ms,
            stalled_interval_ms=config.stalled_interval_ms,
            max_stalled_count=config.max_stalled_count,
            metrics_max_data_points=ONE_WEEK_POINTS,
        ).with_knobs(**knobs)

    def with_knobs(self, **knobs: Unpack[WorkerKnobs]) -> WorkerOptions:
        """These options with ``knobs`` changed (validated again)."""
        return dataclasses.replace(self, **knobs) if knobs else self

    def limiter_opts(self) -> dict[str, int] | None:
        """The ``limiter`` argument of BullMQ's scripts."""
        return self.limiter.to_bullmq() if self.limiter is not None else None

    def describe(self) -> dict[str, Any]:
        """A loggable summary (no callables)."""
        return {
            "concurrency": self.concurrency,
            "limiter": self.limiter_opts(),
            "lock_duration_ms": self.lock_duration_ms,
            "stalled_interval_ms": self.stalled_interval_ms,
            "max_stalled_count": self.max_stalled_count,
            "process_pool": self.use_process_pool,
            "metrics": self.metrics_max_data_points,
        }
