"""``Job``: what a processor receives — the job's fields plus a few actions on it.

The fields are parsed (``jobhash.parse_job_hash``, strictly) from the job hash that
``moveToActive``/``moveToFinished`` return (``HGETALL`` inside the script), so handing a
job to a processor costs no extra round trip. Option keys are decoded from BullMQ's
short wire names (``kl`` → ``keepLogs``, ``de`` → ``deduplication`` …) exactly as
``bullmq``'s ``optsFromJSON`` does.

The actions (``update_progress``, ``log``, ``move_to_delayed``) run on the worker's
event loop. Sync processors run in a thread pool, so each action returns an awaitable
when called on the loop and, when called from any other thread, runs the coroutine on
the loop (``run_coroutine_threadsafe``), blocks until it is done and returns an
already-completed awaitable — ``job.update_progress(50)`` works from a thread without
``await``, and ``await job.update_progress(50)`` works in async code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from ..errors import JobNotFoundError
from .jobhash import parse_job_hash

if TYPE_CHECKING:
    from ..connection import AnyRedis
    from .worker import Worker

T = TypeVar("T")

# bullmq.job.optsDecodeMap
_OPTS_DECODE = {
    "fpof": "failParentOnFailure",
    "cpof": "continueParentOnFailure",
    "idof": "ignoreDependencyOnFailure",
    "rdof": "removeDependencyOnFailure",
    "kl": "keepLogs",
    "de": "deduplication",
}
_THREAD_CALL_TIMEOUT_S = 60.0


class _Done(Generic[T]):
    """An already-finished awaitable (the result of a call made from a thread)."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self._value
        yield  # pragma: no cover - makes this a generator


