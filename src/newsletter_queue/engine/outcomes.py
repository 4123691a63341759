"""Recording how an attempt ended: completed, retried (delayed or at once), failed.

BullMQ's rules, as Node's ``Worker.handleCompleted``/``handleFailed`` and
``Job.moveToFailed`` apply them:

- **completed**: ``moveToFinished`` with ``fetchNext`` — the next job comes back in the
  same script call (none while closing).
- **failed, attempts left** (and not ``UnrecoverableError``): the backoff decides —
  ``moveToDelayed`` (also fetching the next job) or ``retryJob`` (back to wait at once);
  a backoff of ``-1`` (or one that raises) fails the job now. The error message and stack
  trace are stored (``stackTraceLimit`` honoured); the ``failed`` hook fires for every
  failed attempt, after ``job.failed_for_good`` was set. Only this module knows whether
  the job will run again, so hooks read that flag instead of guessing from attempt counts
  (a guess misses the backoff's ``-1`` and a backoff that raises).
- **RateLimited**: the queue's limiter key is set for ``ms`` and the job goes back to
  wait through ``moveJobFromActiveToWait`` — no attempt used.
- **DelayedError**: the processor already parked its job; nothing to record.

Every call waits out Redis outages (the shared ``Health``); a call the scripts refuse
(lock lost) drops this attempt's outcome with a warning — another worker owns the job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from .backoff import BackoffStrategy, compute_delay
from .commands import NOTHING, NextJob, QueueCommands
from .errors import DelayedError, JobLockLostError, RateLimited, UnrecoverableError
from .fetcher import Fetcher
from .health import Health, is_connection_error
from .job import Job

log = logging.getLogger(__name__)

LOST = object()  # a call that could not be recorded (lock lost / gave up while down)
Emit = Callable[..., Awaitable[None]]


class Outcomes:
    """Records attempt outcomes for one worker and hands back the next job, if fetched.

    Args:
        queue: for log lines.
        commands: the queue's script calls.
        fetcher: updated with what ``fetchNext`` learnt (rate limit, next delay, drained).
        health: shared outage state.
        emit: awaits the worker's hooks (``emit(event, *args)``).
        inflight: job id → token of the jobs this worker holds; entries are removed once
            the outcome is recorded (what ``close()`` requeues is what is left).
        closing: set when the worker stops fetching.
        backoff_strategy: the worker's custom backoff.
        make_job: builds a ``Job`` from a fetched ``NextJob`` and token.
    """

    def __init__(
        self,
        *,
        queue: str,
        commands: QueueCommands,
        fetcher: Fetcher,
        health: Health,
        emit: Emit,
        inflight: dict[str, str],
        closing: asyncio.Event,
        backoff_strategy: BackoffStrategy | None,
        make_job: Callable[[NextJob, str], Job],
    ) -> None:
        self.queue = queue
        self.commands = commands
        self.fetcher = fetcher
        self.health = health
        self.emit = emit
        self.inflight = inflight
        self.closing = closing
        self.backoff_strategy = backoff_strategy
        self.make_job = make_job
        self.completed_count = 0
        self.failed_count = 0

    async def completed(self, job: Job, result: Any, packed: bytes) -> Job | None:
        """Record a success; returns the next job when ``fetchNext`` found one."""
        try:
            value = "null" if result is None else json.dumps(
                result, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            error = TypeError(f"the return value of job {job.id} is not JSON-serialisable: {exc}")
            return await self.failed(job, error, packed)
        fetch = not self.closing.is_set()
        commands = self.commands
        nxt = await self.record(job, "completing", lambda: commands.move_to_finished(
            job.id, job.opts, "completed", value, job.token, fetch_next=fetch))
        if nxt is LOST:
            return None
        job.attempts_made += 1
        self.completed_count += 1
        await self.emit("completed", job, result)
        return await self._next(nxt, job.token, fetch)

    async def failed(self, job: Job, exc: Exception, packed: bytes) -> Job | None:
        """Record a failed attempt (retry or final); returns the next job if fetched."""
        if isinstance(exc, RateLimited):
            return await self._rate_limited(job, exc)
        if isinstance(exc, DelayedError):
            self.inflight.pop(job.id, None)
            if not job._released:
                log.warning("queue %s: job %s raised DelayedError without move_to_delayed(); "
                            "it stays active until its lock expires", self.queue, job.id)
            self.fetcher.note_unknown()
            return None
        reason = str(exc) or type(exc).__name__
        fields = {"failedReason": reason, "stacktrace": _stacktrace(job, exc)}
        fetch = not self.closing.is_set()
        delay: int | None = -1
        if not isinstance(exc, UnrecoverableError) and job.attempt < job.max_attempts:
            try:
                delay = await compute_delay(job.opts.get("backoff"), job.attempts_made + 1,
                                            exc, job, self.backoff_strategy)
            except Exception as backoff_error:
                log.exception("queue %s: backoff of job %s failed; failing the job",
                              self.queue, job.id)
                fields["failedReason"] = reason = f"{reason} (backoff failed: {backoff_error})"
        commands = self.commands
        nxt: Any
        if delay == -1:
            nxt = await self.record(job, "failing", lambda: commands.move_to_finished(
                job.id, job.opts, "failed", reason, job.token, fetch_next=fetch, fields=fields))
        elif delay:
            retry_in = delay
            nxt = await self.record(job, "delaying", lambda: commands.move_to_delayed(
                job.id, job.token, retry_in, skip_attempt=False, fields=fields,
                packed_fetch_opts=packed if fetch else None))
        else:
            nxt = await self.record(job, "retrying", lambda: commands.retry_job(
                job.id, job.token, lifo=bool(job.opts.get("lifo")), fields=fields))
        if nxt is LOST:
            return None
        job.attempts_made += 1
        job.failed_reason = reason
        job.failed_for_good = delay == -1
        self.failed_count += 1
        if delay == -1:
            log.warning("queue %s: job %s (%s) failed after %d attempt(s): %s", self.queue,
                        job.id, job.name, job.attempts_made, reason)
        else:
            log.info("queue %s: job %s (%s) attempt %d/%d failed, retrying in %d ms: %s",
                     self.queue, job.id, job.name, job.attempts_made, job.max_attempts,
                     delay or 0, reason)
        await self.emit("failed", job, exc)
        if delay == -1 or (isinstance(nxt, NextJob) and nxt.raw is not None):
            return await self._next(nxt, job.token, fetch)
        # moveToDelayed/retryJob say nothing about the rest of the queue: look next time.
        self.fetcher.note_unknown()
        return None

    async def _rate_limited(self, job: Job, exc: RateLimited) -> Job | None:
        commands = self.commands
        ms = exc.ms

        async def limit_and_requeue() -> int:
            if ms:
                await commands.set_rate_limit(ms)
            return await commands.move_to_wait(job.id, job.token)

        pttl = await self.record(job, "requeueing", limit_and_requeue)
        if pttl is LOST:
            return None
        ttl = int(pttl) if int(pttl) > 0 else (ms or 0)
        self.fetcher.rate_limited(ttl)
        self.fetcher.note_unknown()
        log.info("queue %s: job %s hit a rate limit; queue paused for %d ms, job back in "
                 "wait", self.queue, job.id, ttl)
        return None

    async def record(self, job: Job, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a state-changing call for ``job``, waiting out Redis outages.

        Returns the call's result, or ``LOST`` when the job is no longer ours (lock
        lost) or the worker is aborting while Redis is down — the job then stays active
        and is recovered as stalled. Either way the job stops being in flight.
        """
        try:
            while True:
                try:
                    return await call()
                except JobLockLostError as exc:
                    log.warning("queue %s: %s; the outcome of this attempt is dropped",
                                self.queue, exc)
                    await self.emit("error", exc)
                    return LOST
                except Exception as exc:
                    if not is_connection_error(exc):
                        log.exception("queue %s: %s job %s failed", self.queue, what, job.id)
                        await self.emit("error", exc)
                        return LOST
                    if await self.health.wait_up(exc, f"{what} job {job.id}"):
                        continue
                    log.warning("queue %s: gave up %s job %s while Redis is down; it will be "
                                "recovered as stalled", self.queue, what, job.id)
                    return LOST
        finally:
            self.inflight.pop(job.id, None)

    async def _next(self, nxt: Any, token: str, fetched: bool) -> Job | None:
        if not fetched:
            return None
        if not isinstance(nxt, NextJob):
            nxt = NOTHING
        if self.fetcher.note(nxt):
            await self.emit("drained")
        return self.make_job(nxt, token) if nxt.raw is not None else None


def _stacktrace(job: Job, exc: BaseException) -> str:
    stack = job.stacktrace()
    stack.append("".join(traceback.format_exception(exc)))
    limit = job.opts.get("stackTraceLimit")
    if isinstance(limit, int):
        stack = stack[-limit:] if limit > 0 else []
    return json.dumps(stack)
