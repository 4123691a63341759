"""JSON errors of the API: every failure is ``{"error": "...", ...}``, never a traceback.

Mapping: unknown action or queue → 400 (listing the valid ones); a body or query that
fails validation → 422 (bad recipient rows: 422 with ``rows``, each ``{"row", "field",
"message"}``; a campaign template or header refused: 422 with ``field`` and ``line``);
unknown job, dead letter or campaign → 404; a state conflict (retrying a job that is not
failed, pausing a campaign that is not sending …) → 409 with its details (``state`` …);
a body over its size cap → 413; Redis unreachable → 503; this process overloaded (a
command waited longer than ``redis_command_timeout_s`` for one of its
``redis_max_connections`` connections) → 503 with ``Retry-After`` and
``"overloaded": true`` — never reported as an outage; anything unexpected → 500 with an
opaque incident id (the traceback goes to the log, not to the client).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ..campaigns.recipients import RecipientsError
from ..connection import PoolExhaustedError
from ..errors import (
    AdminConflictError,
    CampaignNotFoundError,
    ConfigurationError,
    JobNotFoundError,
    JobValidationError,
    NewsletterQueueError,
    OverloadedError,
    QueueNotFoundError,
    RedisServerError,
)
from ..services.render import ContentError

log = logging.getLogger(__name__)


class ApiError(NewsletterQueueError):
    """An error answer: ``status`` and ``message`` plus extra JSON fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def overloaded_response(exc: Exception) -> JSONResponse:
    """503 *overloaded*: retry soon; Redis itself is not reported down."""
    if not isinstance(exc, OverloadedError):
        exc = OverloadedError(str(exc))
    return error_response(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)},
                          overloaded=True, retry_after_s=exc.retry_after_s)


def too_large(limit: int) -> JSONResponse:
    return error_response(413, f"request body too large: the limit is {limit} bytes "
                               "(NLQ_API_MAX_BODY_BYTES)", limit=limit)


def upload_too_large(limit: int) -> JSONResponse:
    return error_response(413, f"upload too large: the limit is {limit} bytes "
                               "(NLQ_API_MAX_UPLOAD_BYTES)", limit=limit)


def _clean_validation(errors: list[Any]) -> list[dict[str, Any]]:
    """pydantic/FastAPI error details without the submitted input (never echo input)."""
    out = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ())]
        out.append({"field": ".".join(loc), "message": str(e.get("msg", ""))})
    return out


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, **exc.extra)

    async def queue_not_found(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, QueueNotFoundError)
        return error_response(400, f"unknown queue {exc.queue!r}",
                              valid_queues=list(exc.known))

    async def job_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, JobValidationError)
        return error_response(422, str(exc), errors=[
            {"field": e.path, "message": e.message} for e in exc.errors])

    async def bad_recipients(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RecipientsError)
        return error_response(422, str(exc), errors=[
            {"field": e.path, "message": e.message} for e in exc.errors],
            rows=[{"row": r.row, "field": r.field, "message": r.message} for r in exc.rows],
            truncated=exc.truncated)

    async def bad_content(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ContentError)
        return error_response(422, str(exc), field=exc.field, line=exc.line)

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AdminConflictError)
        return error_response(409, str(exc), **exc.details)

    async def request_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "invalid request", errors=_clean_validation(
            list(exc.errors())))

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return error_response(404, str(exc))

    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        message = str(exc) if isinstance(exc, RedisServerError) else "Redis is unavailable"
        return error_response(503, message)

    async def overloaded(request: Request, exc: Exception) -> JSONResponse:
        return overloaded_response(exc)

    async def client_gone(request: Request, exc: Exception) -> JSONResponse:
        # The client went away mid-body (or the body cap cut it off, limits.py): nobody
        # reads this answer, and it is not a server error worth a traceback.
        return error_response(400, "the request body was not received in full")

    async def forbidden(request: Request, exc: Exception) -> JSONResponse:
        return error_response(403, str(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(QueueNotFoundError, queue_not_found)
    app.add_exception_handler(JobValidationError, job_validation)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(RecipientsError, bad_recipients)
    app.add_exception_handler(ContentError, bad_content)
    app.add_exception_handler(JobNotFoundError, not_found)
    app.add_exception_handler(CampaignNotFoundError, not_found)
    app.add_exception_handler(AdminConflictError, conflict)
    app.add_exception_handler(RedisServerError, redis_down)
    app.add_exception_handler(RedisConnectionError, redis_down)
    app.add_exception_handler(RedisTimeoutError, redis_down)
    # Starlette picks the handler of the most specific class: a full pool is a redis-py
    # ConnectionError too, but it means "overloaded", not "Redis down".
    app.add_exception_handler(PoolExhaustedError, overloaded)
    app.add_exception_handler(OverloadedError, overloaded)
    app.add_exception_handler(ConfigurationError, forbidden)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_gone)

    @app.middleware("http")
    async def catch_all(request: Request, call_next: Any) -> Any:
        """Last resort: log the traceback, answer an opaque 500."""
        try:
            return await call_next(request)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("unhandled error in %s %s (incident %s)", request.method,
                          request.url.path, incident)
            return error_response(500, "internal error", incident=incident)
