"""Interoperability with Node BullMQ, both ways, on a real Redis.

DESIGN.md promises that jobs interoperate with Node BullMQ producers, workers and
dashboards; these tests hold us to it with the real Node package (pinned in
``tests/node/package.json``), driven through ``tests/support/nodeharness.py``:

- a Node producer's email job (the seed's camelCase JSON) validates unchanged here;
- jobs ``QueueManager`` adds are read back by Node (``Queue.getJob``/``Job.fromId``) and
  processed by a Node Worker, whose return values we read from the job hash;
- once ``newsletter_queue.engine`` exists: jobs added by Node (plain, delayed,
  prioritized, retried) are processed by our engine ``Worker`` and Node sees the return
  values.

Tests skip only when ``node`` is absent (or, for the engine cases, until the engine
package lands); a failing ``npm ci`` or harness script fails the test. Each test works
under its own key prefix, which the ``redis_client`` fixture deletes afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis.asyncio as aioredis

from newsletter_queue.campaigns import batch_job_id
from newsletter_queue.config import Settings
from newsletter_queue.errors import JobValidationError
from newsletter_queue.jobs import EmailJobData, validate_job
from newsletter_queue.manager import QueueManager
from tests.support.helpers import wait_for
from tests.support.nodeharness import arun_node, ensure_node_modules, node_available

EMAIL = "email"

# The seed's TypeScript EmailJobData, exactly as a Node producer sends it. Every value
# is already in normal form (lower-case domains), so validation must not change it.
SEED_EMAIL_JOB: dict[str, Any] = {
    "campaignId": "camp-42",
    "tenantId": "tenant-7",
    "recipients": [
        {"email": "ada@example.com", "name": "Ada Lovelace",
         "personalizations": {"firstName": "Ada", "plan": "pro", "score": 3,
                              "tags": ["early", "vip"], "nested": {"ok": True}}},
        {"email": "bob.smith+news@example.org", "name": "Bob Smith",
         "personalizations": {}},
    ],
    "batchSize": 2,
}


def email_job(campaign: str, *, n: int = 1) -> dict[str, Any]:
    """A valid email job payload (camelCase) for ``campaign`` with ``n`` recipients."""
    return {
        "campaignId": campaign,
        "tenantId": "tenant-7",
        "recipients": [{"email": f"user{i}@example.com", "name": f"User {i}"}
                       for i in range(n)],
        "batchSize": n,
    }


@dataclass(frozen=True)
class NodeBullMQ:
    """The Node harness bound to this test's Redis URL and key prefix."""

    url: str
    prefix: str
    modules: Path

    async def _run(self, script: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        return await arun_node(script, [self.url, self.prefix], timeout, stdin=spec,
                               modules=self.modules)

    async def add(self, queue: str, jobs: Sequence[dict[str, Any]]) -> list[str]:
        """``Queue.add`` each ``{"name", "data", "opts"}``; returns the job ids."""
        out = await self._run("add-jobs.js", {"queue": queue, "jobs": list(jobs)}, 30)
        return [str(i) for i in out["ids"]]

    async def get(self, queue: str, ids: Sequence[str], via: str = "getJob"
                  ) -> dict[str, dict[str, Any] | None]:
        """What Node sees of each job (``None`` for a missing one)."""
        out = await self._run("get-jobs.js", {"queue": queue, "ids": list(ids), "via": via},
                              30)
        jobs: dict[str, dict[str, Any] | None] = out["jobs"]
        return jobs

    async def work(self, queue: str, count: int, *, concurrency: int = 1,
                   fail_first_attempt: bool | Sequence[str] = False,
                   timeout: float = 30.0) -> dict[str, Any]:
        """Run a Node Worker until ``count`` jobs completed; returns its summary."""
        rule: bool | list[str] = (fail_first_attempt if isinstance(fail_first_attempt, bool)
                                  else list(fail_first_attempt))
        spec = {"queue": queue, "count": count, "concurrency": concurrency,
                "failFirstAttempt": rule, "timeoutMs": int(timeout * 1000)}
        return await self._run("worker.js", spec, timeout + 15)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The installed harness; skips only when node itself is missing."""
    reason = node_available()
    if reason is not None:
        pytest.skip(reason)
    return ensure_node_modules()  # raises (test fails) if npm cannot install


@pytest.fixture
def node(node_modules: Path, redis_url: str, prefix: str,
         redis_client: aioredis.Redis) -> NodeBullMQ:
    # Depends on redis_client so this prefix's keys are deleted after the test.
    return NodeBullMQ(redis_url, prefix, node_modules)


async def job_hash(client: aioredis.Redis, prefix: str, queue: str, job_id: str
                   ) -> dict[str, str]:
    raw = await client.hgetall(f"{prefix}:{queue}:{job_id}")
    return {str(k): str(v) for k, v in raw.items()}


# --- 1. Node producer → Python validation --------------------------------------------


async def test_node_email_job_validates_unchanged(
    node: NodeBullMQ, redis_client: aioredis.Redis, prefix: str, manager: QueueManager
) -> None:
    [job_id] = await node.add(EMAIL, [{
        "name": "send-batch", "data": SEED_EMAIL_JOB,
        "opts": {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}},
    }])

    raw = await job_hash(redis_client, prefix, EMAIL, job_id)
    assert raw["name"] == "send-batch"
    data = json.loads(raw["data"])
    assert data == SEED_EMAIL_JOB

    model = validate_job(EmailJobData, data)
    assert model.to_wire() == SEED_EMAIL_JOB
    assert model.campaign_id == "camp-42"
    assert model.tenant_id == "tenant-7"
    assert model.batch_size == 2
    assert [r.email for r in model.recipients] == ["ada@example.com",
                                                   "bob.smith+news@example.org"]
    assert model.recipients[0].personalizations == SEED_EMAIL_JOB["recipients"][0][
        "personalizations"]

    # The manager's read side sees the same job, waiting, with Node's options.
    info = await manager.get_job(EMAIL, job_id)
    assert info is not None
    assert info.data == SEED_EMAIL_JOB
    assert info.state == "waiting"
    assert info.opts["attempts"] == 3


async def test_invalid_node_email_job_names_bad_fields(
    node: NodeBullMQ, redis_client: aioredis.Redis, prefix: str
) -> None:
    bad = json.loads(json.dumps(SEED_EMAIL_JOB))
    bad["tenantId"] = "tenant:7"
    bad["recipients"][1]["email"] = "not-an-address"
    bad["batchSize"] = 0
    [job_id] = await node.add(EMAIL, [{"name": "send-batch", "data": bad}])

    data = json.loads((await job_hash(redis_client, prefix, EMAIL, job_id))["data"])
    with pytest.raises(JobValidationError) as caught:
        validate_job(EmailJobData, data)
    assert set(caught.value.paths) == {"tenantId", "recipients[1].email", "batchSize"}
    assert "recipients[1].email" in str(caught.value)


# --- 2. Python producer → Node reader and Node worker ---------------------------------


async def test_our_jobs_are_read_by_node(manager: QueueManager, node: NodeBullMQ) -> None:
    single = await manager.schedule_email_job(
        "send-transactional", SEED_EMAIL_JOB, {"job_id": "txn-welcome-1", "priority": 2})
    recipients = [{"email": f"reader{i}@example.com", "name": f"Reader {i}"}
                  for i in range(5)]
    batches = await manager.schedule_batch_email_sending(
        "camp-9", "tenant-3", recipients, batch_size=2, priority=7)
    plain = await manager.schedule_email_job("send-batch", email_job("camp-plain"))

    assert single.id == "txn-welcome-1"
    assert [b.id for b in batches] == [batch_job_id("tenant-3", "camp-9", i) for i in range(3)]
    enqueued = [single, *batches, plain]

    for via in ("getJob", "fromId"):
        seen = await node.get(EMAIL, [j.id for j in enqueued], via=via)
        for job in enqueued:
            got = seen[job.id]
            assert got is not None, f"Node cannot find job {job.id} ({via})"
            assert got["id"] == job.id
            assert got["name"] == job.name
            assert got["data"] == job.data
            assert got["opts"]["attempts"] == 5  # the email queue's default
        assert seen[single.id]["priority"] == 2  # type: ignore[index]
        assert seen[single.id]["state"] == "prioritized"  # type: ignore[index]
        for batch in batches:
            assert seen[batch.id]["priority"] == 7  # type: ignore[index]
            assert seen[batch.id]["opts"]["priority"] == 7  # type: ignore[index]
        assert seen[plain.id]["priority"] == 0  # type: ignore[index]
        assert seen[plain.id]["state"] == "waiting"  # type: ignore[index]

    # Batch data is the seed's shape: recipients split 2 + 2 + 1.
    sizes = [len(b.data["recipients"]) for b in batches]
    assert sizes == [2, 2, 1]


async def test_node_worker_processes_our_jobs(
    manager: QueueManager, node: NodeBullMQ, redis_client: aioredis.Redis, prefix: str
) -> None:
    fixed = {"type": "fixed", "delay": 50}
    added = [
        await manager.schedule_email_job("send-batch", email_job("c-plain"),
                                         {"job_id": "plain-1"}),
        await manager.schedule_email_job("send-batch", email_job("c-p9"),
                                         {"job_id": "prio-9", "priority": 9}),
        await manager.schedule_email_job("send-batch", email_job("c-p1"),
                                         {"job_id": "prio-1", "priority": 1}),
        await manager.schedule_email_job("send-batch", email_job("c-p5"),
                                         {"job_id": "prio-5", "priority": 5}),
        await manager.schedule_email_job("send-batch", email_job("c-delayed"),
                                         {"job_id": "delayed-1", "delay": 400}),
        await manager.schedule_email_job("send-flaky", email_job("c-retry"),
                                         {"job_id": "retry-1", "attempts": 2,
                                          "backoff": fixed}),
    ]

    summary = await node.work(EMAIL, len(added), concurrency=1,
                              fail_first_attempt=["retry-1"])
    assert summary["completed"] == len(added)
    assert summary["failedAttempts"] == 1

    order: list[str] = summary["order"]
    # BullMQ serves un-prioritized jobs first, then priority 1 (highest) upwards.
    assert order.index("plain-1") < order.index("prio-1") < order.index("prio-5") \
        < order.index("prio-9")
    assert order.count("retry-1") == 2

    for job in added:
        raw = await job_hash(redis_client, prefix, EMAIL, job.id)
        assert raw.get("finishedOn"), f"{job.id} did not finish"
        returned = json.loads(raw["returnvalue"])
        assert returned == {"echo": job.data, "by": "node", "name": job.name,
                            "attemptsMade": 1 if job.id == "retry-1" else 0}
        info = await manager.get_job(EMAIL, job.id)
        assert info is not None
        assert info.state == "completed"
        assert info.return_value == returned

    retried = await job_hash(redis_client, prefix, EMAIL, "retry-1")
    # BullMQ 5 stores attemptsMade under the short field name "atm".
    assert int(retried.get("atm") or retried.get("attemptsMade") or 0) == 2
    assert "planned failure" in retried["failedReason"]
    delayed = await job_hash(redis_client, prefix, EMAIL, "delayed-1")
    assert int(delayed["processedOn"]) - int(delayed["timestamp"]) >= 400


# --- 3. Node producer → our engine Worker → Node reader -------------------------------


@pytest.fixture
def engine() -> ModuleType:
    """``newsletter_queue.engine``; skips these tests until the engine package lands."""
    module: ModuleType = pytest.importorskip(
        "newsletter_queue.engine", reason="newsletter_queue.engine (our Worker) is not built yet")
    if not hasattr(module, "Worker"):  # e.g. a half-written package without __init__.py
        pytest.skip("newsletter_queue.engine has no Worker yet")
    return module


@dataclass
class Seen:
    """What our processor saw, in start order."""

    starts: list[tuple[str, int]]


def echo_processor(seen: Seen, flaky_names: Sequence[str] = ("send-flaky",)
                   ) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    """A processor returning ``{echo, by: "python", attemptsMade}``.

    Jobs named in ``flaky_names`` fail their first attempt, to exercise retries.
    """
    async def process(job: Any) -> dict[str, Any]:
        seen.starts.append((str(job.id), int(job.attempts_made)))
        if job.name in flaky_names and job.attempts_made == 0:
            raise RuntimeError(f"planned failure of the first attempt of job {job.id}")
        return {"echo": job.data, "by": "python", "attemptsMade": job.attempts_made}
    return process


@pytest.fixture
async def run_engine_worker(
    engine: ModuleType, settings: Settings
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Start our engine Worker(s) on this test's settings; closes them afterwards."""
    workers: list[Any] = []

    async def start(queue: str, processor: Any, concurrency: int = 1) -> Any:
        worker = engine.Worker(queue, processor, settings=settings, concurrency=concurrency)
        started = worker.start()
        if asyncio.iscoroutine(started):
            await started
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await worker.close(10)


async def test_our_worker_processes_node_jobs(
    node: NodeBullMQ, redis_client: aioredis.Redis, prefix: str,
    run_engine_worker: Callable[..., Awaitable[Any]],
) -> None:
    specs: list[dict[str, Any]] = [
        {"name": "send-batch", "data": email_job("n-plain"), "opts": {"jobId": "plain-1"}},
        {"name": "send-batch", "data": email_job("n-p5"), "opts": {"jobId": "prio-5",
                                                                    "priority": 5}},
        {"name": "send-batch", "data": email_job("n-p1"), "opts": {"jobId": "prio-1",
                                                                    "priority": 1}},
        {"name": "send-batch", "data": email_job("n-p3"), "opts": {"jobId": "prio-3",
                                                                    "priority": 3}},
        {"name": "send-batch", "data": email_job("n-delayed"),
         "opts": {"jobId": "delayed-1", "delay": 300}},
        {"name": "send-flaky", "data": email_job("n-retry"),
         "opts": {"jobId": "retry-1", "attempts": 2,
                  "backoff": {"type": "fixed", "delay": 50}}},
    ]
    ids = await node.add(EMAIL, specs)
    assert ids == [s["opts"]["jobId"] for s in specs]

    seen = Seen([])
    await run_engine_worker(EMAIL, echo_processor(seen), 1)
    await wait_for(lambda: _all_completed(redis_client, prefix, ids), timeout=20,
                   message="all Node jobs completed")

    started = [job_id for job_id, _ in seen.starts]
    assert started.index("plain-1") < started.index("prio-1") < started.index("prio-3") \
        < started.index("prio-5")
    assert ("retry-1", 0) in seen.starts
    assert ("retry-1", 1) in seen.starts

    view = await node.get(EMAIL, ids, via="fromId")
    for spec in specs:
        job_id = spec["opts"]["jobId"]
        got = view[job_id]
        assert got is not None
        assert got["state"] == "completed"
        assert got["returnvalue"] == {"echo": spec["data"], "by": "python",
                                      "attemptsMade": 1 if job_id == "retry-1" else 0}
    assert view["retry-1"]["attemptsMade"] == 2  # type: ignore[index]
    assert "planned failure" in view["retry-1"]["failedReason"]  # type: ignore[index]
    delayed = view["delayed-1"]
    assert delayed is not None
    assert delayed["processedOn"] - delayed["timestamp"] >= 300


async def test_our_worker_processes_many_node_jobs_concurrently(
    node: NodeBullMQ, redis_client: aioredis.Redis, prefix: str,
    run_engine_worker: Callable[..., Awaitable[Any]],
) -> None:
    specs = [{"name": "send-batch", "data": email_job(f"bulk-{i}")} for i in range(60)]
    ids = await node.add(EMAIL, specs)
    assert len(set(ids)) == 60

    seen = Seen([])
    await run_engine_worker(EMAIL, echo_processor(seen), 10)
    await wait_for(lambda: _all_completed(redis_client, prefix, ids), timeout=30,
                   message="60 Node jobs completed by our Worker")

    assert sorted(job_id for job_id, _ in seen.starts) == sorted(ids)
    view = await node.get(EMAIL, ids, via="fromId")
    for job_id, spec in zip(ids, specs, strict=True):
        got = view[job_id]
        assert got is not None
        assert got["returnvalue"] == {"echo": spec["data"], "by": "python",
                                      "attemptsMade": 0}
    assert int(await redis_client.zcard(f"{prefix}:{EMAIL}:failed")) == 0


async def _all_completed(client: aioredis.Redis, prefix: str, ids: Sequence[str]) -> bool:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.zscore(f"{prefix}:{EMAIL}:completed", job_id)
    return all(score is not None for score in await pipe.execute())
