"""The chaos harness: a scenario's world and what it measures.

A ``Stage`` is one scenario's world, all on loopback and all its own: a private
``redis-server`` (started on a free port in the scenario's directory — the shared
server is never touched, so it may be killed, restarted or filled up), the dev SMTP sink
in its own process (``python -m newsletter_queue.services.sink``, counting messages per
recipient), a SQLite store, a ``QueueManager`` and worker processes
(``tests.chaos.worker_entry``: ``run_worker_process`` writing the execution ledger).
Every subprocess is killed when the stage closes, whatever happened (the processes
themselves are in ``processes``).

Measurements come from three places that do not depend on each other: the execution
ledger (files written by the worker processes), Redis (each accepted job's final state)
and the sink (messages per recipient).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from newsletter_queue.config import Settings
from newsletter_queue.embedded import _free_port
from newsletter_queue.errors import NewsletterQueueError
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.send_ledger import CampaignLedger
from newsletter_queue.services.store import CampaignRecord, Store
from tests.chaos.processes import (
    QUEUES,
    ApiProcess,
    Processes,
    RedisServer,
    Sink,
    SinkStats,
    WorkerProcess,
)
from tests.chaos.worker_entry import CHAOS_JOB, CHAOS_QUEUE
from tests.support.execution_log import LedgerView, read_ledger

PREFIX = "chaos"
TENANT = "t1"
_KEEP = '{"age_s": 604800, "count": 1000000}'
_FOREIGN_ENV = ("REDIS_URL", "SMTP_URL", "DATABASE_URL", "AI_BASE_URL", "AI_API_KEY",
                "AI_MODEL")


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of the worker processes (both queues get the same lock settings)."""

    concurrency: int = 10
    lock_ms: int = 30_000
    stalled_ms: int = 30_000
    max_stalled: int = 1
    shutdown_timeout_s: float = 30.0
    strict: bool = False


@dataclass
class Producer:
    """Enqueues ``chaos-job`` jobs through ``QueueManager``, noting every acknowledgement.

    Job ids are ``chaos-000001`` …; an id is *accepted* once the enqueue call returned.
    """

    manager: QueueManager
    acks: dict[str, float] = field(default_factory=dict)
    refused: list[tuple[str, float, str, float]] = field(default_factory=list)
    issued: int = 0

    def _next_id(self) -> str:
        self.issued += 1
        return f"chaos-{self.issued:06d}"

    async def add(self, ms: float = 0, *, pad: str | None = None) -> bool:
        job_id = self._next_id()
        began = time.time()
        params: dict[str, Any] = {"ms": ms}
        if pad is not None:
            params["pad"] = pad
        try:
            await self.manager.schedule_analytics_job(
                CHAOS_JOB,
                {"campaignId": "chaos", "tenantId": TENANT, "eventType": "daily-aggregation",
                 "data": params},
                {"job_id": job_id, "remove_on_complete": False, "remove_on_fail": False})
        except (NewsletterQueueError, RedisError, OSError) as exc:
            # Anything but our own errors is a finding (the caller should get ours).
            now = time.time()
            self.refused.append((job_id, now, type(exc).__name__, now - began))
            return False
        self.acks[job_id] = time.time()
        return True

    async def add_many(self, n: int, ms: float = 0, parallel: int = 32) -> None:
        gate = asyncio.Semaphore(parallel)

        async def one() -> None:
            async with gate:
                await self.add(ms)

        await asyncio.gather(*(one() for _ in range(n)))

    async def run_paced(self, rate: float, stop: asyncio.Event, ms: float = 0,
                        max_in_flight: int = 256) -> None:
        """About ``rate`` enqueues a second until ``stop`` (slots missed while calls
        hang are dropped, not made up)."""
        loop = asyncio.get_running_loop()
        tick = 0.02
        carry = 0.0
        pending: set[asyncio.Task[bool]] = set()
        next_at = loop.time()
        while not stop.is_set():
            carry += rate * tick
            count, carry = int(carry), carry - int(carry)
            for _ in range(count):
                if len(pending) < max_in_flight:
                    task = loop.create_task(self.add(ms))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            next_at += tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(next_at - loop.time(), 0))
        if pending:
            await asyncio.gather(*pending)


@dataclass
class ScenarioResult:
    """One row of the report (``to_json`` is the JSON object the bench prints)."""

    name: str
    accepted: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    duplicate_executions: int = 0
    duplicate_emails: int = 0
    emails_in_flight_at_fault: int = 0
    missing_emails: int = 0
    recovery_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        core = {k: getattr(self, k) for k in (
            "name", "accepted", "completed", "failed", "lost", "duplicate_executions",
            "duplicate_emails", "emails_in_flight_at_fault", "missing_emails", "recovery_s")}
        if isinstance(core["recovery_s"], float):
            core["recovery_s"] = round(core["recovery_s"], 2)
        return {**core, **self.extra}


