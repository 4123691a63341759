"""The dashboard's REST routes: enqueue, job lists, job detail, job actions, dead letters.

``POST /api/dev/queues/{queue}/jobs`` enqueues one job through the same validation as
``QueueManager.schedule_*_job``. With ``opts.job_id`` it is idempotent: exactly one request
per id creates the job and answers 201; every other (before or at the same time)
answers 200 with ``"created": false`` and adds nothing (``QueueManager._add_once``).

Job lists page through one state (newest first). ``search`` matches a job id exactly,
or a campaign / tenant id (case-insensitive substring of ``data.campaignId`` /
``data.tenantId``) among the newest ``SEARCH_SCAN`` jobs of that state — a bounded scan,
so a search never walks an unbounded set; the response says when it was cut short.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, cast

from bullmq import Job as BullJob
from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..connection import AnyRedis
from ..errors import brief
from ..manager import MAX_CLEAN_GRACE_MS, MAX_CLEAN_LIMIT, JobOptions
from ..queues import QUEUE_NAMES, QueueName
from ..records import JOB_STATES, JobInfo
from .context import ApiContext
from .errors import ApiError

SEARCH_SCAN = 5000
# Pages beyond this would ask Redis for offsets past what its integers (and the Lua
# scripts' doubles) take; nobody pages through 200 million jobs 20 at a time.
MAX_PAGE = 10_000_000
_CHUNK = 250
_LISTS = ("waiting", "active", "paused")
# BullMQ's camelCase option names, accepted beside our snake_case ones.
_CAMEL_OPTIONS = {"jobId": "job_id", "removeOnComplete": "remove_on_complete",
                  "removeOnFail": "remove_on_fail"}


class EnqueueBody(BaseModel):
    """One job: its name, its data (the queue's job model) and ``JobOptions``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200,
                      description="job name, e.g. send-batch, campaign-complete")
    data: dict[str, Any] = Field(description="EmailJobData, AnalyticsJobData or AIJobData "
                                             "(camelCase, as on the wire)")
    opts: dict[str, Any] = Field(default_factory=dict, description=(
        "job_id (or jobId), delay, priority, attempts, backoff, lifo, remove_on_complete, "
        "remove_on_fail"))


# Parameters are plain strings checked by the routes (an unknown queue is a 400 that
# lists the valid ones); the enums only tell the OpenAPI schema, and so its clients and
# schemathesis, which values exist.
QueuePath = Annotated[str, Path(description="email, analytics or ai",
                                json_schema_extra={"enum": list(QUEUE_NAMES)})]
QueueQuery = Annotated[str | None, Query(description="email, analytics or ai",
                                         json_schema_extra={"enum": list(QUEUE_NAMES)})]
JobActionPath = Annotated[str, Path(description="retry, promote or remove",
                                    json_schema_extra={"enum": ["retry", "promote",
                                                                "remove"]})]
CleanStateParam = Literal["completed", "failed", "delayed", "waiting", "active", "paused",
                          "prioritized"]


async def state_ids(ctx: ApiContext, client: AnyRedis, queue: str, state: str,
                    start: int, end: int) -> list[str]:
    """Job ids of ``state``, newest first, by index range."""
    key = ctx.manager.key(queue, "wait" if state == "waiting" else state)
    if state in _LISTS:
        return cast(list[str], await client.lrange(key, start, end))
    return cast(list[str], await client.zrevrange(key, start, end))


async def state_count(ctx: ApiContext, client: AnyRedis, queue: str, state: str) -> int:
    key = ctx.manager.key(queue, "wait" if state == "waiting" else state)
    return int(await (client.llen(key) if state in _LISTS else client.zcard(key)))


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


async def load_jobs(ctx: ApiContext, client: AnyRedis, queue: str, ids: list[str],
                    state: str) -> list[JobInfo]:
    """Job hashes of ``ids`` in one round trip (jobs removed meanwhile are skipped)."""
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(ctx.manager.key(queue, job_id))
    hashes = await pipe.execute()
    return [JobInfo.from_hash(queue, job_id, raw, state)
            for job_id, raw in zip(ids, hashes, strict=True) if raw]


