"""The suppression-list routes and erasure, under ``/api/tenants/{tenant}``.

Each route is one call of ``manager.suppressions`` (``suppressions.Suppressions``):

- ``GET /suppressions`` — the list, newest first (``reason``, ``campaign``, pages);
- ``POST /suppressions`` — ``{"emails": [...], "reason": "manual"}`` adds addresses;
- ``POST /suppressions/import`` — a CSV (``text/csv``) or NDJSON body with an ``email``
  column, streamed to a temporary file under ``NLQ_API_MAX_UPLOAD_BYTES``; bad rows are
  listed with their numbers and the good ones listed;
- ``GET`` / ``DELETE /suppressions/{email}`` — one entry; take it off the list;
- ``DELETE /recipients/{email}`` — erasure: the address's deliveries and events are
  deleted, only a hashed suppression entry is kept.

Access rules and error shapes are the API's (``security``, ``errors``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from .campaigns import PREFIX, UPLOAD_TYPES, Tenant, media_type, upload_to_file
from .context import ApiContext
from .errors import ApiError

Email = Annotated[str, Path(description="email address", max_length=320)]
Reason = Literal["unsubscribed", "hard-bounce", "complaint", "manual"]
_IMPORT_BODY = {"requestBody": {"required": True, "content": {
    media: {"schema": {"type": "string", "description": "a file with an email column"}}
    for media in ("text/csv", "application/x-ndjson")}}}


class AddBody(BaseModel):
    """Addresses to list, and why."""

    model_config = ConfigDict(extra="forbid")
    emails: list[str] = Field(min_length=1, max_length=10_000)
    reason: Reason = "manual"


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["suppressions"])
    suppressions = ctx.manager.suppressions

    @router.get("/suppressions", summary="The tenant's suppression list, newest first")
    async def list_suppressions(
            tenant: Tenant, reason: Reason | None = None,
            campaign: Annotated[str | None, Query(max_length=128)] = None,
            page: Annotated[int, Query(ge=1, le=10_000_000)] = 1,
            page_size: Annotated[int, Query(ge=1, le=500)] = 50) -> Any:
        found = await suppressions.list(tenant, reason=reason, campaign_id=campaign,
                                        page=page, page_size=page_size)
        return {"tenant": tenant, **found.to_dict()}

    @router.post("/suppressions", status_code=201,
                 summary="List addresses: their campaigns never mail them again")
    async def add(tenant: Tenant, body: AddBody) -> Any:
        added = await suppressions.add(tenant, body.emails, reason=body.reason)
        return {"added": added, "already": len(set(e.lower() for e in body.emails)) - added}

    @router.post("/suppressions/import", openapi_extra=_IMPORT_BODY,
                 summary="Import a CSV/NDJSON file of addresses (an email column)",
                 responses={413: {"description": "body over its cap"},
                            415: {"description": "not CSV or NDJSON"}})
    async def import_file(request: Request, tenant: Tenant,
                          reason: Reason = "manual") -> Any:
        reader = UPLOAD_TYPES.get(media_type(request.headers.get("content-type", "")))
        if reader is None:
            raise ApiError(415, "send the addresses as text/csv or application/x-ndjson",
                           valid_types=list(UPLOAD_TYPES))
        path = await upload_to_file(request)
        try:
            result = await suppressions.import_rows(tenant, reader(path), reason=reason)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return result.to_dict()

    @router.get("/suppressions/{email}", summary="One address's entry (404 if not listed)")
    async def get(tenant: Tenant, email: Email) -> Any:
        found = await suppressions.get(tenant, email)
        if found is None:
            raise ApiError(404, "this address is not on the tenant's suppression list")
        return found.to_dict()

    @router.delete("/suppressions/{email}",
                   summary="Take an address off the list (404 if not listed)")
    async def remove(tenant: Tenant, email: Email) -> Any:
        if not await suppressions.remove(tenant, email):
            raise ApiError(404, "this address is not on the tenant's suppression list")
        return {"removed": True}

    @router.delete("/recipients/{email}",
                   summary="Erase an address: its deliveries and events are deleted, a "
                           "hashed suppression entry keeps it from being mailed")
    async def erase(tenant: Tenant, email: Email) -> Any:
        return (await suppressions.erase(tenant, email)).to_dict()

    return router