def report(result: ScenarioResult) -> None:
    """Print a scenario's row (shown with ``pytest -s`` and with a failure's output)."""
    print(f"\n{json.dumps(result.to_json())}")


class Stage:
    """One scenario's world (see the module docstring). Use ``async with``."""

    def __init__(self, workdir: Path, *, redis_args: Sequence[str] = (), sink: bool = True
                 ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs = Processes()
        self.redis = RedisServer(self.procs, workdir / "redis", *redis_args)
        self.sink = Sink(self.procs, workdir) if sink else None
        self.ledger_dir = workdir / "ledger"
        self.ledger_dir.mkdir(exist_ok=True)
        keep = json.loads(_KEEP)
        self.settings = Settings(
            _env_file=None, redis_url=self.redis.url, key_prefix=PREFIX,
            state_dir=workdir / "state", embedded_redis="never",
            queues={q: {"remove_on_complete": keep, "remove_on_fail": keep} for q in QUEUES})
        self.manager = QueueManager(self.settings)
        self.store: Store | None = None
        self.workers: list[WorkerProcess] = []

    async def __aenter__(self) -> Stage:
        try:
            await self.redis.start()
            if self.sink is not None:
                await self.sink.start()
            self.store = Store.from_settings(self.settings)
            await self.store.init()
        except BaseException:
            self.procs.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            with contextlib.suppress(Exception):
                await self.manager.close()
            if self.store is not None:
                with contextlib.suppress(Exception):
                    await self.store.close()
        finally:
            self.procs.close()

    # --- workers ----------------------------------------------------------------------
    def worker_env(self, cfg: WorkerConfig) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("NLQ_") and k not in _FOREIGN_ENV}
        env.update({
            "REDIS_URL": self.redis.url, "NLQ_KEY_PREFIX": PREFIX,
            "NLQ_STATE_DIR": str(self.settings.state_dir), "NLQ_EMBEDDED_REDIS": "never",
            "NLQ_EMAILS_PER_SECOND": "1000000", "NLQ_EMAILS_PER_SECOND_PER_TENANT": "1000000",
            "NLQ_SHUTDOWN_TIMEOUT_S": str(cfg.shutdown_timeout_s),
            "NLQ_STRICT": "1" if cfg.strict else "0",
            "PYTHONUNBUFFERED": "1",
        })
        if self.sink is not None:
            env["SMTP_URL"] = self.sink.url
        for queue in QUEUES:
            base = f"NLQ_QUEUES__{queue.upper()}__"
            env[base + "CONCURRENCY"] = str(cfg.concurrency)
            env[base + "LOCK_DURATION_MS"] = str(cfg.lock_ms)
            env[base + "STALLED_INTERVAL_MS"] = str(cfg.stalled_ms)
            env[base + "MAX_STALLED_COUNT"] = str(cfg.max_stalled)
            # Keep every finished job: BullMQ trims the completed/failed sets by count
            # whenever *any* job finishes, which would hide the jobs this run counts.
            env[base + "REMOVE_ON_COMPLETE"] = _KEEP
            env[base + "REMOVE_ON_FAIL"] = _KEEP
        return env

    async def wind_down(self, worker: WorkerProcess, cfg: WorkerConfig
                        ) -> tuple[int | None, SinkStats]:
        """SIGTERM ``worker``, wait for its exit code, stop the sink and return both."""
        worker.terminate()
        code = await worker.wait_exit(cfg.shutdown_timeout_s + 15)
        assert self.sink is not None
        return code, await self.sink.stop()

    def worker(self, cfg: WorkerConfig, queues: Sequence[str] = QUEUES) -> WorkerProcess:
        log = self.workdir / f"worker-{len(self.workers) + 1}.log"
        proc = self.procs.spawn(
            [sys.executable, "-m", "tests.chaos.worker_entry", "--ledger",
             str(self.ledger_dir), "--queues", ",".join(queues)],
            log=log, env=self.worker_env(cfg))
        worker = WorkerProcess(proc, log)
        self.workers.append(worker)
        return worker

    def api(self) -> ApiProcess | None:
        """Serve the dev API against this stage, if this checkout has one."""
        if importlib.util.find_spec("newsletter_queue.api") is None:
            return None
        port = _free_port()
        log = self.workdir / "api.log"
        proc = self.procs.spawn(
            [sys.executable, "-m", "tests.chaos.api_entry", "--port", str(port)],
            log=log, env=self.worker_env(WorkerConfig()))
        return ApiProcess(proc, port, log)

    # --- producing --------------------------------------------------------------------
    def producer(self) -> Producer:
        return Producer(self.manager)

    async def campaign(self, campaign_id: str, recipients: int) -> tuple[list[str], list[str]]:
        """Store a campaign and enqueue it in batches of 100; returns (batch ids, emails)."""
        assert self.store is not None
        await self.store.upsert_campaign(CampaignRecord(
            tenant_id=TENANT, campaign_id=campaign_id, subject="Issue for {{ name }}",
            text="Hello {{ name }}"))
        emails = [f"{campaign_id}-r{i}@example.com" for i in range(recipients)]
        jobs = await self.manager.schedule_batch_email_sending(
            campaign_id, TENANT, [{"email": e, "name": f"R{i}"} for i, e in enumerate(emails)],
            100)
        return [j.id for j in jobs], emails

    def ledger(self, campaign_id: str, client: aioredis.Redis) -> CampaignLedger:
        return CampaignLedger(client, PREFIX, TENANT, campaign_id)

    # --- observing --------------------------------------------------------------------
    def read_ledger(self) -> LedgerView:
        return read_ledger(self.ledger_dir)

    async def completed_count(self, client: aioredis.Redis, queue: str = CHAOS_QUEUE) -> int:
        return int(await client.zcard(f"{PREFIX}:{queue}:completed"))

    async def states(self, client: aioredis.Redis, queue: str, ids: Sequence[str]
                     ) -> dict[str, str]:
        """Each job's state: completed, failed, missing (no hash) or pending."""
        out: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            pipe = client.pipeline(transaction=False)
            for job_id in chunk:
                pipe.zscore(f"{PREFIX}:{queue}:completed", job_id)
                pipe.zscore(f"{PREFIX}:{queue}:failed", job_id)
                pipe.exists(f"{PREFIX}:{queue}:{job_id}")
            replies = await pipe.execute()
            for i, job_id in enumerate(chunk):
                done, failed, exists = replies[3 * i:3 * i + 3]
                out[job_id] = ("completed" if done is not None else "failed"
                               if failed is not None else "pending" if exists else "missing")
        return out

    async def idle(self, client: aioredis.Redis) -> bool:
        """No job waiting, delayed or running in any queue of the stage."""
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            base = f"{PREFIX}:{queue}:"
            pipe.llen(base + "wait")
            pipe.llen(base + "active")
            pipe.zcard(base + "delayed")
            pipe.zcard(base + "prioritized")
            pipe.llen(base + "paused")
        return not any(int(n) for n in await pipe.execute())

    async def settle(self, client: aioredis.Redis, jobs: dict[str, Sequence[str]],
                     timeout: float) -> dict[tuple[str, str], str]:
        """Wait until every job in ``jobs`` (queue → ids) is finished or gone and no
        queue has work left; returns the states (pending ones too, on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            states: dict[tuple[str, str], str] = {}
            with contextlib.suppress(OSError, RedisError):
                for queue, ids in jobs.items():
                    for job_id, state in (await self.states(client, queue, ids)).items():
                        states[(queue, job_id)] = state
                if "pending" not in states.values() and len(states) == sum(
                        len(ids) for ids in jobs.values()) and await self.idle(client):
                    return states
            if time.monotonic() > deadline:
                return states
            await asyncio.sleep(0.1)


def account(result: ScenarioResult, states: dict[tuple[str, str], str], view: LedgerView,
            sink: SinkStats | None = None, emails: Sequence[str] = ()) -> None:
    """Fill accepted/completed/failed/lost/duplicate_executions from the final states
    (Redis) and the ledger, and duplicate/missing emails from the ``sink``'s counts of
    the ``emails`` expected. A job whose add was lost by Redis but that ran to a
    recorded completion before counts as completed (noted as ``completed_not_in_redis``)."""
    if sink is not None:
        result.duplicate_emails = sink.duplicates()
        result.missing_emails = sink.missing(emails)
    result.accepted = len(states)
    completed = failed = lost = ran_then_vanished = 0
    lost_states: dict[str, int] = {}
    vanished_samples: list[str] = []
    for key, state in states.items():
        if state == "completed":
            completed += 1
        elif state == "failed":
            failed += 1
        elif view.done.get(key):
            completed += 1
            ran_then_vanished += 1
            vanished_samples.append(f"{key[0]}:{key[1]}={state}")
        else:
            lost += 1
            lost_states[state] = lost_states.get(state, 0) + 1
    result.completed, result.failed, result.lost = completed, failed, lost
    dup = view.duplicates(states)
    result.duplicate_executions = dup.duplicate_executions
    result.extra.update({"completed_twice": dup.completed_twice,
                         "completed_twice_jobs": [j for _, j in dup.completed_twice_jobs],
                         "retries": dup.retries,
                         "executions": sum(1 for e in view.executions if e.key in states)})
    if ran_then_vanished:
        result.extra["completed_not_in_redis"] = ran_then_vanished
        result.extra["completed_not_in_redis_sample"] = vanished_samples[:5]
    if lost_states:
        result.extra["lost_states"] = lost_states
    if view.broken_lines:
        result.extra["ledger_torn_lines"] = view.broken_lines
