"""The campaign routes: save, send, watch, pause, resume, cancel, recipient lookups, list.

Each route is one call of ``manager.campaigns`` (``campaigns.manage.Campaigns``), so the
answers are those of Python and the CLI. Errors go through ``errors.py``: bad input
422 (bad recipient rows with ``rows``; a refused template with ``field`` and ``line``),
an unknown campaign 404, a wrong state 409 (with ``state``).

``POST …/send`` takes the recipients as JSON (``{"recipients": [...]}``, under the API's
1 MiB body cap) or as a CSV (``text/csv``) or NDJSON (``application/x-ndjson``) body,
which is streamed to a temporary file under its own cap (``NLQ_API_MAX_UPLOAD_BYTES``,
``is_upload`` tells the body-limit middleware which requests those are) and read from
there by ``rows_from_csv`` / ``rows_from_ndjson``; the file is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Scope

from ..campaigns.recipients import Row, rows_from_csv, rows_from_ndjson
from ..campaigns.status import SendResult
from .context import ApiContext
from .errors import ApiError

PREFIX = "/api/tenants/{tenant}"
UPLOAD_TYPES = {"text/csv": rows_from_csv, "application/x-ndjson": rows_from_ndjson,
                "application/ndjson": rows_from_ndjson}
_UPLOAD_PATH = re.compile(
    r"^/api/tenants/[^/]+/(campaigns/[^/]+/send|suppressions/import)/?$")
MAX_PAGE = 10_000_000
CONTROL = {
    "pause": "Pause a scheduled or sending campaign (its batches stop at their next chunk)",
    "resume": "Resume a paused campaign",
    "cancel": "Cancel a campaign: nothing more is sent (409 once completed or cancelled)"}

Tenant = Annotated[str, Path(description="tenant id")]
Campaign = Annotated[str, Path(description="campaign id")]


def is_upload(scope: Scope) -> bool:
    """Whether the request is a CSV/NDJSON upload of addresses — a send's recipients or
    a suppression import — (the larger body cap)."""
    if scope.get("method") != "POST" or not _UPLOAD_PATH.match(scope.get("path", "")):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return media_type(value.decode("latin-1")) in UPLOAD_TYPES
    return False


def media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


class SaveBody(BaseModel):
    """A campaign's content (Jinja templates, compiled and checked when saved)."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(description="subject template")
    html: str | None = Field(default=None, description="HTML body template")
    text: str | None = Field(default=None, description="plain-text body template")
    from_addr: str | None = Field(default=None, description="From (default NLQ_MAIL_FROM)")
    reply_to: str | None = None
    headers: dict[str, str] | None = Field(default=None, description="extra headers")


class SendBody(BaseModel):
    """Recipients as JSON, and the options of the send."""

    model_config = ConfigDict(extra="forbid")

    recipients: list[dict[str, Any]] = Field(description=(
        "recipient objects: email, name?, personalizations? (row N is the Nth item)"))
    send_at: datetime | None = Field(default=None, description=(
        "send at this instant (ISO 8601; naive is UTC); the campaign is scheduled"))
    partial: bool = Field(default=False, description="send the good rows despite bad ones")
    batch_size: int | None = Field(default=None, ge=1, description="recipients per batch")


_SEND_SCHEMA = SendBody.model_json_schema()
_SEND_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _SEND_SCHEMA},
    "text/csv": {"schema": {"type": "string", "description": (
        "a header row with an 'email' column; 'name'; other columns are personalisation "
        "fields; row 1 is the first line after the header")}},
    "application/x-ndjson": {"schema": {"type": "string", "description": (
        "one recipient object per line; row N is line N")}}}}}


async def upload_to_file(request: Request) -> str:
    """Stream the body to a temporary file; its path (the caller deletes it)."""
    handle = tempfile.NamedTemporaryFile(prefix="nlq-recipients-", delete=False)  # noqa: SIM115
    try:
        with handle:
            async for chunk in request.stream():
                handle.write(chunk)
    except BaseException:
        os.unlink(handle.name)
        raise
    return handle.name


