"""The chaos scenarios of issue 6, shared by ``tests/chaos`` and ``bench/chaos.py``:
the profiles and scenarios 1–3 (the worker process fails) here, 4–7 (Redis fails) in
``redis_scenarios``.

Each scenario builds its own ``Stage`` (private Redis, SMTP sink, store, worker
processes) in ``workdir``, injects its fault, lets the system recover unattended and
returns a ``ScenarioResult`` with the counts. It asserts nothing: the tests assert on the
results, the bench prints them. ``QUICK`` sizes and timings keep the test suite fast;
``FULL`` are the issue's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.chaos.harness import (
    PREFIX,
    ScenarioResult,
    Stage,
    WorkerConfig,
    account,
)
from tests.chaos.processes import wait_until
from tests.chaos.worker_entry import CHAOS_QUEUE
from tests.support.execution_log import Execution, LedgerView

STALLED_LIMIT_REASON = "job stalled more than allowable limit"


@dataclass(frozen=True)
class Profile:
    """Sizes and timings of a run (``QUICK`` for tests, ``FULL`` for the bench)."""

    name: str
    jobs: int = 2000
    job_ms: float = 20
    recipients: int = 5000
    concurrency: int = 10
    crash_at: float = 0.25
    # (lock duration, stalled interval) in ms for the worker-crash scenario, one run each
    crash_locks: tuple[tuple[int, int], ...] = ((30_000, 30_000), (5_000, 5_000))
    # lock settings of the other scenarios (FULL: the production defaults)
    lock_ms: int = 30_000
    stalled_ms: int = 30_000
    stuck_jobs: int = 10
    shutdown_timeout_s: float = 30.0
    graceful_job_ms: float = 50
    enqueue_rate: float = 500
    load_s: float = 10
    kill_window_s: float = 30
    kill_every_s: float = 2
    outage_s: float = 60
    settle_s: float = 180
    full_watch_s: float = 30


# Locks of 5 s are renewed every 2.5 s: a worker's loop slowed by a loaded machine
# still renews in time, so only the faults themselves stall jobs. (At 2 s, renewals a
# second late on a busy machine made healthy jobs stall and run twice.)
QUICK = Profile(
    name="quick", jobs=2000, recipients=2000, crash_locks=((4_000, 2_000),), lock_ms=5_000,
    stalled_ms=2_500, shutdown_timeout_s=30, load_s=3, kill_window_s=8, outage_s=10,
    settle_s=120, full_watch_s=2)
FULL = Profile(name="full")


def _ms(value: int) -> str:
    return f"{value / 1000:g} s"


# --- 1. worker crash ----------------------------------------------------------------------
async def worker_crash(p: Profile, workdir: Path, lock_ms: int, stalled_ms: int
                       ) -> ScenarioResult:
    """SIGKILL the worker process after ~25 % of the work, start a new one at once."""
    result = ScenarioResult(f"worker-crash (lock {_ms(lock_ms)}, stalled {_ms(stalled_ms)})")
    cfg = WorkerConfig(concurrency=p.concurrency, lock_ms=lock_ms, stalled_ms=stalled_ms)
    async with Stage(workdir) as stage:
        client = stage.redis.client()
        try:
            producer = stage.producer()
            await producer.add_many(p.jobs, ms=p.job_ms)
            batch_ids, emails = await stage.campaign("crash", p.recipients)
            ledger = stage.ledger("crash", client)
            first = stage.worker(cfg)

            async def quarter_done() -> bool:
                done = await stage.completed_count(client, CHAOS_QUEUE)
                sent = (await ledger.counts()).sent
                return done / p.jobs + sent / p.recipients >= 2 * p.crash_at

            await wait_until(quarter_done, timeout=120, interval=0.005,
                             message="a quarter of the work to be done")
            killed_at = first.kill()
            at_kill = await ledger.counts()
            jobs_done_at_kill = await stage.completed_count(client, CHAOS_QUEUE)
            second = stage.worker(cfg)
            states = await stage.settle(
                client, {CHAOS_QUEUE: list(producer.acks), "email": batch_ids},
                timeout=(lock_ms + stalled_ms) / 1000 + p.settle_s)
            final = await ledger.counts()
            exit_code, sink = await stage.wind_down(second, cfg)
        finally:
            await client.aclose()
        view = stage.read_ledger()
    account(result, states, view, sink, emails)
    # What the dead worker held: executions it never finished, and those whose processor
    # had returned while the completion was not yet acknowledged (they may run again).
    held = view.held_by(first.pid)
    unacknowledged = view.unacknowledged_by(first.pid)
    runs = view.by_job()
    # Held jobs that went back to the queue: every interrupted one, and an unacknowledged
    # one unless Redis had written its completion before the kill.
    interrupted = view.interrupted_by(first.pid) + [
        e for e in unacknowledged if any(r.start > e.start for r in runs[e.key])]
    # Recovery: the kill → the last interrupted job back in the queue (a stalled check
    # of the new worker moved it). Starting it again can take longer: it queues behind
    # the waiting backlog, and email batches (priority 1000) behind every plain job.
    requeued = [view.first_stalled_after(e.key, killed_at) for e in interrupted]
    result.recovery_s = _latest(requeued, killed_at)
    completed_again = [view.first_done_after(e.key, killed_at) for e in interrupted]
    after = view.done_after(killed_at)
    result.emails_in_flight_at_fault = at_kill.pending
    result.extra.update({
        "jobs_in_flight_at_fault": len(held),
        "jobs_unacknowledged_at_fault": len(unacknowledged),
        "unacknowledged_jobs": [e.job for e in unacknowledged],
        "batches_in_flight_at_fault": sum(1 for e in held if e.queue == "email"),
        "recovery_bound_s": (lock_ms + stalled_ms) / 1000,
        "replacement_started_s": _since(second.started_at(), killed_at),
        "all_in_flight_restarted_s": _rounded(
            _resumed_within(view, interrupted, killed_at, first.pid)),
        "all_in_flight_completed_s": _latest(completed_again, killed_at),
        "first_completion_after_fault_s": round(after[0] - killed_at, 2) if after else None,
        "jobs_done_at_fault": jobs_done_at_kill,
        "emails_sent_at_fault": at_kill.sent,
        "emails_sent": final.sent,
        "ledger_reclaimed": final.reclaimed,
        "recipients": len(emails),
        "second_worker_exit": exit_code,
    })
    return result


# --- 2. crash twice ------------------------------------------------------------------------
async def crash_twice(p: Profile, workdir: Path) -> ScenarioResult:
    """Kill the worker while jobs run, then kill the worker that took them over while
    they run again: with ``max_stalled_count`` 1 they must fail with the stalled-limit
    reason — in the failed set, the monitor's counts and the dead letters."""
    result = ScenarioResult("crash-twice (max stalled 1)")
    cfg = WorkerConfig(concurrency=p.concurrency, lock_ms=p.lock_ms, stalled_ms=p.stalled_ms,
                       max_stalled=1)
    window = (p.lock_ms + p.stalled_ms) / 1000
    async with Stage(workdir, sink=False) as stage:
        client = stage.redis.client()
        try:
            producer = stage.producer()
            await producer.add_many(p.stuck_jobs, ms=3_600_000)  # never finish by themselves
            ids = list(producer.acks)

            def all_running_in(pid: int) -> Callable[[], Awaitable[bool]]:
                async def probe() -> bool:
                    started = {e.job for e in stage.read_ledger().of_pid(pid)}
                    return started >= set(ids)
                return probe

            first = stage.worker(cfg, queues=[CHAOS_QUEUE])
            await wait_until(all_running_in(first.pid), timeout=60,
                             message="the first worker to run every job")
            first_kill = first.kill()
            second = stage.worker(cfg, queues=[CHAOS_QUEUE])
            await wait_until(all_running_in(second.pid), timeout=window + 60,
                             message="the second worker to take every job over")
            second_kill = second.kill()
            third = stage.worker(cfg, queues=[CHAOS_QUEUE])
            states = await stage.settle(client, {CHAOS_QUEUE: ids},
                                        timeout=window + p.settle_s)

            async def dead_letters() -> list[Any]:
                letters = await stage.manager.list_dead_letters(len(ids) * 2, CHAOS_QUEUE)
                mine = [x for x in letters if x.job_id in ids]
                return mine if len(mine) >= len(ids) else []

            with contextlib.suppress(TimeoutError):
                await wait_until(dead_letters, timeout=30, message="the dead letters")
            letters = [x for x in await stage.manager.list_dead_letters(len(ids) * 2,
                                                                        CHAOS_QUEUE)
                       if x.job_id in ids]
            failed_jobs = [j for j in await stage.manager.get_failed_jobs(CHAOS_QUEUE, 1000)
                           if j.id in ids]
            stats = await stage.manager.get_queue_stats(CHAOS_QUEUE)
            third.terminate()
            exit_code = await third.wait_exit(cfg.shutdown_timeout_s + 15)
        finally:
            await client.aclose()
        view = stage.read_ledger()
    account(result, states, view)
    failures = [f for key, recs in view.failed.items() if key[1] in ids for f in recs]
    if failures and len({f["j"] for f in failures}) == len(ids):
        result.recovery_s = max(f["t"] for f in failures) - second_kill
    result.extra.update({
        "jobs_in_flight_at_fault": len(view.interrupted_by(first.pid)),
        "jobs_in_flight_at_second_fault": len(view.interrupted_by(second.pid)),
        "failed_reasons": sorted({j.failed_reason or "" for j in failed_jobs}),
        "failed_in_monitor": stats.failed,
        "failed_listed": len(failed_jobs),
        "dead_letters": len(letters),
        "dead_letter_errors": sorted({x.error for x in letters}),
        "final_failures_hooked": sum(1 for f in failures if f.get("final")),
        "executions_by_third_worker": len(view.of_pid(third.pid)),
        "recovery_bound_s": window,
        "faults_at": [round(first_kill, 3), round(second_kill, 3)],
        "third_worker_exit": exit_code,
    })
    return result


