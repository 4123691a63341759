"""Scenarios 1–3: the worker process is killed (once, twice) or stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from pathlib import Path

import pytest

from newsletter_queue.engine import Job, Worker
from tests.chaos.harness import PREFIX, Stage, report
from tests.chaos.scenarios import (
    QUICK,
    STALLED_LIMIT_REASON,
    crash_twice,
    graceful_stop,
    worker_crash,
)
from tests.chaos.worker_entry import CHAOS_QUEUE

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


async def test_sigkill_mid_campaign_loses_no_job_and_no_recipient(tmp_path: Path) -> None:
    lock_ms, stalled_ms = QUICK.crash_locks[0]
    r = await worker_crash(QUICK, tmp_path, lock_ms, stalled_ms)
    report(r)
    batches = QUICK.recipients // 100
    assert r.accepted == QUICK.jobs + batches
    assert (r.completed, r.failed, r.lost) == (r.accepted, 0, 0)
    # The kill hit running work: jobs, batches and claimed recipients were in flight.
    assert r.extra["jobs_in_flight_at_fault"] > 0
    assert r.extra["batches_in_flight_at_fault"] > 0
    assert r.emails_in_flight_at_fault > 0
    # Every recipient got the campaign; the only duplicates are messages in flight.
    assert r.missing_emails == 0
    assert r.extra["emails_sent"] == QUICK.recipients
    assert r.duplicate_emails <= r.emails_in_flight_at_fault
    # Only the jobs the dead worker held ran again — running, or returned but not yet
    # acknowledged by Redis (the at-least-once window) — and only those of the second
    # kind can have run to completion twice.
    assert r.duplicate_executions <= r.extra["jobs_in_flight_at_fault"]
    assert set(r.extra["completed_twice_jobs"]) <= set(r.extra["unacknowledged_jobs"])
    # Every interrupted job was put back in the queue by the replacement's stalled
    # check. How soon is a figure for bench/chaos.py (it depends on the machine); here
    # the settle wait above bounds it.
    assert r.recovery_s is not None
    assert r.extra["replacement_started_s"] is not None
    assert r.extra["second_worker_exit"] == 0


async def test_jobs_that_stall_twice_fail_with_the_stalled_limit_reason(
        tmp_path: Path) -> None:
    r = await crash_twice(QUICK, tmp_path)
    report(r)
    assert r.accepted == QUICK.stuck_jobs
    assert r.extra["jobs_in_flight_at_fault"] == QUICK.stuck_jobs
    assert r.extra["jobs_in_flight_at_second_fault"] == QUICK.stuck_jobs
    # None dropped: every job is in the failed set, with the stalled-limit reason …
    assert (r.completed, r.failed, r.lost) == (0, QUICK.stuck_jobs, 0)
    assert r.extra["failed_reasons"] == [STALLED_LIMIT_REASON]
    # … counted by the monitor's stats and listed by get_failed_jobs …
    assert r.extra["failed_in_monitor"] == QUICK.stuck_jobs
    assert r.extra["failed_listed"] == QUICK.stuck_jobs
    # … reported to the failed hook as final, and kept as dead letters.
    assert r.extra["final_failures_hooked"] == QUICK.stuck_jobs
    assert r.extra["dead_letters"] == QUICK.stuck_jobs
    assert r.extra["dead_letter_errors"] == [STALLED_LIMIT_REASON]
    # The third worker failed them without running them a third time.
    assert r.extra["executions_by_third_worker"] == 0
    assert r.duplicate_executions == QUICK.stuck_jobs  # the second run, after the 1st kill
    assert r.extra["third_worker_exit"] == 0


async def test_sigterm_mid_batch_lets_running_jobs_finish_and_nothing_stalls(
        tmp_path: Path) -> None:
    r = await graceful_stop(QUICK, tmp_path)
    report(r)
    assert r.extra["exit_code"] == 0
    assert r.extra["shutdown_s"] <= QUICK.shutdown_timeout_s
    # SIGTERM came mid-batch: jobs and recipients were in flight …
    assert r.extra["jobs_running_at_signal"] > 0
    assert r.emails_in_flight_at_fault > 0
    # … and all of them finished before the process exited: nothing stalled.
    assert r.extra["jobs_interrupted"] == 0
    assert r.extra["claims_pending_after_stop"] == 0
    assert r.extra["jobs_with_stalled_counter"] == 0
    assert r.extra["stalled_log_lines"] == 0
    assert (r.completed, r.lost, r.duplicate_executions) == (r.accepted, 0, 0)
    assert (r.duplicate_emails, r.missing_emails) == (0, 0)
    assert r.extra["second_worker_exit"] == 0


async def test_a_worker_runs_its_stalled_check_every_interval(tmp_path: Path) -> None:
    # The regression this guards: a check gated by the worker's own previous gate key
    # ran every *second* interval. Intervals of 1 s keep a loaded machine's timer lag
    # (tens of milliseconds, now and then a few hundred) far from that.
    interval_ms = 1000
    async with Stage(tmp_path, sink=False) as stage:
        client = stage.redis.client()
        worker = Worker(CHAOS_QUEUE, _noop, settings=stage.settings,
                        stalled_interval_ms=interval_ms, lock_duration_ms=2 * interval_ms)
        stamps: list[int] = []
        try:
            worker.start()
            while len(stamps) < 11:  # ten gaps; the module's timeout bounds the wait
                # Each check that runs stores its start time in the gate key.
                value = await client.get(f"{PREFIX}:{CHAOS_QUEUE}:stalled-check")
                if value is not None and (not stamps or stamps[-1] != int(value)):
                    stamps.append(int(value))
                await asyncio.sleep(0.01)
        finally:
            await worker.close(timeout=1)
            await client.aclose()
    gaps = sorted(b - a for a, b in itertools.pairwise(stamps))
    assert statistics.median(gaps) < 1.5 * interval_ms, gaps
    assert gaps[-1] < 2 * interval_ms, gaps


async def _noop(job: Job) -> None:
    return None
