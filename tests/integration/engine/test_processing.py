"""Processing basics: results, concurrency, processor kinds, hooks, job context."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Queue

from newsletter_queue.engine import Job, UnrecoverableError, Worker
from tests.conftest import make_settings
from tests.integration.engine import procs
from tests.integration.engine.conftest import QUEUE, Recorder, job_hash
from tests.support.helpers import wait_for

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def test_completes_job_and_stores_return_value(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    async def double(job: Job) -> dict[str, Any]:
        return {"doubled": job.data["n"] * 2, "attempt": job.attempt}

    job = await bull.add("double", {"n": 21}, {"attempts": 2})
    worker = make_worker(double, name="w-basic")
    events = Recorder(worker)
    worker.start()
    [(done, result)] = await events.wait("completed")
    assert done.id == job.id
    assert done.name == "double"
    assert done.data == {"n": 21}
    assert result == {"doubled": 42, "attempt": 1}
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw["returnvalue"] == '{"doubled":42,"attempt":1}'
    assert raw["atm"] == "1"
    assert raw["ats"] == "1"
    assert raw["pb"] == "w-basic"  # processedBy, as Node writes it
    assert await redis_client.zscore(f"{prefix}:{QUEUE}:completed", job.id) is not None
    assert await redis_client.llen(f"{prefix}:{QUEUE}:active") == 0
    assert [a[0].id for a in events.of("active")] == [job.id]
    await events.wait("drained")


async def test_runs_up_to_concurrency_jobs_at_once(
    bull: Queue, make_worker: Callable[..., Worker]
) -> None:
    running = 0
    peak = 0
    all_in = asyncio.Event()

    async def gather(job: Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 4:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 30)
        running -= 1

    await bull.addBulk([{"name": "g", "data": {"i": i}} for i in range(8)])
    worker = make_worker(gather, concurrency=4)
    events = Recorder(worker)
    worker.start()
    await events.wait("completed", 8)
    assert peak == 4


async def test_sync_processor_runs_in_a_thread_and_bridges_job_actions(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, Any] = {}

    def blocking(job: Job) -> str:
        seen["thread"] = threading.get_ident()
        seen["request_id"] = REQUEST_ID.get()
        job.update_progress({"pct": 50})  # no await: runs on the loop, blocks this thread
        count = job.log("halfway")
        seen["log_count"] = count
        return "ok"

    job = await bull.add("sync", {})
    worker = make_worker(blocking)
    events = Recorder(worker)
    token = REQUEST_ID.set("req-7")
    try:
        worker.start()  # the worker's tasks copy this context
    finally:
        REQUEST_ID.reset(token)
    await events.wait("completed")
    assert seen["thread"] != loop_thread
    assert seen["request_id"] == "req-7"
    assert events.of("progress")[0][1] == {"pct": 50}
    raw = await job_hash(redis_client, prefix, job.id)
    assert raw["progress"] == '{"pct":50}'
    assert await redis_client.lrange(f"{prefix}:{QUEUE}:{job.id}:logs", 0, -1) == ["halfway"]


async def test_async_processor_updates_progress_and_logs(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    async def steps(job: Job) -> None:
        for pct in (25, 100):
            await job.update_progress(pct)
        assert await job.log("done") == 1

    job = await bull.add("steps", {}, {"keepLogs": 5})
    worker = make_worker(steps)
    events = Recorder(worker)
    worker.start()
    await events.wait("completed")
    assert [p[1] for p in events.of("progress")] == [25, 100]
    assert (await job_hash(redis_client, prefix, job.id))["progress"] == "100"


async def test_process_pool_processor_runs_in_another_process(
    bull: Queue, make_worker: Callable[..., Worker]
) -> None:
    await bull.add("squares", {"n": 1000})
    refused = await bull.add("refuse", {}, {"attempts": 3})
    worker = make_worker(_by_name, use_process_pool=True, concurrency=2)
    events = Recorder(worker)
    worker.start()
    [(_, result)] = await events.wait("completed", timeout=60)  # spawning takes a while
    assert result["sum"] == sum(i * i for i in range(1000))
    assert result["pid"] != os.getpid()
    assert result["name"] == "squares"
    [(failed, error)] = await events.wait("failed", timeout=60)
    assert failed.id == refused.id
    assert isinstance(error, UnrecoverableError)
    assert failed.attempts_made == 1  # unrecoverable: no retry despite attempts=3


class _ByName:
    """A router choosing top-level process functions by job name."""

    def resolve(self, job: Job) -> Callable[..., Any]:
        return procs.sum_of_squares if job.name == "squares" else procs.refuse


_by_name = _ByName()


async def test_hook_errors_are_logged_and_never_stop_the_worker(
    bull: Queue, make_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    async def ok(job: Job) -> int:
        return 1

    def broken_sync(job: Job) -> None:
        raise RuntimeError("sync hook bug")

    async def broken_async(job: Job, result: Any) -> None:
        await asyncio.sleep(0)
        raise ValueError("async hook bug")

    added = [await bull.add("x", {"i": i}) for i in range(3)]
    worker = make_worker(ok)
    worker.on("active", broken_sync)
    worker.on("completed", broken_async)
    events = Recorder(worker)  # registered after the broken hooks: still called
    with caplog.at_level(logging.ERROR, logger="newsletter_queue.engine"):
        worker.start()
        await events.wait("completed", 3)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert sum("active hook" in m and "sync hook bug" not in m for m in messages) == 3
    for job in added:
        assert any(f"job={job.id}" in m and "completed hook" in m for m in messages)
    assert any(r.exc_info and "async hook bug" in str(r.exc_info[1]) for r in caplog.records)


def test_unknown_event_and_bad_options_are_rejected() -> None:
    async def noop(job: Job) -> None:
        return None

    worker = Worker("q", noop)
    with pytest.raises(ValueError, match="unknown event"):
        worker.on("finished", noop)
    with pytest.raises(ValueError, match="concurrency"):
        Worker("q", noop, concurrency=0)
    with pytest.raises(TypeError, match="process_pool"):
        Worker("q", noop, use_process_pool=True)


async def test_paused_queue_is_not_processed_until_resumed(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis, prefix: str
) -> None:
    await bull.pause()
    job = await bull.add("held", {})
    worker = make_worker(_one)
    events = Recorder(worker)
    worker.start()
    await events.wait("drained")  # looked, found nothing it may take
    assert events.of("active") == []
    assert await redis_client.lrange(f"{prefix}:{QUEUE}:wait", 0, -1) == [job.id]  # held
    await bull.resume()
    [(done, _)] = await events.wait("completed")
    assert done.id == job.id


async def test_hash_tag_prefix_works(
    redis_client: aioredis.Redis, prefix: str, tmp_path: Path, redis_url: str
) -> None:
    tagged = "{" + prefix + "}"
    settings = make_settings(redis_url=redis_url, key_prefix=tagged, state_dir=tmp_path)
    producer = Queue(QUEUE, {"connection": redis_client, "prefix": tagged})
    worker = Worker(QUEUE, _one, settings=settings)
    events = Recorder(worker)
    try:
        job = await producer.add("tagged", {})
        worker.start()
        [(done, _)] = await events.wait("completed")
        assert done.id == job.id
        assert await redis_client.zscore(f"{tagged}:{QUEUE}:completed", job.id) is not None
    finally:
        await worker.close(timeout=2)
        keys = [k async for k in redis_client.scan_iter(f"{tagged}:*", count=1000)]
        if keys:
            await redis_client.unlink(*keys)


async def _one(job: Job) -> int:
    return 1


async def test_cpu_bound_process_job_keeps_its_lock_and_is_stopped_on_close(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis,
    prefix: str, tmp_path: Path,
) -> None:
    busy = await bull.add("spin", {"seconds": 5, "pidfile": str(tmp_path / "a.pid")})
    worker = make_worker(procs.spin, use_process_pool=True, lock_duration_ms=2000,
                         stalled_interval_ms=200)
    events = Recorder(worker)
    worker.start()
    [(done, loops)] = await events.wait("completed", timeout=60)
    assert done.id == busy.id
    assert loops > 0
    # 5 s of CPU under a 2 s lock (renewed every 1 s, so the loop may lag by up to 1 s):
    # it never stalled, so the lock was renewed while the child kept a core busy.
    assert events.of("stalled") == []
    assert (await job_hash(redis_client, prefix, busy.id)).get("stc", "0") == "0"

    pidfile = tmp_path / "b.pid"
    endless = await bull.add("spin", {"pidfile": str(pidfile)})
    await events.wait("active", 2)
    await wait_for(lambda: _is(pidfile.exists() and bool(pidfile.read_text())),
                   timeout=30, message="the child process to start the endless job")
    child = int(pidfile.read_text())
    await worker.close(timeout=0.3)
    assert await redis_client.lrange(f"{prefix}:{QUEUE}:wait", 0, -1) == [endless.id]
    await wait_for(lambda: _is(not _alive(child)), timeout=30,
                   message="the child to be terminated")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == 0
    return True


async def _is(value: bool) -> bool:
    return value


def test_engine_exports_the_public_api() -> None:
    import newsletter_queue.engine as engine

    assert engine.__all__ == sorted(engine.__all__)
    for name in ("Worker", "Job", "RateLimited", "UnrecoverableError", "DelayedError",
                 "WorkerOptions", "get_metrics"):
        assert name in engine.__all__
        assert getattr(engine, name) is not None
