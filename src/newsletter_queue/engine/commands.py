"""Typed calls of BullMQ's worker-side scripts: exact KEYS/ARGV, msgpack-packed opts.

Every KEYS/ARGV list here mirrors what the scripts of the pinned ``bullmq`` package
declare in their headers (and what ``bullmq/scripts.py`` and Node's
``redis-queue-backend.ts`` send). Opts arguments are msgpack-packed exactly as bullmq
packs them (``use_bin_type=True``) so Lua's ``cmsgpack.unpack`` sees the same tables.

``moveToActive``, ``moveToFinished`` (with ``fetchNext``) and ``moveToDelayed`` answer
with BullMQ's "next job data" shape, parsed into ``NextJob``:

- ``[hgetall, jobId, 0, 0]``  a job was moved to active and locked for us;
- ``[0, 0, ttl, 0]``          the queue is rate limited for ``ttl`` ms;
- ``[0, 0, 0, ts]``           nothing waiting; the next delayed job is due at ``ts``;
- ``[0, 0, 0, 0]`` / ``0``    nothing to do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]

from ..connection import AnyRedis
from .errors import JobLockLostError
from .keys import QueueKeys
from .scripts import ScriptLane, load_script

MAX_SAFE_INTEGER = 9_007_199_254_740_991  # what Node's Queue.rateLimit writes
_PACKED_CACHE_SIZE = 256


def now_ms() -> int:
    return int(time.time() * 1000)


def pack(value: Any) -> bytes:
    """msgpack exactly as bullmq packs script arguments."""
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


class NextJob(NamedTuple):
    """A script's "next job" answer (see the module docstring)."""

    raw: list[str] | None
    job_id: str | None
    rate_limit_ms: int
    delay_until: int


NOTHING = NextJob(None, None, 0, 0)


def parse_next(result: Any) -> NextJob:
    """Turn a script reply into ``NextJob`` (integers mean "nothing fetched")."""
    if not isinstance(result, list) or not result:
        return NOTHING
    raw = result[0] if isinstance(result[0], list) and result[0] else None
    job_id = str(result[1]) if raw is not None else None
    rate = int(result[2] or 0) if len(result) > 2 else 0
    delay = int(result[3] or 0) if len(result) > 3 else 0
    return NextJob(raw, job_id, rate, delay)


def keep_jobs(option: Any) -> dict[str, Any]:
    """BullMQ's ``getKeepJobs``: removeOnComplete/removeOnFail → ``keepJobs``."""
    if isinstance(option, bool):
        return {"count": 0 if option else -1}
    if isinstance(option, int):
        return {"count": option}
    if isinstance(option, dict):
        return option
    return {"count": -1}