class Job:
    """One job being processed, as the processor sees it.

    Attributes:
        id: the job id.
        name: the job name (what the processor registry dispatches on).
        data: the job data (decoded JSON; a dict for every job this package enqueues).
        opts: BullMQ job options, camelCase as stored (``attempts``, ``backoff`` …).
        attempts_made: failed or completed attempts before this one.
        attempts_started: times the job was moved to active, including this one.
        timestamp: when the job was added (ms since the epoch).
        processed_on: when this attempt started (ms).
        stalled_counter: how many times the job stalled.
        progress: the last progress value.
        failed_for_good: set by the worker before the ``failed`` hooks run — True when
            this attempt's failure is final (unrecoverable, attempts exhausted, or the
            backoff said ``-1`` or raised), False when a retry is coming.
        queue: the queue name.
        token: the lock token of this attempt.
    """

    __slots__ = (
        "_data_json",
        "_released",
        "_stacktrace",
        "_worker",
        "attempts_made",
        "attempts_started",
        "data",
        "deferred_failure",
        "delay",
        "failed_for_good",
        "failed_reason",
        "id",
        "name",
        "opts",
        "priority",
        "processed_on",
        "progress",
        "queue",
        "repeat_job_key",
        "stalled_counter",
        "timestamp",
        "token",
    )

    def __init__(self, worker: Worker, job_id: str, raw: dict[str, str], token: str) -> None:
        self._worker = worker
        self._released = False
        self.queue = worker.queue
        self.id = job_id
        self.token = token
        parsed = parse_job_hash(raw, strict=True)
        self._data_json: str | None = raw.get("data")
        self.name = parsed.name
        self.data: Any = parsed.data
        self.opts: dict[str, Any] = {_OPTS_DECODE.get(k, k): v for k, v in parsed.opts.items()}
        self.timestamp = parsed.timestamp or 0
        self.processed_on = parsed.processed_on or 0
        self.delay = parsed.delay
        self.priority = parsed.priority
        self.attempts_made = parsed.attempts_made
        self.attempts_started = parsed.attempts_started
        self.stalled_counter = parsed.stalled_counter
        self.deferred_failure = parsed.deferred_failure
        self.repeat_job_key = parsed.repeat_job_key
        self.failed_reason: str | None = parsed.failed_reason
        self.failed_for_good = False
        self._stacktrace = parsed.stacktrace
        self.progress: Any = parsed.progress

    def __repr__(self) -> str:
        return f"<Job {self.queue}:{self.id} name={self.name!r} attempt={self.attempt}>"

    @property
    def data_bytes(self) -> int:
        """Bytes of the data's JSON as stored in the job hash (what the payload caps
        count), without encoding the data again."""
        return len(self._data_json.encode()) if self._data_json else 0

    @property
    def attempt(self) -> int:
        """This attempt's number, starting at 1."""
        return self.attempts_made + 1

    @property
    def max_attempts(self) -> int:
        """``opts.attempts`` (at least 1)."""
        try:
            return max(int(self.opts.get("attempts") or 1), 1)
        except (TypeError, ValueError):
            return 1

    def stacktrace(self) -> list[str]:
        """Stack traces of the previous failed attempts (oldest first)."""
        return list(self._stacktrace)

    def snapshot(self) -> dict[str, Any]:
        """A plain, picklable copy of the job's fields (what process-pool processors get)."""
        return {
            "id": self.id,
            "name": self.name,
            "queue": self.queue,
            "data": self.data,
            "opts": dict(self.opts),
            "attempts_made": self.attempts_made,
            "attempts_started": self.attempts_started,
            "attempt": self.attempt,
            "timestamp": self.timestamp,
            "processed_on": self.processed_on,
            "progress": self.progress,
        }

    # --- actions -------------------------------------------------------------------------
    def update_progress(self, value: Any) -> Awaitable[None]:
        """Store the progress (any JSON value) and emit the ``progress`` event."""
        return self._bridge(self._update_progress(value))

    def log(self, text: str) -> Awaitable[int]:
        """Append a line to the job's log (BullMQ ``addLog``; ``keepLogs`` honoured)."""
        return self._bridge(self._log(text))

    def move_to_delayed(self, timestamp_ms: int) -> Awaitable[None]:
        """Park the job until ``timestamp_ms`` without using an attempt.

        Then raise ``DelayedError`` so the worker leaves the job where it is.
        """
        return self._bridge(self._move_to_delayed(timestamp_ms))

    async def _update_progress(self, value: Any) -> None:
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
        code = await self._worker._commands_or_raise().update_progress(self.id, encoded)
        if code < 0:
            raise JobNotFoundError(self.queue, self.id)
        self.progress = value
        await self._worker._emit("progress", self, value)

    async def _log(self, text: str) -> int:
        keep = self.opts.get("keepLogs")
        count = await self._worker._commands_or_raise().add_log(
            self.id, str(text), int(keep) if keep else None)
        if count < 0:
            raise JobNotFoundError(self.queue, self.id)
        return count

    async def _move_to_delayed(self, timestamp_ms: int) -> None:
        from .commands import now_ms

        commands = self._worker._commands_or_raise()
        await commands.move_to_delayed(self.id, self.token, int(timestamp_ms) - now_ms(),
                                       skip_attempt=True)
        self._released = True
        self._worker._release_lock(self.id)

    def _bridge(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        loop = self._worker.loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return coro
        if loop is None or loop.is_closed():
            coro.close()
            raise RuntimeError(f"the worker of queue {self.queue!r} is not running")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        return _Done(future.result(_THREAD_CALL_TIMEOUT_S))


MALFORMED = "malformed job hash"


def job_from_fetch(worker: Worker, job_id: Any, raw: list[Any] | None, token: str) -> Job:
    """The ``Job`` for a hash ``moveToActive`` returned as a flat field/value list.

    A hash another producer wrote badly (undecodable or absurdly nested JSON, opts that
    are not an object, text where numbers belong) becomes a job that fails at once from
    its id and name alone — never dropped, never left to cycle.
    """
    it = iter(raw or [])
    fields = dict(zip(it, it, strict=True))
    job_id = str(job_id)
    try:
        return Job(worker, job_id, fields, token)
    except Exception as exc:  # includes RecursionError
        broken = Job(worker, job_id, {"name": str(fields.get("name", "")), "data": "null",
                                      "opts": "{}", "progress": "0"}, token)
        reason = str(exc)[:200] or type(exc).__name__
        broken.deferred_failure = (
            f"job data or options are not valid JSON: {reason}"
            if isinstance(exc, json.JSONDecodeError) else
            f"{MALFORMED} (data, options or counters unreadable): "
            f"{type(exc).__name__}: {reason}")
        return broken


async def repair_counters(client: AnyRedis, key: str) -> None:
    """Reset counters that are not integers, so BullMQ's scripts can fail the job.

    ``moveToFinished`` increments ``atm``/``ats`` with HINCRBY; on text there the
    script would stop half-way and the job would vanish from every state.
    """
    counters = ("atm", "ats", "stc", "attemptsMade")
    values: list[Any] = await client.hmget(key, list(counters))
    bad = [k for k, v in zip(counters, values, strict=True)
           if v is not None and not str(v).lstrip("-").isdigit()]
    if bad:
        await client.hset(key, mapping=cast(Any, dict.fromkeys(bad, "0")))
