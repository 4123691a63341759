"""``/api/dev/queue``: the development API of the original design, action by action.

GET ``?action=dashboard|inspect|stats|health|metrics|errors|report`` and POST
``?action=test|clear|pause|resume|performance`` — exactly the original design's actions, with the
same ``queue`` and ``limit`` parameters; ``performance`` takes ``{"jobCount": N}``.
An unknown action or queue is a 400 that lists the valid ones.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from ..engine.states import JOB_STATES, OVERVIEW_STATES
from ..queues import QUEUE_NAMES
from .context import ApiContext
from .errors import ApiError, _clean_validation

GET_ACTIONS = ("dashboard", "inspect", "stats", "health", "metrics", "errors", "report")
POST_ACTIONS = ("test", "clear", "pause", "resume", "performance")
MAX_API_PERF_JOBS = 10_000
# Checked by the routes (400 listing the valid values); the enum is for the schema.
QueueOrAll = Annotated[str | None, Query(description="email, analytics or ai ('all' for "
                                         "clear)", json_schema_extra={
                                             "enum": [*QUEUE_NAMES, "all"]})]


class PerformanceBody(BaseModel):
    """``{"jobCount": N}`` (``job_count`` accepted too) and an optional queue."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    job_count: int = Field(default=100, ge=1, le=MAX_API_PERF_JOBS,
                           validation_alias=AliasChoices("jobCount", "job_count"))
    queue: str = "analytics"


def _action(action: str | None, valid: tuple[str, ...], other: tuple[str, ...],
            method: str) -> str:
    if action in valid:
        assert action is not None
        return action
    hint = (f"; {action!r} is a {'POST' if method == 'GET' else 'GET'} action"
            if action in other else "")
    raise ApiError(400, f"unknown {method} action {action!r}{hint}",
                   valid_actions=list(valid))


def _queue(ctx: ApiContext, queue: str | None, *, required: bool,
           allow_all: bool = False) -> str | None:
    valid = list(ctx.settings.queues) + (["all"] if allow_all else [])
    if queue is None:
        if required:
            raise ApiError(400, "this action needs a queue parameter", valid_queues=valid)
        return None
    if queue not in valid:
        raise ApiError(400, f"unknown queue {queue!r}", valid_queues=valid)
    return queue


async def dashboard_data(ctx: ApiContext) -> dict[str, Any]:
    """Everything the dashboard's overview shows, in one response."""
    report = await ctx.monitor.generate_report(errors=20)
    data = report.to_dict()
    if report.redis.ok:
        data["breakers"] = await ctx.admin.breaker_states()
        data["mail_count"] = (await ctx.admin.captured_mail(0))[1]
        data["emails"] = await ctx.admin.email_counts()
    data["queue_names"] = list(ctx.settings.queues)
    # The dashboard draws its cards and state filter from these (one list, the server's).
    data["job_states"], data["overview_states"] = list(JOB_STATES), list(OVERVIEW_STATES)
    data["dev_mode"] = ctx.settings.dev_mode
    data["token_required_for_post"] = ctx.settings.api_token is not None
    return data


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api/dev", tags=["dev"])

    @router.get("/queue", summary="Dev API: read actions")
    async def get_queue(
        action: Annotated[str | None, Query(description=", ".join(GET_ACTIONS),
                                            json_schema_extra={"enum": list(GET_ACTIONS)})
                          ] = None,
        queue: QueueOrAll = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        format: Annotated[str, Query(pattern="^(json|md)$")] = "json",
    ) -> Any:
        act = _action(action, GET_ACTIONS, POST_ACTIONS, "GET")
        name = _queue(ctx, queue, required=act == "inspect")
        await ctx.redis_ready()
        if act == "dashboard":
            return await dashboard_data(ctx)
        if act == "inspect":
            assert name is not None
            return await ctx.devtools.inspect(name)
        if act == "stats":
            if name:
                return (await ctx.admin.get_queue_stats(name)).to_dict()
            return {q: s.to_dict() for q, s in (await ctx.admin.get_all_queue_stats()).items()}
        if act == "metrics":
            names = [name] if name else list(ctx.settings.queues)
            metrics = {q: (await ctx.monitor.get_queue_metrics(q)).to_dict() for q in names}
            return metrics[name] if name else metrics
        if act == "errors":
            errors = await ctx.monitor.get_recent_errors(limit, name)
            return {"errors": [e.to_dict() for e in errors], "queue": name, "limit": limit}
        report = await ctx.monitor.generate_report()
        if act == "health":
            if name:
                return {"redis": report.redis.to_dict(), **report.health[name].to_dict()}
            return {"status": report.status, "redis": report.redis.to_dict(),
                    "queues": {q: h.to_dict() for q, h in report.health.items()}}
        if format == "md":
            return PlainTextResponse(report.to_markdown(), media_type="text/markdown")
        return report.to_dict()

    @router.post("/queue", summary="Dev API: write actions")
    async def post_queue(
        request: Request,
        action: Annotated[str | None, Query(description=", ".join(POST_ACTIONS),
                                            json_schema_extra={"enum": list(POST_ACTIONS)})
                          ] = None,
        queue: QueueOrAll = None,
    ) -> Any:
        act = _action(action, POST_ACTIONS, GET_ACTIONS, "POST")
        body = await request.body()
        perf: PerformanceBody | None = None
        if act == "performance":
            try:
                raw = json.loads(body) if body.strip() else {}
                if queue is not None and isinstance(raw, dict):
                    raw.setdefault("queue", queue)
                perf = PerformanceBody.model_validate(raw)
            except RecursionError:
                raise ApiError(400, "the body is nested too deeply to parse") from None
            except ValueError as exc:
                errors = (_clean_validation(list(exc.errors()))
                          if isinstance(exc, ValidationError) else
                          [{"field": "body", "message": "not valid JSON"}])
                raise ApiError(422, "invalid body for performance: expected "
                                    '{"jobCount": 1..10000}', errors=errors) from None
            _queue(ctx, perf.queue, required=True)
        name = _queue(ctx, queue, required=act in ("clear", "pause", "resume"),
                      allow_all=act == "clear")
        await ctx.redis_ready()
        if act == "test":
            return {"created": await ctx.devtools.create_test_jobs()}
        if act == "clear":
            if not ctx.settings.dev_mode:
                raise ApiError(403, "clear is only available in dev mode (NLQ_DEV_MODE=1)")
            assert name is not None
            return {"cleared": await ctx.devtools.clear(name)}
        if act in ("pause", "resume"):
            assert name is not None
            await (ctx.admin.pause_queue if act == "pause" else ctx.admin.resume_queue)(name)
            return {"queue": name, "paused": await ctx.admin.is_paused(name)}
        assert perf is not None
        # One at a time: each run fills a queue and holds its request up to 30 s.
        if ctx.performance_running.locked():
            raise ApiError(409, "a performance test is already running; try again when it "
                                "has finished")
        async with ctx.performance_running:
            result = await ctx.devtools.performance_test(perf.job_count, queue=perf.queue,
                                                         drain_timeout_s=30)
        return result.to_dict()

    @router.get("/workers", summary="Workers connected, by queue")
    async def workers() -> Any:
        await ctx.redis_ready()
        found = await ctx.monitor.get_workers()
        return {q: [w.to_dict() for w in ws] for q, ws in found.items()}

    @router.get("/mail", summary="Mail captured by the dev SMTP sink")
    async def mail(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> Any:
        await ctx.redis_ready()
        messages, total = await ctx.admin.captured_mail(limit)
        return {"messages": messages, "total": total}

    return router