class QueueCommands:
    """The worker-side scripts of one queue, bound to a command client.

    Args:
        client: the command client (not the blocking one); scripts run on a
            ``ScriptLane`` built from it.
        keys: the queue's keys.
        lock_duration_ms: the lock TTL set when a job is fetched or its lock renewed.
        limiter: ``{"max": n, "duration": ms}`` or ``None``.
        worker_name: stored as the job's ``pb`` (processed by) field.
        metrics_max_data_points: enables BullMQ metrics (``maxMetricsSize``).
        command_timeout_s: how long script replies may stall before the connection is
            considered dead.
    """

    def __init__(
        self,
        client: AnyRedis,
        keys: QueueKeys,
        *,
        lock_duration_ms: int,
        limiter: dict[str, int] | None,
        worker_name: str | None,
        metrics_max_data_points: int | None,
        command_timeout_s: float = 10.0,
    ) -> None:
        self.client = client
        self.lane = ScriptLane(client, timeout_s=command_timeout_s)
        self.keys = keys
        self.lock_duration_ms = lock_duration_ms
        self.limiter = limiter
        self.worker_name = worker_name
        self.max_metrics: int | str = metrics_max_data_points or ""
        k = keys
        self._fetch_keys = [k.wait, k.active, k.prioritized, k.events, k.stalled, k.limiter,
                            k.delayed, k.paused, k.meta, k.pc, k.marker]
        self._finish_keys = [k.wait, k.active, k.prioritized, k.events, k.stalled, k.limiter,
                             k.delayed, k.paused, k.meta, k.pc]
        self._metrics = {t: k.metrics(t) for t in ("completed", "failed")}
        self._targets = {"completed": k.completed, "failed": k.failed}
        self._move_to_active = load_script("moveToActive")
        self._move_to_finished = load_script("moveToFinished")
        self._move_to_delayed = load_script("moveToDelayed")
        self._retry_job = load_script("retryJob")
        self._to_wait = load_script("moveJobFromActiveToWait")
        self._extend_locks = load_script("extendLocks")
        self._stalled = load_script("moveStalledJobsToWait")
        self._progress = load_script("updateProgress")
        self._add_log = load_script("addLog")
        self._packed_finish: dict[tuple[Any, ...], bytes] = {}

    # --- fetching ------------------------------------------------------------------------
    def fetch_opts(self, token: str) -> bytes:
        """The packed opts of ``moveToActive``/``fetchNext`` for ``token`` (cache per slot)."""
        opts: dict[str, Any] = {"token": token, "lockDuration": self.lock_duration_ms,
                                "limiter": self.limiter}
        if self.worker_name:
            opts["name"] = self.worker_name
        return pack(opts)

    async def move_to_active(self, packed_fetch_opts: bytes) -> NextJob:
        result = await self.lane.run(self._move_to_active, self._fetch_keys,
                                  (self.keys.base, now_ms(), packed_fetch_opts))
        return parse_next(result)

    # --- finishing -----------------------------------------------------------------------
    async def move_to_finished(
        self,
        job_id: str,
        job_opts: dict[str, Any],
        target: str,
        value: str,
        token: str,
        *,
        fetch_next: bool,
        fields: dict[str, Any] | None = None,
    ) -> NextJob:
        """``moveToFinished``: complete or fail ``job_id``; optionally fetch the next job.

        Raises:
            JobLockLostError: the script refused (lock lost, job gone or not active).
        """
        prop = "returnvalue" if target == "completed" else "failedReason"
        k = self.keys
        keys = [*self._finish_keys, self._targets[target], k.base + job_id,
                self._metrics[target], k.marker]
        args: list[Any] = [job_id, now_ms(), prop, value, target, "1" if fetch_next else "",
                           k.base, self._finish_opts(job_opts, target, token)]
        if fields:
            args.append(pack(_flat(fields)))
        result = await self.lane.run(self._move_to_finished, keys, args)
        if isinstance(result, int) and result < 0:
            raise JobLockLostError(k.queue, job_id, result, "moveToFinished")
        return parse_next(result)

    def _finish_opts(self, job_opts: dict[str, Any], target: str, token: str) -> bytes:
        """The packed opts of ``moveToFinished``. Jobs of a queue mostly share them, so
        they are packed once per distinct set (a dozen msgpack fields per job otherwise)."""
        remove = job_opts.get("removeOnComplete" if target == "completed" else "removeOnFail")
        flags = (job_opts.get("failParentOnFailure"), job_opts.get("continueParentOnFailure"),
                 job_opts.get("ignoreDependencyOnFailure"),
                 job_opts.get("removeDependencyOnFailure"))
        # type() beside the value: True and 1 are equal keys but keep different counts.
        cache_key = (token, target, type(remove), _hashable(remove), _attempts(job_opts),
                     *(bool(flag) for flag in flags))
        packed = self._packed_finish.get(cache_key)
        if packed is None:
            opts = {
                "token": token,
                "keepJobs": keep_jobs(remove),
                "limiter": self.limiter,
                "lockDuration": self.lock_duration_ms,
                "attempts": _attempts(job_opts),
                "maxMetricsSize": self.max_metrics,
                "fpof": bool(flags[0]),
                "cpof": bool(flags[1]),
                "idof": bool(flags[2]),
                "rdof": bool(flags[3]),
            }
            if self.worker_name:
                opts["name"] = self.worker_name
            packed = pack(opts)
            if len(self._packed_finish) >= _PACKED_CACHE_SIZE:
                self._packed_finish.clear()
            self._packed_finish[cache_key] = packed
        return packed

    async def move_to_delayed(
        self,
        job_id: str,
        token: str,
        delay_ms: int,
        *,
        skip_attempt: bool,
        fields: dict[str, Any] | None = None,
        packed_fetch_opts: bytes | None = None,
    ) -> NextJob:
        """``moveToDelayed``: retry later (backoff) or park the job (``skip_attempt``)."""
        k = self.keys
        keys = [k.marker, k.active, k.prioritized, k.delayed, k.base + job_id, k.events,
                k.meta, k.stalled, k.wait, k.limiter, k.pc]
        args: list[Any] = [k.base, now_ms(), job_id, token, max(int(delay_ms), 0),
                           "1" if skip_attempt else "0",
                           pack(_flat(fields)) if fields else "",
                           "1" if packed_fetch_opts is not None else "0"]
        if packed_fetch_opts is not None:
            args.append(packed_fetch_opts)
        result = await self.lane.run(self._move_to_delayed, keys, args)
        if isinstance(result, int) and result < 0:
            raise JobLockLostError(k.queue, job_id, result, "moveToDelayed")
        return parse_next(result)

    async def retry_job(
        self, job_id: str, token: str, *, lifo: bool, fields: dict[str, Any] | None
    ) -> None:
        """``retryJob``: back to wait at once (an attempt with zero backoff)."""
        k = self.keys
        keys = [k.active, k.wait, k.paused, k.base + job_id, k.meta, k.events, k.delayed,
                k.prioritized, k.pc, k.marker, k.stalled]
        args: list[Any] = [k.base, now_ms(), "RPUSH" if lifo else "LPUSH", job_id, token]
        if fields:
            args.append(pack(_flat(fields)))
        result = await self.lane.run(self._retry_job, keys, args)
        if isinstance(result, int) and result < 0:
            raise JobLockLostError(k.queue, job_id, result, "retryJob")

    async def move_to_wait(self, job_id: str, token: str) -> int:
        """``moveJobFromActiveToWait`` (no attempt used). Returns the limiter's PTTL."""
        k = self.keys
        keys = [k.active, k.wait, k.stalled, k.paused, k.meta, k.limiter, k.prioritized,
                k.marker, k.events]
        result = await self.lane.run(self._to_wait, keys,
                                  (job_id, token, k.base + job_id))
        if isinstance(result, int) and result < 0:
            raise JobLockLostError(k.queue, job_id, result, "moveJobFromActiveToWait")
        return int(result or 0)

    # --- locks, stalls, limits -----------------------------------------------------------
    async def extend_locks(self, job_ids: Sequence[str], tokens: Sequence[str]) -> list[str]:
        """Renew many locks in one call; returns the ids whose lock could not be renewed."""
        result = await self.lane.run(
            self._extend_locks, (self.keys.stalled,),
            (self.keys.base, pack(list(tokens)), pack(list(job_ids)), self.lock_duration_ms))
        return [str(x) for x in result or ()]

    async def move_stalled_jobs_to_wait(
        self, max_stalled_count: int, stalled_interval_ms: int
    ) -> list[str]:
        """One stalled-job check (a no-op if another worker ran one this interval)."""
        k = self.keys
        keys = [k.stalled, k.wait, k.active, k.stalled_check, k.meta, k.paused, k.marker,
                k.events, k.repeat]
        result = await self.lane.run(self._stalled, keys,
                                  (max_stalled_count, k.base, now_ms(), stalled_interval_ms))
        return [str(x) for x in result or ()]

    async def stalled_gate_ms(self) -> int:
        """How long the current ``stalled-check`` gate still lives (0 if none)."""
        return max(int(await self.client.pttl(self.keys.stalled_check)), 0)

    async def set_rate_limit(self, ms: int) -> None:
        """Rate-limit the queue for ``ms`` (what Node's ``Queue.rateLimit`` writes)."""
        await self.client.set(self.keys.limiter, MAX_SAFE_INTEGER, px=max(int(ms), 1))

    # --- job context ---------------------------------------------------------------------
    async def update_progress(self, job_id: str, progress_json: str) -> int:
        k = self.keys
        return int(await self.lane.run(self._progress,
                                    (k.base + job_id, k.events, k.meta), (job_id, progress_json)))

    async def add_log(self, job_id: str, row: str, keep_logs: int | None) -> int:
        job_key = self.keys.base + job_id
        return int(await self.lane.run(self._add_log, (job_key, job_key + ":logs"),
                                    (job_id, row, keep_logs if keep_logs else "")))


def _hashable(value: Any) -> Any:
    """``value`` as a dict key: option objects (``{"age": …, "count": …}``) by content."""
    if isinstance(value, dict | list):
        return repr(sorted(value.items()) if isinstance(value, dict) else value)
    return value


def _attempts(job_opts: dict[str, Any]) -> int:
    try:
        return max(int(job_opts.get("attempts") or 1), 1)
    except (TypeError, ValueError):
        return 1


def _flat(fields: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for key, value in fields.items():
        if value is not None:
            out.extend((key, value))
    return out
