"""Chaos scenarios 4–7: Redis itself fails — killed and restarted with its AOF,
connections killed, a long outage, an evicting or full server (see ``scenarios``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
from redis.exceptions import RedisError

from newsletter_queue.errors import EvictionPolicyError, NewsletterQueueError
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.send_ledger import CampaignLedger
from tests.chaos.harness import (
    PREFIX,
    TENANT,
    ScenarioResult,
    Stage,
    WorkerConfig,
    account,
)
from tests.chaos.processes import WorkerProcess, _stamp, count_lines_between, wait_until
from tests.chaos.scenarios import Profile
from tests.chaos.worker_entry import CHAOS_QUEUE

# --- 4. Redis killed (AOF everysec) ------------------------------------------------------------
AOF_ARGS = ("--appendonly", "yes", "--appendfsync", "everysec")


async def _count_at_least(values: Callable[[], int], n: float) -> bool:
    return values() >= n


async def _sent_at_least(ledger: CampaignLedger, n: float) -> bool:
    return (await ledger.counts()).sent >= n


async def redis_restart(p: Profile, workdir: Path, fsync: str = "everysec"
                        ) -> ScenarioResult:
    """SIGKILL redis-server under ~500 enqueues/s, restart it on the same port and data:
    with ``appendfsync everysec`` the jobs lost are those acknowledged within the last
    fsync second(s), nothing else; with ``always``, none. The worker resumes by itself."""
    result = ScenarioResult(f"redis-kill-9 (AOF {fsync})")
    cfg = WorkerConfig(concurrency=p.concurrency, lock_ms=p.lock_ms, stalled_ms=p.stalled_ms)
    redis_args = ("--appendonly", "yes", "--appendfsync", fsync)
    async with Stage(workdir, redis_args=redis_args) as stage:
        client = stage.redis.client()
        try:
            worker = stage.worker(cfg)
            await worker.wait_started()
            producer = stage.producer()
            stop = asyncio.Event()
            load = asyncio.create_task(producer.run_paced(p.enqueue_rate, stop, ms=p.job_ms))
            started = time.time()
            try:
                await wait_until(lambda: _count_at_least(
                    lambda: len(producer.acks), p.enqueue_rate * p.load_s),
                    timeout=p.load_s * 5, message="the load to run")
                batch_ids, emails = await stage.campaign("restart", p.recipients)
                ledger = stage.ledger("restart", client)
                await wait_until(lambda: _sent_at_least(ledger, p.recipients * p.crash_at),
                                 timeout=60, interval=0.005,
                                 message="a quarter of the campaign to be sent")
                before = await ledger.counts()  # the last look before the kill
                killed = stage.redis.kill()
                up = await stage.redis.start()
                await client.connection_pool.disconnect()
                at_fault = await ledger.counts()  # as the restarted server has it
                await wait_until(lambda: _count_at_least(
                    lambda: sum(1 for t in producer.acks.values() if t > up),
                    p.enqueue_rate * 2), timeout=60, message="enqueues after the restart")
            finally:
                stop.set()
                await load
            load_s = time.time() - started
            states = await stage.settle(
                client, {CHAOS_QUEUE: list(producer.acks), "email": batch_ids},
                timeout=(p.lock_ms + p.stalled_ms) / 1000 + p.settle_s)
            exit_code, sink = await stage.wind_down(worker, cfg)
        finally:
            await client.aclose()
        view = stage.read_ledger()
    account(result, states, view, sink, emails)
    lost = [key for key, state in states.items()
            if state not in ("completed", "failed") and not view.done.get(key)]
    ages = sorted(killed - producer.acks[job] for queue, job in lost if queue == CHAOS_QUEUE)
    # everysec: Redis may reply up to 2 s before the write reaches the AOF (documented, so
    # not a broken guarantee); always: no window, every loss counts.
    window_s = 2.0 if fsync == "everysec" else None
    in_window = [a for a in ages if window_s is not None and killed - up <= a <= window_s]
    result.emails_in_flight_at_fault = at_fault.pending
    after_up = view.done_after(up)
    # A recipient can be mailed twice only if its message was accepted before the kill
    # (recorded sent, or claimed and in flight, at the last look) and the restarted
    # server does not hold it as sent: its record fell in the fsync window.
    result.extra["emails_sent_before_kill"] = before.sent
    result.extra["emails_at_risk"] = max(before.sent + before.pending - at_fault.sent, 0)
    result.recovery_s = after_up[0] - up if after_up else None
    acks_after = [t for t in producer.acks.values() if t > up]
    result.extra.update({
        "note": "with appendfsync everysec Redis may reply before its AOF write while a "
                "background fsync runs (the write waits up to 2 s), so SIGKILL can lose "
                "writes acknowledged just before it: new jobs, and completions",
        "lost_batches": sum(1 for queue, _ in lost if queue == "email"),
        "lost_acked_at_most_s_before_kill": round(max(ages), 3) if ages else None,
        # An ack is timed when the producer's coroutine resumes, which can be after the
        # (blocking) kill call returned although Redis replied before it died: such
        # negative ages are replies in flight at the kill. An ack after the restart
        # (age below -outage) would be a real loss of a durable write.
        "lost_acked_after_kill": sum(1 for a in ages if a < 0),
        "lost_acked_after_restart": sum(1 for a in ages if a < killed - up),
        "lost_outside_fsync_window": len(lost) - len(in_window),
        "acked_in_last_second": sum(1 for t in producer.acks.values()
                                    if killed - 1 <= t <= killed),
        "jobs_in_flight_at_fault": sum(1 for e in view.executions if e.running_at(killed)),
        "completed_in_fsync_window": sum(
            1 for times in view.done.values() if any(killed - 2 <= t <= killed for t in times)),
        "outage_s": round(up - killed, 2),
        "producer_resume_s": round(min(acks_after) - up, 2) if acks_after else None,
        "enqueue_rate": round(len(producer.acks) / load_s, 1),
        "enqueues_refused": len(producer.refused),
        "refusal_errors": sorted({kind for _, _, kind, _ in producer.refused}),
        "worker_exit": exit_code,
    })
    return result


# --- 5. dropped connections -----------------------------------------------------------------
async def dropped_connections(p: Profile, workdir: Path) -> ScenarioResult:
    """``CLIENT KILL`` every normal and pubsub connection (but the admin's own) every
    ``kill_every_s`` for ``kill_window_s`` while jobs are enqueued and a campaign sends."""
    result = ScenarioResult(
        f"client-kill every {p.kill_every_s:g} s for {p.kill_window_s:g} s")
    cfg = WorkerConfig(concurrency=p.concurrency, lock_ms=p.lock_ms, stalled_ms=p.stalled_ms)
    kills: list[tuple[float, int, int]] = []  # (time, connections killed, pending claims)
    async with Stage(workdir) as stage:
        client = stage.redis.client()
        admin = stage.redis.client()
        try:
            worker = stage.worker(cfg)
            await worker.wait_started()
            producer = stage.producer()
            stop = asyncio.Event()
            load = asyncio.create_task(producer.run_paced(p.enqueue_rate, stop, ms=p.job_ms))
            batch_ids, emails = await stage.campaign("dropped", p.recipients)
            ledger = stage.ledger("dropped", admin)
            loop = asyncio.get_running_loop()
            first_at = loop.time() + p.kill_every_s / 2
            try:
                for index in range(int(p.kill_window_s / p.kill_every_s)):
                    # the fault's own schedule, not a wait for something to happen
                    await asyncio.sleep(max(first_at + index * p.kill_every_s - loop.time(), 0))
                    killed = int(await admin.client_kill_filter(_type="normal", skipme=True))
                    killed += int(await admin.client_kill_filter(_type="pubsub", skipme=True))
                    at = time.time()
                    kills.append((at, killed, (await ledger.counts()).pending))
                last_kill = kills[-1][0]
                await wait_until(lambda: _count_at_least(
                    lambda: sum(1 for t in producer.acks.values() if t > last_kill),
                    p.enqueue_rate), timeout=30, message="enqueues after the last kill")
            finally:
                stop.set()
                await load
            states = await stage.settle(
                client, {CHAOS_QUEUE: list(producer.acks), "email": batch_ids},
                timeout=(p.lock_ms + p.stalled_ms) / 1000 + p.settle_s)
            final = await ledger.counts()
            exit_code, sink = await stage.wind_down(worker, cfg)
        finally:
            await client.aclose()
            await admin.aclose()
        view = stage.read_ledger()
        log = worker.log_lines()
    account(result, states, view, sink, emails)
    resumes = []
    for at, _, _ in kills:
        after = view.done_after(at)
        resumes.append(round(after[0] - at, 2) if after else None)
    result.recovery_s = (None if any(r is None for r in resumes)
                         else max((r for r in resumes if r is not None), default=0.0))
    result.emails_in_flight_at_fault = sum(pending for _, _, pending in kills)
    result.extra.update({
        "kills": len(kills),
        "connections_killed": sum(n for _, n, _ in kills),
        "resume_s_per_kill": resumes,
        "jobs_in_flight_at_fault": sum(
            1 for e in view.executions if any(e.running_at(at) for at, _, _ in kills)),
        "enqueues_refused": len(producer.refused),
        "refusal_errors": sorted({kind for _, _, kind, _ in producer.refused}),
        "emails_sent": final.sent,
        "worker_errors_logged": sum(1 for line in log if " ERROR " in line),
        "worker_exit": exit_code,
    })
    return result


# --- 6. long outage ------------------------------------------------------------------------------
async def long_outage(p: Profile, workdir: Path) -> ScenarioResult:
    """Stop Redis for ``outage_s`` with a worker and the dev API running: the worker backs
    off (CPU and log lines measured), ``/readyz`` answers 503 fast, enqueues fail fast,
    and everything resumes unattended when Redis is back."""
    result = ScenarioResult(f"redis-down {p.outage_s:g} s")
    cfg = WorkerConfig(concurrency=p.concurrency, lock_ms=p.lock_ms, stalled_ms=p.stalled_ms)
    readyz: list[tuple[float, int | None, float]] = []  # (time, status, seconds)
    refusals: list[tuple[str, float]] = []
    async with Stage(workdir, redis_args=AOF_ARGS) as stage:
        client = stage.redis.client()
        api = stage.api()
        http = httpx.AsyncClient(base_url=api.base_url, timeout=5) if api else None
        try:
            worker = stage.worker(cfg)
            await worker.wait_started()
            if api is not None and http is not None:
                await api.wait_ready(http)
            producer = stage.producer()
            stop = asyncio.Event()
            load = asyncio.create_task(producer.run_paced(50, stop, ms=p.job_ms))
            await wait_until(lambda: _count_at_least(lambda: len(producer.acks), 100),
                             timeout=30, message="jobs before the outage")
            stop.set()
            await load
            await wait_until(lambda: stage.idle(client), timeout=60,
                             message="the queue to drain before the outage")
            before = await producer.add(p.job_ms)  # one job the worker has to pick up later
            batch_ids, emails = await stage.campaign("outage", p.recipients)
            ledger = stage.ledger("outage", client)
            await wait_until(lambda: _sent_at_least(ledger, p.recipients * p.crash_at),
                             timeout=60, interval=0.005,
                             message="a quarter of the campaign to be sent")
            process = psutil.Process(worker.pid)
            stopped = await stage.redis.stop()
            cpu_before = sum(process.cpu_times()[:2])
            loop = asyncio.get_running_loop()
            end_at = loop.time() + p.outage_s
            while loop.time() < end_at:
                if http is not None:
                    began = time.monotonic()
                    try:
                        status: int | None = (await http.get("/readyz")).status_code
                    except httpx.HTTPError:
                        status = None
                    readyz.append((time.time(), status, time.monotonic() - began))
                began = time.monotonic()
                accepted = await producer.add(p.job_ms)
                refusals.append((producer.refused[-1][2] if not accepted else "accepted",
                                 time.monotonic() - began))
                # the outage's own length, probed once a second
                await asyncio.sleep(max(min(1.0, end_at - loop.time()), 0))
            cpu_s = sum(process.cpu_times()[:2]) - cpu_before
            up = await stage.redis.start()
            lines = count_lines_between(worker.log_lines(), stopped, up)
            records = count_lines_between(worker.log_lines(), stopped, up, records_only=True)
            sample = [line[:160] for line in worker.log_lines()
                      if (_t := _stamp(line)) is not None and stopped <= _t <= up][:12]
            await client.connection_pool.disconnect()
            at_fault = await ledger.counts()  # claims as the server kept them
            after = await producer.add(p.job_ms)
            api_back_s = None
            if http is not None:
                async def api_ready() -> bool:
                    assert http is not None
                    with contextlib.suppress(httpx.HTTPError):
                        return (await http.get("/readyz")).status_code == 200
                    return False

                await wait_until(api_ready, timeout=30, message="/readyz to answer 200")
                api_back_s = round(time.time() - up, 2)
            states = await stage.settle(
                client, {CHAOS_QUEUE: list(producer.acks), "email": batch_ids},
                timeout=(p.lock_ms + p.stalled_ms) / 1000 + p.settle_s)
            exit_code, sink = await stage.wind_down(worker, cfg)
        finally:
            if http is not None:
                await http.aclose()
            await client.aclose()
        view = stage.read_ledger()
    account(result, states, view, sink, emails)
    result.emails_in_flight_at_fault = at_fault.pending
    done_after = view.done_after(up)
    result.recovery_s = done_after[0] - up if done_after else None
    outage = up - stopped
    statuses = sorted({s for _, s, _ in readyz}, key=str)
    result.extra.update({
        "outage_s": round(outage, 1),
        "cpu_s": round(cpu_s, 3),
        "cpu_pct": round(100 * cpu_s / outage, 2),
        "log_lines": lines,
        "log_lines_per_min": round(lines * 60 / outage, 1),
        "log_records": records,
        "log_sample": sample,
        "log_records_per_min": round(records * 60 / outage, 1),
        "api": "served" if api is not None else "not available",
        "readyz_statuses": statuses,
        "readyz_max_ms": round(max((s for _, _, s in readyz), default=0) * 1000, 1),
        "api_ready_after_s": api_back_s,
        "enqueue_errors": sorted({kind for kind, _ in refusals}),
        "enqueue_error_max_ms": round(max((s for _, s in refusals), default=0) * 1000, 1),
        "enqueued_before_and_after": [before, after],
        "jobs_in_flight_at_fault": sum(1 for e in view.executions if e.running_at(stopped)),
        "worker_exit": exit_code,
    })
    return result


# --- 7. eviction policy and a full Redis -----------------------------------------------------
async def eviction_policy(p: Profile, workdir: Path) -> ScenarioResult:
    """``allkeys-lru`` → a warning (``NLQ_STRICT=1``: ``EvictionPolicyError``, also for a
    worker process); ``noeviction`` with a small ``maxmemory`` filled up → every enqueue
    either raises ``RedisOutOfMemoryError`` or its job exists; after the memory is
    raised the worker processes every accepted job."""
    result = ScenarioResult("eviction-policy + maxmemory full")
    cfg = WorkerConfig(concurrency=p.concurrency, lock_ms=p.lock_ms, stalled_ms=p.stalled_ms)
    checks: dict[str, Any] = {}
    async with Stage(workdir / "lru", sink=False,
                     redis_args=("--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru")
                     ) as lru:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with QueueManager(lru.settings) as relaxed:
                checks["lru_warning"] = any(
                    "allkeys-lru" in str(w.message) for w in caught
                    if issubclass(w.category, RuntimeWarning))
                await relaxed.client()
        strict_settings = lru.settings.model_copy(update={"strict": True})
        try:
            await QueueManager(strict_settings).connect()
            checks["strict_refused"] = None
        except EvictionPolicyError as exc:
            checks["strict_refused"] = type(exc).__name__
        strict_worker = lru.worker(dataclasses.replace(cfg, strict=True), queues=[CHAOS_QUEUE])
        checks["strict_worker_exit"] = await strict_worker.wait_exit(60)
        checks["strict_worker_says"] = any("EvictionPolicyError" in line
                                           for line in strict_worker.log_lines())
        relaxed_worker = lru.worker(cfg, queues=[CHAOS_QUEUE])
        await relaxed_worker.wait_started([CHAOS_QUEUE])
        checks["worker_warning"] = any("maxmemory-policy=allkeys-lru" in line
                                       for line in relaxed_worker.log_lines())
        relaxed_worker.terminate()
        await relaxed_worker.wait_exit(cfg.shutdown_timeout_s + 15)

    async with Stage(workdir / "full", sink=False,
                     redis_args=("--maxmemory-policy", "noeviction")) as stage:
        client = stage.redis.client()
        try:
            used = int((await client.info("memory"))["used_memory"])
            await client.config_set("maxmemory", used + 4 * 1024 * 1024)
            producer = stage.producer()
            pad = "x" * 4096
            streak = 0
            while streak < 20 and producer.issued < 100_000:
                streak = 0 if await producer.add(0, pad=pad) else streak + 1
            try:
                await stage.campaign("oom", 500)
                checks["campaign_enqueue"] = "accepted"
            except (NewsletterQueueError, RedisError) as exc:
                checks["campaign_enqueue"] = type(exc).__name__
            refused_ids = [job for job, _, _, _ in producer.refused]
            refused_states = await stage.states(client, CHAOS_QUEUE, refused_ids)
            accepted_states = await stage.states(client, CHAOS_QUEUE, list(producer.acks))
            campaign_batches = await client.keys(f"{PREFIX}:email:email-{TENANT}-oom-b*")
            checks["campaign_batches_stored"] = len([k for k in campaign_batches
                                                     if str(k).count(":") == 2])
            worker = stage.worker(cfg, queues=[CHAOS_QUEUE])
            await worker.wait_started([CHAOS_QUEUE])
            full_from = time.time()
            with contextlib.suppress(TimeoutError):
                await wait_until(lambda: _says(worker, "maxmemory"), timeout=10,
                                 message="the worker to meet the full Redis")
            # watch the worker on the full server for a while: the fault's own length
            await asyncio.sleep(p.full_watch_s)
            checks["worker_alive_while_full"] = worker.proc.poll() is None
            await client.config_set("maxmemory", 0)
            relieved = time.time()
            lines = worker.log_lines()
            full_lines = count_lines_between(lines, full_from, relieved)
            records = count_lines_between(lines, full_from, relieved, records_only=True)
            checks.update({
                "full_watched_s": round(relieved - full_from, 1),
                "worker_log_records_while_full": records,
                "worker_log_lines_while_full": full_lines,
                "worker_log_lines_per_min_while_full": round(
                    full_lines * 60 / (relieved - full_from), 1)})
            states = await stage.settle(client, {CHAOS_QUEUE: list(producer.acks)},
                                        timeout=(p.lock_ms + p.stalled_ms) / 1000 + p.settle_s)
            worker.terminate()
            exit_code = await worker.wait_exit(cfg.shutdown_timeout_s + 15)
        finally:
            await client.aclose()
        view = stage.read_ledger()
    account(result, states, view)
    done_after = view.done_after(relieved)
    result.recovery_s = done_after[0] - relieved if done_after else None
    result.extra.update(checks)
    result.extra.update({
        "enqueues_refused": len(producer.refused),
        "refusal_errors": sorted({kind for _, _, kind, _ in producer.refused}),
        "accepted_missing_while_full": sum(1 for s in accepted_states.values()
                                           if s == "missing"),
        "refused_but_stored": sum(1 for s in refused_states.values() if s != "missing"),
        "worker_exit": exit_code,
    })
    return result


async def _says(worker: WorkerProcess, text: str) -> bool:
    return any(text in line for line in worker.log_lines())
