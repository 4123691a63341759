"""The dashboard's REST routes: enqueue, job lists, job detail, job actions, dead letters.

Each route checks its request and calls one operation of ``QueueAdmin`` (``ctx.admin``)
or of the producer, so the answers are the same as in Python and the CLI; a state
conflict (``AdminConflictError``) is a 409 carrying its details.

``POST /api/dev/queues/{queue}/jobs`` enqueues one job through the same validation as
``QueueManager.schedule_*_job``. With ``opts.job_id`` it is idempotent: exactly one request
per id creates the job and answers 201; every other (before or at the same time)
answers 200 with ``"created": false`` and adds nothing (``enqueue.add_job``).

Job lists page through one state (newest first). ``search`` matches a job id exactly,
or a campaign / tenant id (case-insensitive substring of ``data.campaignId`` /
``data.tenantId``) among the newest ``admin.SEARCH_SCAN`` jobs of that state — a bounded
scan, so a search never walks an unbounded set; the response says when it was cut short.
"""
from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..admin import MAX_CLEAN_GRACE_MS, MAX_CLEAN_LIMIT, job_summary
from ..engine.states import JOB_STATES, CleanState
from ..errors import AdminConflictError, DeadLetterReplayedError, JobNotFoundError
from ..job_options import from_wire_names
from ..queues import QUEUE_NAMES, QueueName
from .context import ApiContext
from .errors import ApiError

# Pages beyond this would ask Redis for offsets past what its integers (and the Lua
# scripts' doubles) take; nobody pages through 200 million jobs 20 at a time.
MAX_PAGE = 10_000_000
T = TypeVar("T")


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


async def conflict_is_409(operation: Awaitable[T]) -> T:
    """Run an admin operation; a state conflict is the API's 409 with its details."""
    try:
        return await operation
    except AdminConflictError as exc:
        raise ApiError(409, str(exc), **exc.details) from None


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api/dev", tags=["dashboard"])
    admin, check = ctx.admin, ctx.manager.check_queue

    @router.post("/queues/{queue}/jobs", status_code=201,
                 summary="Enqueue one job (idempotent with opts.job_id)",
                 responses={200: {"description": "a job with this job_id already exists; "
                                                 "nothing was added"},
                            413: {"description": "body over NLQ_API_MAX_BODY_BYTES"},
                            422: {"description": "invalid job data or options"}})
    async def enqueue(queue: QueuePath, body: EnqueueBody) -> Any:
        check(queue)
        await ctx.redis_ready()
        schedule = {QueueName.EMAIL: ctx.manager.schedule_email_job,
                    QueueName.ANALYTICS: ctx.manager.schedule_analytics_job,
                    QueueName.AI: ctx.manager.schedule_ai_job}[QueueName(queue)]
        job = await schedule(body.name, body.data, from_wire_names(body.opts))
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
        found = await admin.list_jobs(queue, state, page, page_size, search)
        return {"queue": queue, "state": state, "page": page, "page_size": page_size,
                "total": found.total, "search": search, "truncated": found.truncated,
                "jobs": [job_summary(j) for j in found.jobs]}

    @router.get("/queues/{queue}/jobs/{job_id}", summary="One job with logs and stack traces")
    async def job_detail(queue: QueuePath, job_id: str) -> Any:
        check(queue)
        await ctx.redis_ready()
        job = await admin.get_job(queue, job_id)
        if job is None:
            raise JobNotFoundError(queue, job_id)
        out = job.to_dict()
        out["logs"] = await admin.get_job_logs(queue, job_id)
        out["max_attempts"] = int(job.opts.get("attempts") or 1)
        return out

    @router.post("/queues/{queue}/jobs/{job_id}/{op}", summary="retry, promote or remove a job")
    async def job_action(queue: QueuePath, job_id: str, op: JobActionPath) -> Any:
        check(queue)
        ops = {"retry": admin.retry_job, "promote": admin.promote_job}
        if op not in (*ops, "remove"):
            raise ApiError(400, f"unknown job action {op!r}", valid_actions=[*ops, "remove"])
        await ctx.redis_ready()
        if op == "remove":
            await conflict_is_409(admin.remove_job(queue, job_id))
            return {"queue": queue, "job_id": job_id, "removed": True}
        return {"queue": queue, "job_id": job_id,
                "state": await conflict_is_409(ops[op](queue, job_id))}

    @router.post("/queues/{queue}/clean", summary="Remove jobs of a state older than grace_ms")
    async def clean(queue: QueuePath, state: CleanState = "completed",
                    grace_ms: Annotated[int, Query(ge=0, le=MAX_CLEAN_GRACE_MS)] = 0,
                    limit: Annotated[int, Query(ge=0, le=MAX_CLEAN_LIMIT)] = 0) -> Any:
        check(queue)
        await ctx.redis_ready()
        removed = await admin.clean_queue(queue, grace_ms, state, limit)
        return {"queue": queue, "state": state, "removed": len(removed)}

    @router.post("/queues/{queue}/retry-failed", summary="Move every failed job back to wait")
    async def retry_failed(queue: QueuePath) -> Any:
        check(queue)
        await ctx.redis_ready()
        return {"queue": queue, "retried": await admin.retry_failed(queue)}

    @router.get("/dead-letters", summary="Jobs that failed for good (records store)")
    async def dead_letters(queue: QueueQuery = None,
                           limit: Annotated[int, Query(ge=1, le=500)] = 50,
                           include_replayed: bool = False) -> Any:
        letters = await admin.list_dead_letters(limit, queue,
                                                include_replayed=include_replayed)
        return {"dead_letters": [d.to_dict() for d in letters]}

    @router.post("/dead-letters/{letter_id}/replay", summary="Enqueue a dead letter again")
    async def replay(letter_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Any:
        await ctx.redis_ready()
        try:
            job = await conflict_is_409(admin.replay_dead_letter(letter_id))
        except DeadLetterReplayedError as exc:
            raise ApiError(409, str(exc)) from None
        return {"dead_letter_id": letter_id, "queue": job.queue, "job_id": job.id}

    return router
