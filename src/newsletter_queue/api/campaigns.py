"""Campaign routes the dashboard's Campaigns panel reads and steers (a thin stand-in).

Each route calls one method of ``manager.campaigns``: list, status, pause, resume,
cancel and one recipient's delivery. Unknown campaign → 404; wrong state → 409.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..campaigns import CampaignSummary
from ..errors import CampaignNotFoundError
from .context import ApiContext
from .errors import ApiError
from .jobs import MAX_PAGE, conflict_is_409


def summary_dict(item: CampaignSummary) -> dict[str, Any]:
    return {"campaign_id": item.campaign_id, "subject": item.subject,
            "created_at": item.created_at.isoformat() if item.created_at else None,
            "status": item.status.to_dict()}


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api/tenants/{tenant}/campaigns", tags=["campaigns"])
    campaigns = ctx.manager.campaigns

    @router.get("", summary="A tenant's campaigns, newest first")
    async def list_campaigns(tenant: str, page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
                             page_size: Annotated[int, Query(ge=1, le=100)] = 20) -> Any:
        found = await campaigns.list(tenant, page, page_size)
        return {"tenant": tenant, "page": found.page, "page_size": found.page_size,
                "total": found.total, "campaigns": [summary_dict(c) for c in found.items]}

    @router.get("/{campaign}", summary="A campaign's state and numbers")
    async def status(tenant: str, campaign: str) -> Any:
        try:
            return (await campaigns.status(tenant, campaign)).to_dict()
        except CampaignNotFoundError as exc:
            raise ApiError(404, str(exc)) from None

    def control(action: str) -> Any:
        async def run(tenant: str, campaign: str) -> Any:
            method = getattr(campaigns, action)
            try:
                return (await conflict_is_409(method(tenant, campaign))).to_dict()
            except CampaignNotFoundError as exc:
                raise ApiError(404, str(exc)) from None
        return run

    for action in ("pause", "resume", "cancel"):
        router.add_api_route(f"/{{campaign}}/{action}", control(action), methods=["POST"],
                             summary=f"{action.capitalize()} a campaign",
                             name=f"{action}_campaign")

    @router.get("/{campaign}/recipients/{email}", summary="One recipient's delivery")
    async def recipient(tenant: str, campaign: str, email: str) -> Any:
        found = await campaigns.recipient(tenant, campaign, email)
        if found is None:
            raise ApiError(404, "no delivery recorded for this address in this campaign")
        return found.to_dict()

    return router
