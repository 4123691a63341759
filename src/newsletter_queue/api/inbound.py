"""``POST /api/inbound``: where the bounce domain's mail comes in.

The MTA that receives mail for ``NLQ_BOUNCE_DOMAIN`` pipes each message here — the raw
message as the body (``Content-Type: message/rfc822``), the envelope recipient (the
bounce address) as ``?rcpt=`` when it can say it — and the route enqueues one
``inbound-message`` analytics job (``processors.inbound``) and answers ``202`` with the
job's id. Nothing is parsed here: a message the job cannot read or verify completes it
with the reason, and records nothing.

The route keeps the API's access rules (``security``): from beyond loopback, or with
``NLQ_API_TOKEN`` set, the pipe sends ``Authorization: Bearer <token>``. A body over
``jobs.INBOUND_MAX_BYTES`` is cut to it (the job says ``truncated``): the report parts
come first in a DSN or an ARF report, and what is lost is the end of the returned copy.
Bodies over ``NLQ_API_MAX_BODY_BYTES`` are a 413 as on every route. The same message
sent twice while its job is kept is one job (``created: false``), so an MTA that retries
a pipe that timed out does not count a bounce twice.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ..jobs import INBOUND_MAX_BYTES
from .context import ApiContext
from .errors import ApiError

_BODY = {"requestBody": {"required": True, "content": {
    media: {"schema": {"type": "string", "description": "the raw message"}}
    for media in ("message/rfc822", "application/octet-stream", "text/plain")}}}


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["inbound"])

    @router.post("/inbound", status_code=202, openapi_extra=_BODY,
                 summary="A message to the bounce domain (a DSN or an ARF report): queued "
                         "for the inbound-message job",
                 responses={202: {"description": "queued (or already queued: created "
                                                 "false); the job's id"},
                            400: {"description": "empty body"},
                            413: {"description": "body over NLQ_API_MAX_BODY_BYTES"}})
    async def inbound(request: Request,
                      rcpt: Annotated[str | None, Query(
                          max_length=998, description="the envelope recipient (the bounce "
                                                      "address), when the MTA gives it")
                      ] = None) -> Any:
        raw = bytearray()
        async for chunk in request.stream():
            if len(raw) <= INBOUND_MAX_BYTES:
                raw += chunk  # past the cap the rest is read and dropped
        if not raw.strip():
            raise ApiError(400, "the body is empty: send the raw message")
        await ctx.redis_ready()
        job = await ctx.manager.schedule_inbound_message(bytes(raw), rcpt=rcpt or None)
        return JSONResponse({"id": job.id, "queue": job.queue, "name": job.name,
                             "created": job.created}, status_code=202)

    return router
