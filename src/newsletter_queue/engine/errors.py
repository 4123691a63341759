"""Exceptions a processor raises to steer the worker, and the engine's own errors.

Control signals are not errors, so they are not under ``NewsletterQueueError``: a
processor that wraps its calls in ``except NewsletterQueueError`` still lets them reach
the engine. A job that must fail for good is a real failure, so ``UnrecoverableError``
is an error (the whole tree is drawn in ``newsletter_queue.errors``)::

    JobControl                       raised by a processor to steer what happens next
    ├── RateLimited                  pause the queue; the job goes back to wait (no attempt used)
    └── DelayedError                 the processor moved its job to delayed itself

    NewsletterQueueError
    ├── UnrecoverableError           fail now, whatever attempts are left
    └── JobLockLostError             the worker no longer owns the job (lock expired/taken)

Each is picklable with its arguments, so a processor running in a process pool can
raise them too.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import NewsletterQueueError


class JobControl(Exception):
    """Base of the signals processors raise to control the job's next state.

    Deliberately not a ``NewsletterQueueError``: catching every error of the package
    must not catch "pause the queue" or "I parked this job myself".
    """


class DelayedError(JobControl):
    """Raise after ``await job.move_to_delayed(ts)``: the job is already delayed."""

    def __init__(self, message: str = "job moved to delayed by its processor") -> None:
        super().__init__(message)


class RateLimited(JobControl):
    """Rate-limit the whole queue for ``ms`` and put this job back in wait.

    The attempt is not counted (BullMQ's ``RateLimitError`` +
    ``moveJobFromActiveToWait``). With ``ms=None`` the limiter key's current TTL applies
    (use it after ``await worker.rate_limit(ms)``).

    Attributes:
        ms: how long the queue stays rate limited, in milliseconds.
    """

    def __init__(self, ms: int | None = None) -> None:
        if ms is not None and ms < 0:
            raise ValueError("ms must be ≥ 0")
        self.ms = ms
        super().__init__(ms)

    def __str__(self) -> str:
        return "rate limited" if self.ms is None else f"rate limited for {self.ms} ms"


class UnrecoverableError(NewsletterQueueError):
    """Fail the job at once, without using its remaining attempts."""


class JobLockLostError(NewsletterQueueError):
    """A script refused to move the job: its lock is gone or owned by another worker.

    Attributes:
        queue: the queue name.
        job_id: the job's id.
        code: BullMQ's error code (-1 missing job, -2 missing lock, -3 not active,
            -6 lock owned by another token).
    """

    _REASONS: ClassVar[dict[int, str]] = {
        -1: "the job no longer exists",
        -2: "its lock is missing (expired: the job may have stalled)",
        -3: "it is not in the active list",
        -6: "its lock belongs to another worker",
    }

    def __init__(self, queue: str, job_id: str, code: int, command: str) -> None:
        self.queue = queue
        self.job_id = job_id
        self.code = code
        self.command = command
        reason = self._REASONS.get(code, f"error code {code}")
        super().__init__(f"{command} of job {job_id!r} in queue {queue!r} refused: {reason}")

    def __reduce__(self) -> tuple[type[JobLockLostError], tuple[str, str, int, str]]:
        return (type(self), (self.queue, self.job_id, self.code, self.command))
