"""The three queues, their names and defaults, in one table.

Everything another module needs to know about a queue — its name, how many jobs a
worker runs at once, how fast it may go, how often a job is retried and how long
finished jobs are kept — is read from ``QUEUE_DEFAULTS`` (or from ``Settings.queues``,
which starts from it and may override any field from the environment).

Retention is bounded by both age and count on purpose: completed and failed jobs stay
inspectable for a while, and Redis memory stays bounded however many jobs run.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

DEFAULT_KEY_PREFIX = "nlq"


class QueueName(StrEnum):
    """Names of the queues; the value is the BullMQ queue name in Redis."""

    EMAIL = "email"
    ANALYTICS = "analytics"
    AI = "ai"


QUEUE_NAMES: tuple[str, ...] = tuple(q.value for q in QueueName)


class RateLimit(BaseModel):
    """At most ``max`` jobs per ``duration_ms`` for the whole queue (BullMQ limiter)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max: PositiveInt
    duration_ms: PositiveInt

    def to_bullmq(self) -> dict[str, int]:
        return {"max": self.max, "duration": self.duration_ms}


class Backoff(BaseModel):
    """Delay between attempts: ``fixed`` or ``exponential`` (delay * 2^(attempt-1))."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["fixed", "exponential"] = "exponential"
    delay_ms: int = Field(default=1000, ge=0)
    jitter: float = Field(default=0.0, ge=0.0, le=1.0)

    def to_bullmq(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"type": self.type, "delay": self.delay_ms}
        if self.jitter:
            opts["jitter"] = self.jitter
        return opts


class Retention(BaseModel):
    """Keep finished jobs at most ``age_s`` seconds and at most ``count`` of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    age_s: PositiveInt
    count: PositiveInt

    def to_bullmq(self) -> dict[str, int]:
        return {"age": self.age_s, "count": self.count}


class QueueConfig(BaseModel):
    """How one queue behaves: worker concurrency, rate limit and default job options.

    Its workers run with ``engine.WorkerOptions.for_queue(config)``, the one place the
    worker-side fields below become a worker's options.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = ""
    concurrency: PositiveInt = 1
    rate_limit: RateLimit | None = None
    attempts: PositiveInt = 3
    backoff: Backoff = Backoff()
    remove_on_complete: Retention = Retention(age_s=24 * 3600, count=1000)
    remove_on_fail: Retention = Retention(age_s=7 * 24 * 3600, count=5000)
    # Worker locks: a job whose worker stops renewing its lock for lock_duration_ms is
    # found by the next stalled check (every stalled_interval_ms) and run again, at most
    # max_stalled_count times before it fails.
    lock_duration_ms: PositiveInt = 30_000
    stalled_interval_ms: PositiveInt = 30_000
    max_stalled_count: Annotated[int, Field(ge=0)] = 1

    def default_job_options(self) -> dict[str, Any]:
        """BullMQ ``defaultJobOptions`` (camelCase, as stored in Redis)."""
        return {
            "attempts": self.attempts,
            "backoff": self.backoff.to_bullmq(),
            "removeOnComplete": self.remove_on_complete.to_bullmq(),
            "removeOnFail": self.remove_on_fail.to_bullmq(),
        }


QUEUE_DEFAULTS: dict[str, QueueConfig] = {
    QueueName.EMAIL: QueueConfig(
        description="Campaign and transactional mail, sent in batches; priority-based.",
        concurrency=5,
        # Jobs are batches of up to 100 recipients; per-email limits live in the sender.
        rate_limit=RateLimit(max=50, duration_ms=1000),
        attempts=5,
        backoff=Backoff(type="exponential", delay_ms=2000, jitter=0.2),
        remove_on_complete=Retention(age_s=24 * 3600, count=2000),
        remove_on_fail=Retention(age_s=14 * 24 * 3600, count=10000),
    ),
    QueueName.ANALYTICS: QueueConfig(
        description="Aggregation, reports and insights, processed in batches.",
        concurrency=3,
        attempts=3,
        backoff=Backoff(type="exponential", delay_ms=5000),
        remove_on_complete=Retention(age_s=24 * 3600, count=1000),
        remove_on_fail=Retention(age_s=7 * 24 * 3600, count=5000),
    ),
    QueueName.AI: QueueConfig(
        description="Content generation, subject optimisation and campaign insights.",
        concurrency=2,
        # Conservative default for hosted providers; a 429 pauses the queue for Retry-After.
        rate_limit=RateLimit(max=10, duration_ms=1000),
        attempts=3,
        backoff=Backoff(type="exponential", delay_ms=10000, jitter=0.2),
        remove_on_complete=Retention(age_s=3 * 24 * 3600, count=1000),
        remove_on_fail=Retention(age_s=7 * 24 * 3600, count=5000),
    ),
}

# Campaign batches are added with this priority; transactional mail (no priority, or a
# smaller number) is served first. BullMQ serves un-prioritised jobs before prioritised
# ones, and smaller priority numbers first.
EMAIL_BULK_PRIORITY = 1000

# Job names each queue's producers use (processors are registered under these names).
EMAIL_SEND_BATCH = "send-batch"
ANALYTICS_CAMPAIGN_COMPLETE = "campaign-complete"
ANALYTICS_DAILY_AGGREGATION = "daily-aggregation"
ANALYTICS_INBOUND_MESSAGE = "inbound-message"  # a bounce or complaint that came back