def job_summary(job: JobInfo) -> dict[str, Any]:
    data = job.data if isinstance(job.data, dict) else {}
    return {"id": job.id, "name": job.name, "state": job.state, "timestamp": job.timestamp,
            "processed_on": job.processed_on, "finished_on": job.finished_on,
            "attempts_made": job.attempts_made, "progress": job.progress,
            "failed_reason": job.failed_reason, "priority": job.priority,
            "delay": job.delay, "campaign_id": data.get("campaignId"),
            "tenant_id": data.get("tenantId"),
            "recipients": len(data["recipients"]) if isinstance(data.get("recipients"), list)
            else None}


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api/dev", tags=["dashboard"])

    def check(queue: str) -> None:
        if queue not in ctx.settings.queues:
            raise ApiError(400, f"unknown queue {queue!r}",
                           valid_queues=list(ctx.settings.queues))

    @router.post("/queues/{queue}/jobs", status_code=201,
                 summary="Enqueue one job (idempotent with opts.job_id)",
                 responses={200: {"description": "a job with this job_id already exists; "
                                                 "nothing was added"},
                            413: {"description": "body over NLQ_API_MAX_BODY_BYTES"},
                            422: {"description": "invalid job data or options"}})
    async def enqueue(queue: QueuePath, body: EnqueueBody) -> Any:
        check(queue)
        opts = cast(JobOptions, {_CAMEL_OPTIONS.get(k, k): v for k, v in body.opts.items()})
        await ctx.redis_ready()
        schedule = {QueueName.EMAIL: ctx.manager.schedule_email_job,
                    QueueName.ANALYTICS: ctx.manager.schedule_analytics_job,
                    QueueName.AI: ctx.manager.schedule_ai_job}[QueueName(queue)]
        job = await schedule(body.name, body.data, opts)
        return JSONResponse({"id": job.id, "queue": job.queue, "name": job.name,
                             "created": job.created},
                            status_code=201 if job.created else 200)

    @router.get("/queues/{queue}/jobs", summary="Jobs of one state, paginated, searchable")
    async def list_jobs(
        queue: QueuePath,
        state: Annotated[str, Query(description=", ".join(JOB_STATES),
                                    json_schema_extra={"enum": list(JOB_STATES)})] = "waiting",
        page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
        page_size: Annotated[int, Query(ge=1, le=200)] = 20,
        search: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Any:
        check(queue)
        if state not in JOB_STATES:
            raise ApiError(400, f"unknown state {state!r}", valid_states=list(JOB_STATES))
        await ctx.redis_ready()
        client = await ctx.manager.client()
        total = await state_count(ctx, client, queue, state)
        start = (page - 1) * page_size
        truncated = False
        if search and search.strip():
            term = search.strip()
            found: list[str] = []
            for offset in range(0, min(total, SEARCH_SCAN), _CHUNK):
                ids = await state_ids(ctx, client, queue, state, offset, offset + _CHUNK - 1)
                pipe = client.pipeline(transaction=False)
                for job_id in ids:
                    pipe.hget(ctx.manager.key(queue, job_id), "data")
                for job_id, data in zip(ids, await pipe.execute(), strict=True):
                    if _matches(term, job_id, data):
                        found.append(job_id)
            truncated = total > SEARCH_SCAN
            total = len(found)
            page_ids = found[start:start + page_size]
        else:
            page_ids = await state_ids(ctx, client, queue, state, start, start + page_size - 1)
        jobs = await load_jobs(ctx, client, queue, page_ids, state)
        return {"queue": queue, "state": state, "page": page, "page_size": page_size,
                "total": total, "search": search, "truncated": truncated,
                "jobs": [job_summary(j) for j in jobs]}

    @router.get("/queues/{queue}/jobs/{job_id}", summary="One job with logs and stack traces")
    async def job_detail(queue: QueuePath, job_id: str) -> Any:
        check(queue)
        await ctx.redis_ready()
        job = await ctx.manager.get_job(queue, job_id)
        if job is None:
            raise ApiError(404, f"no job {brief(job_id)!r} in queue {queue!r}")
        client = await ctx.manager.client()
        logs = await client.lrange(ctx.manager.key(queue, f"{job_id}:logs"), 0, -1)
        out = job.to_dict()
        out["logs"] = list(logs)
        out["max_attempts"] = int(job.opts.get("attempts") or 1)
        return out

    @router.post("/queues/{queue}/jobs/{job_id}/{op}", summary="retry, promote or remove a job")
    async def job_action(queue: QueuePath, job_id: str, op: JobActionPath) -> Any:
        check(queue)
        ops = ("retry", "promote", "remove")
        if op not in ops:
            raise ApiError(400, f"unknown job action {op!r}", valid_actions=list(ops))
        await ctx.redis_ready()
        q = await ctx.manager.queue(queue)
        state = str(await q.getJobState(job_id))
        if state == "unknown":
            raise ApiError(404, f"no job {brief(job_id)!r} in queue {queue!r}")
        if op == "remove":
            if not int(await q.remove(job_id)):
                raise ApiError(409, f"job {job_id} is locked by a worker; try again when it "
                                    "has finished")
            return {"queue": queue, "job_id": job_id, "removed": True}
        wanted = ("failed", "completed") if op == "retry" else ("delayed",)
        if state not in wanted:
            raise ApiError(409, f"cannot {op} job {job_id}: it is {state}, not "
                                f"{' or '.join(wanted)}", state=state)
        job = await BullJob.fromId(q, job_id)
        if job is None:
            raise ApiError(404, f"no job {brief(job_id)!r} in queue {queue!r}")
        try:
            await (job.retry(state) if op == "retry" else job.promote())
        except TypeError as exc:  # bullmq's "not in state" errors
            raise ApiError(409, f"cannot {op} job {job_id}: {exc}") from None
        return {"queue": queue, "job_id": job_id, "state": str(await q.getJobState(job_id))}

    @router.post("/queues/{queue}/clean", summary="Remove jobs of a state older than grace_ms")
    async def clean(queue: QueuePath, state: CleanStateParam = "completed",
                    grace_ms: Annotated[int, Query(ge=0, le=MAX_CLEAN_GRACE_MS)] = 0,
                    limit: Annotated[int, Query(ge=0, le=MAX_CLEAN_LIMIT)] = 0) -> Any:
        check(queue)
        await ctx.redis_ready()
        removed = await ctx.manager.clean_queue(queue, grace_ms, state, limit)
        return {"queue": queue, "state": state, "removed": len(removed)}

    @router.post("/queues/{queue}/retry-failed", summary="Move every failed job back to wait")
    async def retry_failed(queue: QueuePath) -> Any:
        check(queue)
        await ctx.redis_ready()
        return {"queue": queue, "retried": await ctx.manager.retry_failed(queue)}

    @router.get("/dead-letters", summary="Jobs that failed for good (records store)")
    async def dead_letters(queue: QueueQuery = None,
                           limit: Annotated[int, Query(ge=1, le=500)] = 50,
                           include_replayed: bool = False) -> Any:
        if queue is not None:
            check(queue)
        store = await ctx.store()
        letters = await store.list_dead_letters(limit, queue, include_replayed)
        return {"dead_letters": [d.to_dict() for d in letters]}

    @router.post("/dead-letters/{letter_id}/replay", summary="Enqueue a dead letter again")
    async def replay(letter_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Any:
        store = await ctx.store()
        letter = await store.get_dead_letter(letter_id)
        if letter is None:
            raise ApiError(404, f"no dead letter {letter_id}")
        if letter.replayed_at is not None:
            raise ApiError(409, f"dead letter {letter_id} was already replayed as job "
                                f"{letter.replay_job_id}")
        check(letter.queue)
        await ctx.redis_ready()
        data = letter.data if isinstance(letter.data, dict) else {"value": letter.data}
        job = await (await ctx.manager.queue(letter.queue)).add(letter.job_name, data, {})
        if not await store.mark_dead_letter_replayed(letter_id, str(job.id)):
            raise ApiError(409, f"dead letter {letter_id} was replayed concurrently; "
                                f"job {job.id} was enqueued as well", job_id=str(job.id))
        return {"dead_letter_id": letter_id, "queue": letter.queue, "job_id": str(job.id)}

    return router