# --- 3. graceful stop ----------------------------------------------------------------------
async def graceful_stop(p: Profile, workdir: Path) -> ScenarioResult:
    """SIGTERM mid-batch: running jobs finish within the shutdown timeout, nothing stalls;
    a new worker finishes the rest."""
    result = ScenarioResult(f"graceful-stop (timeout {p.shutdown_timeout_s:g} s)")
    cfg = WorkerConfig(concurrency=p.concurrency, lock_ms=p.lock_ms, stalled_ms=p.stalled_ms,
                       shutdown_timeout_s=p.shutdown_timeout_s)
    slow_ms = p.shutdown_timeout_s * 1000 / 4
    async with Stage(workdir) as stage:
        client = stage.redis.client()
        try:
            producer = stage.producer()
            await producer.add_many(3, ms=slow_ms)  # still running when SIGTERM comes
            await producer.add_many(p.jobs // 2, ms=p.graceful_job_ms)
            batch_ids, emails = await stage.campaign("graceful", p.recipients)
            ledger = stage.ledger("graceful", client)
            first = stage.worker(cfg)

            async def mid_batch() -> bool:
                return (await ledger.counts()).sent >= p.recipients * p.crash_at

            await wait_until(mid_batch, timeout=120, interval=0.005,
                             message="a quarter of the campaign to be sent")
            at_signal = await ledger.counts()
            signalled = first.terminate()
            code = await first.wait_exit(p.shutdown_timeout_s + 30)
            stopped = time.time()
            after_stop = await ledger.counts()
            second = stage.worker(cfg)
            ids = list(producer.acks)
            states = await stage.settle(client, {CHAOS_QUEUE: ids, "email": batch_ids},
                                        timeout=p.settle_s)
            stalled = await _stalled_counters(client, {CHAOS_QUEUE: ids, "email": batch_ids})
            second_code, sink = await stage.wind_down(second, cfg)
        finally:
            await client.aclose()
        view = stage.read_ledger()
        logs = [line for w in stage.workers for line in w.log_lines()]
    account(result, states, view, sink, emails)
    result.emails_in_flight_at_fault = at_signal.pending
    running = [e for e in view.of_pid(first.pid) if e.running_at(signalled)]
    result.recovery_s = 0.0 if not view.interrupted_by(first.pid) else None
    result.extra.update({
        "shutdown_s": round(stopped - signalled, 2),
        "shutdown_timeout_s": p.shutdown_timeout_s,
        "exit_code": code,
        "jobs_running_at_signal": len(running),
        "jobs_interrupted": len(view.interrupted_by(first.pid)),
        "jobs_with_stalled_counter": sum(1 for n in stalled.values() if n > 0),
        "stalled_log_lines": sum(1 for line in logs if " stalled " in line),
        "claims_pending_after_stop": after_stop.pending,
        "second_worker_exit": second_code,
    })
    return result


async def _stalled_counters(client: aioredis.Redis, jobs: dict[str, list[str]]
                            ) -> dict[str, int]:
    out: dict[str, int] = {}
    for queue, ids in jobs.items():
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(f"{PREFIX}:{queue}:{job_id}", "stc")
        for job_id, value in zip(ids, await pipe.execute(), strict=True):
            out[f"{queue}:{job_id}"] = int(value or 0)
    return out


def _resumed_within(view: LedgerView, interrupted: list[Execution], fault_at: float,
                    dead_pid: int) -> float | None:
    """Seconds from the fault until every interrupted job was started again by another
    process (``None`` if one never was)."""
    restarts = []
    runs = view.by_job()
    for ex in interrupted:
        again = [e.start for e in runs.get(ex.key, [])
                 if e.pid != dead_pid and e.start >= fault_at]
        if not again:
            return None
        restarts.append(min(again))
    return max(restarts) - fault_at if restarts else 0.0


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _since(t: float | None, since: float) -> float | None:
    return None if t is None else round(t - since, 2)


def _latest(times: list[float | None], since: float) -> float | None:
    if any(t is None for t in times):
        return None
    return round(max((t for t in times if t is not None), default=since) - since, 2)
