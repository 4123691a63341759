"""Locks, stalled jobs, graceful close and crash takeover (modelled on BullMQ's tests)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from bullmq import Queue

from newsletter_queue.config import Settings
from newsletter_queue.engine import Job, Worker
from tests.integration.engine.conftest import QUEUE, Recorder, job_hash
from tests.support.helpers import wait_for

REPO = Path(__file__).resolve().parents[3]


async def _forever(job: Job) -> None:
    await asyncio.Event().wait()


async def _quick(job: Job) -> str:
    return f"done by attempt {job.attempt}"


async def test_long_job_under_short_lock_does_not_stall(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    # 7 s under a 3 s lock (more than two locks long): it keeps the job only because the
    # lock is renewed every 1.5 s; a loop lagging by less than that (a loaded machine)
    # still renews it in time.
    async def seven_seconds(job: Job) -> str:
        await asyncio.sleep(7)
        return "finished"

    job = await bull.add("long", {})
    worker = make_worker(seven_seconds, lock_duration_ms=3000, stalled_interval_ms=300)
    observer = make_worker(_quick, lock_duration_ms=3000, stalled_interval_ms=300)
    events, watched = Recorder(worker), Recorder(observer)
    worker.start()
    await events.wait("active")
    observer.start()  # a second worker's stalled checks must not take the job either
    await events.wait("completed", timeout=40)
    assert events.of("stalled") == []
    assert watched.of("stalled") == []
    assert watched.of("active") == []
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw["ats"] == "1"
    assert raw.get("stc", "0") == "0"
    assert raw["returnvalue"] == '"finished"'


async def test_job_left_by_forced_close_is_recovered_as_stalled(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    job = await bull.add("abandoned", {}, {"attempts": 1})
    first = make_worker(_forever, lock_duration_ms=800, stalled_interval_ms=400)
    started = Recorder(first)
    first.start()
    await started.wait("active")
    await first.close(timeout=0, requeue=False)  # like a crash: job stays active, locked
    assert job.id in await redis_client.lrange(f"{prefix}:{QUEUE}:active", 0, -1)

    second = make_worker(_quick, lock_duration_ms=800, stalled_interval_ms=400)
    events = Recorder(second)
    second.start()
    [(stalled_id,)] = await events.wait("stalled", timeout=30)
    assert stalled_id == job.id
    [(done, result)] = await events.wait("completed", timeout=30)
    assert done.id == job.id
    assert done.stalled_counter == 1
    assert result == "done by attempt 1"  # a stall does not use an attempt
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw["stc"] == "1"
    assert raw["ats"] == "2"


async def test_job_stalling_too_often_fails_with_a_clear_reason(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    job = await bull.add("crashy", {}, {"attempts": 3})
    first = make_worker(_forever, lock_duration_ms=500, stalled_interval_ms=300)
    started = Recorder(first)
    first.start()
    await started.wait("active")
    await first.close(timeout=0, requeue=False)

    second = make_worker(_quick, lock_duration_ms=500, stalled_interval_ms=300,
                         max_stalled_count=0)
    events = Recorder(second)
    second.start()
    [(failed, error)] = await events.wait("failed", timeout=30)
    assert failed.id == job.id
    assert str(error) == "job stalled more than allowable limit"
    assert events.of("completed") == []  # the processor never ran
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw["failedReason"] == "job stalled more than allowable limit"
    assert await redis_client.zscore(f"{prefix}:{QUEUE}:failed", job.id) is not None


async def test_graceful_close_lets_active_jobs_finish_and_fetches_no_more(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    release = asyncio.Event()

    async def gated(job: Job) -> str:
        await release.wait()
        return "finished"

    first = await bull.add("gated", {})
    worker = make_worker(gated)
    events = Recorder(worker)
    worker.start()
    await events.wait("active")
    second = await bull.add("gated", {})
    closing = asyncio.ensure_future(worker.close(timeout=30))
    await wait_for(lambda: _is(worker.is_closing), timeout=30, message="close() to begin")
    release.set()
    await closing
    assert [j.id for j, _ in events.of("completed")] == [first.id]
    assert await redis_client.zscore(f"{prefix}:{QUEUE}:completed", first.id) is not None
    assert second.id in await redis_client.lrange(f"{prefix}:{QUEUE}:wait", 0, -1)
    assert not worker.is_running


async def test_close_timeout_moves_unfinished_jobs_back_to_wait(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    cancelled = asyncio.Event()

    async def stubborn(job: Job) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = await bull.add("stubborn", {}, {"attempts": 1})
    worker = make_worker(stubborn, concurrency=2)
    events = Recorder(worker)
    worker.start()
    await events.wait("active")
    await worker.close(timeout=0.2)
    assert cancelled.is_set()
    assert await redis_client.lrange(f"{prefix}:{QUEUE}:wait", 0, -1) == [job.id]
    assert await redis_client.llen(f"{prefix}:{QUEUE}:active") == 0
    assert not await redis_client.exists(f"{prefix}:{QUEUE}:{job.id}:lock")
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw.get("atm", "0") == "0"  # no attempt used
    assert events.of("failed") == []

    again = make_worker(_quick)
    done = Recorder(again)
    again.start()
    [(finished, result)] = await done.wait("completed")
    assert finished.id == job.id
    assert result == "done by attempt 1"


@pytest.fixture
async def subprocess_worker(redis_url: str, prefix: str) -> AsyncIterator[
        Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(mode: str, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.engine.worker_proc", redis_url, prefix,
             mode, *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


async def test_sigkilled_worker_jobs_are_taken_over(
    redis_client: aioredis.Redis, prefix: str, settings: Settings,
    make_worker: Callable[..., Worker],
    subprocess_worker: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    email = Queue("email", {"connection": redis_client, "prefix": prefix})
    job = await email.add("slow", {"seconds": 60}, {"attempts": 2})
    victim = subprocess_worker("worker")  # lock 1000 ms, stalled interval 1000 ms
    lock_key = f"{prefix}:email:{job.id}:lock"
    # A fresh interpreter importing the engine: slow on a loaded machine.
    await wait_for(lambda: redis_client.exists(lock_key), timeout=60,
                   message="the subprocess worker to take the job")
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait()
    # Nobody renews the lock any more, but it lives on for at least this long.
    lock_left_s = max(await redis_client.pttl(lock_key), 0) / 1000

    rescuer = make_worker(_quick, queue="email", lock_duration_ms=1000,
                          stalled_interval_ms=1000)
    events = Recorder(rescuer)
    rescuer.start()
    [(done, result)] = await events.wait("completed", timeout=45)
    took = time.monotonic() - killed_at
    assert done.id == job.id
    assert [s[0] for s in events.of("stalled")] == [job.id]
    assert result == "done by attempt 1"
    raw = await job_hash(redis_client, prefix, job.id, queue="email")
    assert raw["pb"] == rescuer.name
    assert raw["stc"] == "1"
    # Taken over as a stalled job, i.e. only once the dead worker's lock had expired —
    # never while it still held the job. (How soon — about stalled interval + lock
    # duration — depends on the machine's speed; the stall above proves the mechanism.)
    assert took >= lock_left_s, (took, lock_left_s)


async def test_run_workers_stops_gracefully_on_sigterm(
    redis_client: aioredis.Redis, prefix: str,
    subprocess_worker: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    email = Queue("email", {"connection": redis_client, "prefix": prefix})
    job = await email.add("slow", {"seconds": 1.0})
    proc = subprocess_worker("run_workers")
    lock_key = f"{prefix}:email:{job.id}:lock"
    await wait_for(lambda: redis_client.exists(lock_key), timeout=60,
                   message="run_workers to take the job")
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 45)
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode(errors="replace")
    assert code == 0, stderr
    assert "received SIGTERM" in stderr
    raw = await job_hash(redis_client, prefix, job.id, queue="email")
    assert "returnvalue" in raw, raw  # the active job finished before the process exited
    assert await redis_client.zscore(f"{prefix}:email:completed", job.id) is not None


async def test_a_second_sigterm_does_not_cut_the_grace_period_short(
    redis_client: aioredis.Redis, prefix: str,
    subprocess_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """An impatient operator or an orchestrator that repeats itself: the second signal
    only says the process is still waiting; the active job finishes, exit status 0."""
    email = Queue("email", {"connection": redis_client, "prefix": prefix})
    gate = f"{prefix}:test-gate"
    job = await email.add("gated", {"gate": gate})
    proc = subprocess_worker("run_workers", "300")
    await wait_for(lambda: redis_client.exists(f"{prefix}:email:{job.id}:lock"), timeout=60,
                   message="run_workers to take the job")
    proc.send_signal(signal.SIGTERM)
    seen = await _stderr_until(proc, "stopping 1 worker(s)")
    proc.send_signal(signal.SIGTERM)  # while the worker waits for its active job
    seen += await _stderr_until(proc, "received SIGTERM again; still waiting")
    assert proc.poll() is None, seen
    await redis_client.zadd(gate, {"open": 0})
    code = await asyncio.to_thread(proc.wait, 60)
    assert code == 0, seen
    raw = await job_hash(redis_client, prefix, job.id, queue="email")
    assert await redis_client.zscore(f"{prefix}:email:completed", job.id) is not None, raw


async def _stderr_until(proc: subprocess.Popen[bytes], text: str) -> str:
    """The process's stderr up to the first line containing ``text``."""
    assert proc.stderr is not None
    stream = proc.stderr
    lines: list[str] = []

    def read() -> str:
        while True:
            line = stream.readline().decode(errors="replace")
            lines.append(line)
            if text in line or not line:
                return "".join(lines)

    seen = await asyncio.wait_for(asyncio.to_thread(read), 60)
    assert text in seen, seen
    return seen


async def _is(value: bool) -> bool:
    return value
