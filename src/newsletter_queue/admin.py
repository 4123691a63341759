"""QueueAdmin: every read and every administrative operation on the queues.

The HTTP routes, the CLI, ``DevTools`` and ``QueueManager``'s admin methods are thin
adapters over this one service (saq's shape: the web layer adapts, the queue decides),
so they all validate the same way, report Redis the same way and show the same
numbers. Reads go straight to BullMQ's keys where ``bullmq`` is slow or unordered (job
lists, counts in one round trip); changes go through ``bullmq``'s ``Queue`` and ``Job``
(BullMQ's own Lua scripts), so Node tools see the same jobs.

Errors are ours: ``QueueNotFoundError``, ``JobValidationError``, ``JobNotFoundError``
(and ``DeadLetterNotFoundError``), ``AdminConflictError`` when an operation does not fit
the current state (HTTP 409), and the Redis errors of ``QueueBackend.redis()``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from bullmq import Job as BullJob

from .backend import QueueBackend
from .engine.states import CLEAN_STATES, JOB_STATES, CleanState, JobState
from .errors import (
    AdminConflictError,
    DeadLetterNotFoundError,
    DeadLetterReplayedError,
    FieldError,
    JobNotFoundError,
    JobValidationError,
)
from .keyspace import BREAKERS, devmail_key, emails_counter_key
from .services.circuit import CircuitBreaker
from .services.store import DeadLetterRecord, Store
from .snapshots import EnqueuedJob, HealthCheck, JobInfo, QueueStats

# BullMQ's clean script hands both to Redis commands as integers, through Lua's
# doubles: past these a number reaches Redis in exponent form and the script fails.
MAX_CLEAN_LIMIT = 2**31 - 1
MAX_CLEAN_GRACE_MS = 10**13  # about 317 years
# A search scans at most this many of a state's newest jobs, in chunks: bounded work
# whatever the size of the state (the page says when it was cut short).
SEARCH_SCAN = 5000
_SEARCH_CHUNK = 250
_RETRY_FAILED_BATCH = 1000


@dataclass(frozen=True)
class JobPage:
    """One page of a state's jobs: ``total`` counts the state (or the search's matches);
    ``truncated`` says a search stopped after ``SEARCH_SCAN`` jobs."""

    jobs: list[JobInfo]
    total: int
    truncated: bool = False


class QueueAdmin:
    """Reads and administration over one ``QueueBackend`` (``QueueManager`` is one).

    ``store`` opens the records store (dead letters); the backend's by default.
    """

    def __init__(self, backend: QueueBackend,
                 store: Callable[[], Awaitable[Store]] | None = None) -> None:
        self.backend = backend
        self.settings = backend.settings
        self._store = store or backend.store

    # --- counts -------------------------------------------------------------------------
    async def get_queue_stats(self, queue: str) -> QueueStats:
        """Counts by state and the paused flag, read in one round trip."""
        keys = self.backend.keys(self.backend.check_queue(queue))
        async with self.backend.redis() as client:
            pipe = client.pipeline(transaction=False)
            for state in JobState:
                if state.is_list:
                    pipe.llen(keys.state(state))
                else:
                    pipe.zcard(keys.state(state))
            pipe.hexists(keys.meta, "paused")
            *counts, paused = await pipe.execute()
        by_field = {state.field: int(n) for state, n in zip(JobState, counts, strict=True)}
        return QueueStats(queue, **by_field, is_paused=bool(paused))

    async def get_all_queue_stats(self) -> dict[str, QueueStats]:
        """``get_queue_stats`` for every queue."""
        names = self.backend.queue_names
        results = await asyncio.gather(*(self.get_queue_stats(q) for q in names))
        return dict(zip(names, results, strict=True))

    async def is_paused(self, queue: str) -> bool:
        keys = self.backend.keys(self.backend.check_queue(queue))
        async with self.backend.redis() as client:
            return bool(await client.hexists(keys.meta, "paused"))

    async def health_check(self) -> HealthCheck:
        """Ping Redis and read every queue's stats. Never raises for Redis being down."""
        started = time.perf_counter()
        try:
            async with self.backend.redis() as client:
                await asyncio.wait_for(client.ping(),
                                       timeout=self.settings.redis_connect_timeout_s)
                latency = (time.perf_counter() - started) * 1000
                info = await client.info("server")
            stats = await self.get_all_queue_stats()
        except Exception as exc:
            return HealthCheck(False, False, None, None, self.backend.url, {}, error=str(exc))
        version = str(info.get("valkey_version") or info.get("redis_version") or "?")
        return HealthCheck(True, True, round(latency, 3), version, self.backend.url, stats)

    # --- job lists ----------------------------------------------------------------------
    def _state(self, state: str) -> JobState:
        if state not in JOB_STATES:
            raise JobValidationError("query", [FieldError(
                "state", f"unknown state {state!r}; known: {', '.join(JOB_STATES)}")])
        return JobState(state)

    async def count_jobs(self, queue: str, state: str) -> int:
        """How many jobs of ``queue`` are in ``state``."""
        st, key = self._state(state), self.backend.keys(self.backend.check_queue(queue))
        async with self.backend.redis() as client:
            found = client.llen(key.state(st)) if st.is_list else client.zcard(key.state(st))
            return int(await found)

    async def job_ids(self, queue: str, state: str, start: int, end: int, *,
                      newest_first: bool = True) -> list[str]:
        """Ids of the jobs of ``queue`` in ``state`` from index ``start`` to ``end``."""
        st = self._state(state)
        key = self.backend.keys(self.backend.check_queue(queue)).state(st)
        async with self.backend.redis() as client:
            if st.is_list:
                # Lists: LPUSH adds at the head, so the head is the newest.
                if newest_first:
                    return cast(list[str], await client.lrange(key, start, end))
                return cast(list[str], await client.lrange(key, -end - 1, -start - 1))[::-1]
            if newest_first:
                return cast(list[str], await client.zrevrange(key, start, end))
            return cast(list[str], await client.zrange(key, start, end))

    async def load_jobs(self, queue: str, ids: Sequence[str], state: str | None
                        ) -> list[JobInfo]:
        """The jobs of ``ids`` in one round trip (jobs removed meanwhile are skipped)."""
        if not ids:
            return []
        keys = self.backend.keys(queue)
        async with self.backend.redis() as client:
            pipe = client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(keys.job(job_id))
            hashes = await pipe.execute()
        return [JobInfo.from_hash(queue, job_id, raw, state)
                for job_id, raw in zip(ids, hashes, strict=True) if raw]

    async def get_jobs(self, queue: str, state: str, start: int = 0, end: int = 9, *,
                       newest_first: bool = True) -> list[JobInfo]:
        """Jobs of ``queue`` in ``state`` (a page by index range), with their data."""
        ids = await self.job_ids(queue, state, start, end, newest_first=newest_first)
        return await self.load_jobs(queue, ids, state)

    async def get_failed_jobs(self, queue: str, limit: int = 10) -> list[JobInfo]:
        """The most recently failed jobs of ``queue``, newest first."""
        if limit < 1:
            return []
        return await self.get_jobs(queue, "failed", 0, limit - 1)

    async def list_jobs(self, queue: str, state: str, page: int = 1, page_size: int = 20,
                        search: str | None = None) -> JobPage:
        """Page ``page`` (from 1) of a state's jobs, newest first.

        ``search`` matches a job id exactly, or a campaign / tenant id (a
        case-insensitive substring of ``data.campaignId`` / ``data.tenantId``) among the
        newest ``SEARCH_SCAN`` jobs of the state.
        """
        total = await self.count_jobs(queue, state)
        start = (page - 1) * page_size
        term = (search or "").strip()
        if not term:
            ids = await self.job_ids(queue, state, start, start + page_size - 1)
            return JobPage(await self.load_jobs(queue, ids, state), total)
        found: list[str] = []
        keys = self.backend.keys(queue)
        for offset in range(0, min(total, SEARCH_SCAN), _SEARCH_CHUNK):
            ids = await self.job_ids(queue, state, offset, offset + _SEARCH_CHUNK - 1)
            async with self.backend.redis() as client:
                pipe = client.pipeline(transaction=False)
                for job_id in ids:
                    pipe.hget(keys.job(job_id), "data")
                found.extend(job_id for job_id, data in zip(ids, await pipe.execute(),
                                                            strict=True)
                             if _matches(term, job_id, data))
        jobs = await self.load_jobs(queue, found[start:start + page_size], state)
        return JobPage(jobs, len(found), truncated=total > SEARCH_SCAN)

    # --- one job ------------------------------------------------------------------------
    async def get_job(self, queue: str, job_id: str) -> JobInfo | None:
        """One job by id, or ``None``."""
        keys = self.backend.keys(self.backend.check_queue(queue))
        async with self.backend.redis() as client:
            raw: dict[str, str] = await client.hgetall(keys.job(job_id))  # type: ignore[assignment]
            if not raw:
                return None
            state = await (await self.backend.queue(queue)).getJobState(job_id)
        return JobInfo.from_hash(queue, job_id, raw, str(state))

    async def get_job_logs(self, queue: str, job_id: str) -> list[str]:
        """The lines processors logged for the job (``job.log``), oldest first."""
        keys = self.backend.keys(self.backend.check_queue(queue))
        async with self.backend.redis() as client:
            return cast(list[str], await client.lrange(keys.logs(job_id), 0, -1))

    async def retry_job(self, queue: str, job_id: str) -> str:
        """Move a failed or completed job back to wait. Returns its new state."""
        return await self._move(queue, job_id, "retry", ("failed", "completed"))

    async def promote_job(self, queue: str, job_id: str) -> str:
        """Run a delayed job now. Returns its new state."""
        return await self._move(queue, job_id, "promote", ("delayed",))

    async def remove_job(self, queue: str, job_id: str) -> None:
        """Remove a job (and its logs) unless a worker holds its lock."""
        async with self.backend.redis():
            q, _ = await self._existing(queue, job_id)
            if not int(await q.remove(job_id)):
                raise AdminConflictError(f"job {job_id} is locked by a worker; try again "
                                         "when it has finished")

    async def _existing(self, queue: str, job_id: str) -> tuple[Any, str]:
        """The bullmq queue and the job's state (``JobNotFoundError`` if it has none)."""
        q = await self.backend.queue(self.backend.check_queue(queue))
        state = str(await q.getJobState(job_id))
        if state == "unknown":
            raise JobNotFoundError(queue, job_id)
        return q, state

    async def _move(self, queue: str, job_id: str, op: str, wanted: tuple[str, ...]) -> str:
        async with self.backend.redis():
            q, state = await self._existing(queue, job_id)
            if state not in wanted:
                raise AdminConflictError(f"cannot {op} job {job_id}: it is {state}, not "
                                         f"{' or '.join(wanted)}", state=state)
            job = await BullJob.fromId(q, job_id)
            if job is None:
                raise JobNotFoundError(queue, job_id)
            try:
                await (job.retry(state) if op == "retry" else job.promote())
            except TypeError as exc:  # bullmq's "not in state" errors
                raise AdminConflictError(f"cannot {op} job {job_id}: {exc}") from None
            return str(await q.getJobState(job_id))

    # --- a whole queue ------------------------------------------------------------------
    async def clean_queue(self, queue: str, grace_ms: int = 0,
                          state: CleanState = "completed", limit: int = 0) -> list[str]:
        """Remove jobs in ``state`` older than ``grace_ms``; ``limit`` 0 means all.

        Returns the removed job ids.
        """
        self.backend.check_queue(queue)
        if state not in CLEAN_STATES:
            raise JobValidationError("clean", [FieldError(
                "state", f"unknown state {state!r}; known: {', '.join(CLEAN_STATES)}")])
        bad = [FieldError(name, f"must be 0 … {top}") for name, value, top in (
            ("grace_ms", grace_ms, MAX_CLEAN_GRACE_MS), ("limit", limit, MAX_CLEAN_LIMIT))
            if not 0 <= value <= top]
        if bad:
            raise JobValidationError("clean", bad)
        async with self.backend.redis():
            q = await self.backend.queue(queue)
            removed = await q.clean(grace_ms, limit, JobState(state).key_suffix)
        return [str(x) for x in removed or []]

    async def retry_failed(self, queue: str) -> int:
        """Move every failed job of ``queue`` back to waiting. Returns how many."""
        failed = self.backend.keys(self.backend.check_queue(queue)).failed
        async with self.backend.redis() as client:
            before = int(await client.zcard(failed))
            if before:
                q = await self.backend.queue(queue)
                await q.retryJobs({"state": "failed", "count": _RETRY_FAILED_BATCH,
                                   # +1: bullmq rounds finishedOn to the nearest ms
                                   "timestamp": int(time.time() * 1000) + 1})
            after = int(await client.zcard(failed))
        return max(before - after, 0)

    async def pause_queue(self, queue: str) -> None:
        """Pause processing of ``queue`` for every worker (jobs can still be added)."""
        async with self.backend.redis():
            await (await self.backend.queue(self.backend.check_queue(queue))).pause()

    async def resume_queue(self, queue: str) -> None:
        """Resume a paused queue."""
        async with self.backend.redis():
            await (await self.backend.queue(self.backend.check_queue(queue))).resume()

    # --- dead letters -------------------------------------------------------------------
    async def list_dead_letters(
        self, limit: int = 50, queue: str | None = None, *, include_replayed: bool = False
    ) -> list[DeadLetterRecord]:
        """Jobs that failed for good (newest first), kept for inspection and replay."""
        if queue is not None:
            self.backend.check_queue(queue)
        return await (await self._store()).list_dead_letters(limit, queue, include_replayed)

    async def replay_dead_letter(self, letter_id: int) -> EnqueuedJob:
        """Enqueue a fresh job with the dead letter's queue, name and data; mark it replayed.

        Raises:
            DeadLetterNotFoundError: no such dead letter (``DeadLetterReplayedError``:
                it was replayed already).
            AdminConflictError: another replay of it won the race; the job this call
                enqueued is in ``details["job_id"]``.
        """
        store = await self._store()
        letter = await store.get_dead_letter(letter_id)
        if letter is None:
            raise DeadLetterNotFoundError(letter_id)
        if letter.replayed_at is not None:
            raise DeadLetterReplayedError(letter_id, letter.replay_job_id)
        data = letter.data if isinstance(letter.data, dict) else {"value": letter.data}
        job = await self.backend.add_job(letter.queue, letter.job_name, data, None)
        if not await store.mark_dead_letter_replayed(letter_id, job.id):
            raise AdminConflictError(f"dead letter {letter_id} was replayed concurrently; "
                                     f"job {job.id} was enqueued as well", job_id=job.id)
        return job

    # --- services' state in Redis -------------------------------------------------------
    async def breaker_states(self) -> dict[str, dict[str, Any]]:
        """Each circuit breaker's state, failures, reopening time and times opened."""
        out = {}
        async with self.backend.redis() as client:
            for name in BREAKERS:
                status = await CircuitBreaker(client, self.settings.key_prefix, name).status()
                out[name] = {"state": status.state, "failures": status.failures,
                             "open_until_ms": status.open_until_ms,
                             "opened_count": status.opened_count}
        return out

    async def email_counts(self) -> dict[str, int]:
        """Deliveries by status (``sent``, ``bounced``, ``failed``) since the counters began."""
        async with self.backend.redis() as client:
            raw = cast(dict[str, str], await client.hgetall(
                emails_counter_key(self.settings.key_prefix)))
        return {k: int(v) for k, v in raw.items()}

    async def captured_mail(self, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """The newest messages the dev SMTP sink captured, and how many it holds."""
        key = devmail_key(self.settings.key_prefix)
        async with self.backend.redis() as client:
            rows = await client.lrange(key, 0, limit - 1) if limit > 0 else []
            total = int(await client.llen(key))
        messages = []
        for row in rows:
            try:
                messages.append(json.loads(row))
            except ValueError:
                continue
        return messages, total


def _matches(term: str, job_id: str, data: str | None) -> bool:
    if job_id == term:
        return True
    if not data:
        return False
    try:
        parsed = json.loads(data)
    except ValueError:
        return False
    if not isinstance(parsed, dict):
        return False
    needle = term.lower()
    return any(needle in str(parsed.get(k, "")).lower() for k in ("campaignId", "tenantId"))


def job_summary(job: JobInfo) -> dict[str, Any]:
    """The fields a job list shows (the campaign, tenant and batch size from its data)."""
    data = job.data if isinstance(job.data, dict) else {}
    return {"id": job.id, "name": job.name, "state": job.state, "timestamp": job.timestamp,
            "processed_on": job.processed_on, "finished_on": job.finished_on,
            "attempts_made": job.attempts_made, "progress": job.progress,
            "failed_reason": job.failed_reason, "priority": job.priority,
            "delay": job.delay, "campaign_id": data.get("campaignId"),
            "tenant_id": data.get("tenantId"),
            "recipients": len(data["recipients"]) if isinstance(data.get("recipients"), list)
            else None}