def _result(result: SendResult) -> JSONResponse:
    return JSONResponse(result.to_dict(), status_code=202 if result.created else 200)


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["campaigns"])
    campaigns = ctx.manager.campaigns

    @router.get("/campaigns", summary="The tenant's campaigns, newest first, paginated")
    async def list_campaigns(tenant: Tenant,
                             page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
                             page_size: Annotated[int, Query(ge=1, le=100)] = 20) -> Any:
        await ctx.redis_ready()
        found = await campaigns.list(tenant, page, page_size)
        return {"tenant": tenant, **found.to_dict()}

    @router.put("/campaigns/{campaign}", summary="Save a draft's content (checked as at "
                "send time; 409 once it is no longer a draft)")
    async def save(tenant: Tenant, campaign: Campaign, body: SaveBody) -> Any:
        await ctx.redis_ready()
        await campaigns.save(tenant, campaign, **body.model_dump())
        return (await campaigns.status(tenant, campaign)).to_dict()

    @router.post("/campaigns/{campaign}/send", openapi_extra=_SEND_BODY,
                 summary="Send a saved draft: JSON recipients or a CSV/NDJSON upload "
                         "(202 when enqueued, 200 when it was sent before)",
                 responses={202: {"description": "enqueued"},
                            413: {"description": "body over its cap"},
                            415: {"description": "not JSON, CSV or NDJSON"},
                            422: {"description": "bad rows (with their numbers) …"}})
    async def send(request: Request, tenant: Tenant, campaign: Campaign,
                   send_at: Annotated[datetime | None, Query(
                       description="CSV/NDJSON: send at this instant")] = None,
                   partial: Annotated[bool, Query(
                       description="CSV/NDJSON: send the good rows despite bad ones")] = False,
                   batch_size: Annotated[int | None, Query(
                       ge=1, description="CSV/NDJSON: recipients per batch")] = None) -> Any:
        media = media_type(request.headers.get("content-type", "application/json"))
        reader = UPLOAD_TYPES.get(media)
        if reader is None and media != "application/json":
            raise ApiError(415, f"unsupported content type {media[:80]!r}: send JSON, "
                                "text/csv or application/x-ndjson",
                           valid_types=["application/json", *UPLOAD_TYPES])
        await ctx.redis_ready()
        if reader is None:
            try:
                body = SendBody.model_validate_json(await request.body())
            except ValidationError as exc:
                raise RequestValidationError(exc.errors(include_url=False)) from None
            rows: Iterable[Any] = body.recipients
            send_at = body.send_at or send_at
            partial = body.partial or partial
            batch_size = body.batch_size or batch_size
            return _result(await campaigns.send(tenant, campaign, rows, send_at=send_at,
                                                partial=partial, batch_size=batch_size))
        path = await upload_to_file(request)
        try:
            file_rows: Iterable[Row] = reader(path)
            return _result(await campaigns.send(tenant, campaign, file_rows,
                                                send_at=send_at, partial=partial,
                                                batch_size=batch_size))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    @router.get("/campaigns/{campaign}", summary="A campaign's state and numbers")
    async def status(tenant: Tenant, campaign: Campaign) -> Any:
        await ctx.redis_ready()
        return (await campaigns.status(tenant, campaign)).to_dict()

    def control(action: str) -> Callable[[str, str], Awaitable[Any]]:
        async def route(tenant: Tenant, campaign: Campaign) -> Any:
            await ctx.redis_ready()
            return (await getattr(campaigns, action)(tenant, campaign)).to_dict()
        return route

    for action, summary in CONTROL.items():
        router.add_api_route(f"/campaigns/{{campaign}}/{action}", control(action),
                             methods=["POST"], summary=summary, name=action)

    @router.get("/campaigns/{campaign}/recipients/{email}",
                summary="The delivery of one address in the campaign (404 if none)")
    async def recipient(tenant: Tenant, campaign: Campaign, email: str) -> Any:
        found = await campaigns.recipient(tenant, campaign, email)
        if found is None:
            raise ApiError(404, "no delivery recorded for this address in this campaign")
        return found.to_dict()

    @router.get("/recipients/{email}/campaigns",
                summary="The campaigns an address got, newest first")
    async def recipient_history(tenant: Tenant, email: str,
                                limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Any:
        found = await campaigns.recipient_history(tenant, email, limit=limit)
        return {"email": email, "campaigns": [d.to_dict() for d in found]}

    return router
