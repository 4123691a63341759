"""The store's campaign queries for ``Campaigns``: a tenant's campaigns, one delivery,
an address's deliveries. Mixed into ``Store`` (``Store(CampaignLookups)``)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import Campaign, CampaignStatsRow, Delivery
from .records import CampaignRecord, DeliveryRecord
from .rows import campaign_record, delivery_record


class CampaignLookups:
    """Read-only campaign queries (the ``Store`` provides ``_read``)."""

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def list_campaigns(self, tenant_id: str, *, limit: int = 20, offset: int = 0
                             ) -> list[CampaignRecord]:
        """The tenant's saved campaigns, newest first."""
        query = (select(Campaign.__table__).where(Campaign.tenant_id == tenant_id)
                 .order_by(Campaign.created_at.desc(), Campaign.id.desc())
                 .offset(offset).limit(limit))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [campaign_record(r) for r in rows]

    async def count_campaigns(self, tenant_id: str) -> int:
        async with self._read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(Campaign).where(
                Campaign.tenant_id == tenant_id)) or 0)

    async def get_delivery(self, tenant_id: str, campaign_id: str, email: str
                           ) -> DeliveryRecord | None:
        """One address's delivery in one campaign (the address compared case-blind).

        Both sides are lowered by the database: SQLite's ``lower()`` (and PostgreSQL's in
        a ``C`` locale) folds ASCII letters only, so against Python's ``str.lower()`` an
        address with a non-ASCII capital ("JÜRGEN@…") would never be found."""
        query = select(Delivery.__table__).where(
            Delivery.tenant_id == tenant_id, Delivery.campaign_id == campaign_id,
            func.lower(Delivery.email) == func.lower(email)).limit(1)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else delivery_record(row)

    async def deliveries_to(self, tenant_id: str, email: str, *, limit: int = 100
                            ) -> list[DeliveryRecord]:
        """Every delivery to one address of the tenant, newest first."""
        query = (select(Delivery.__table__).where(
            Delivery.tenant_id == tenant_id, func.lower(Delivery.email) == func.lower(email))
            .order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [delivery_record(r) for r in rows]

    async def has_campaign_results(self, tenant_id: str, campaign_id: str) -> bool:
        """Whether the campaign has a stats row or any delivery (it was sent)."""
        async with self._read() as conn:
            for model in (CampaignStatsRow, Delivery):
                found = await conn.scalar(select(model.id).where(
                    model.tenant_id == tenant_id, model.campaign_id == campaign_id).limit(1))
                if found is not None:
                    return True
        return False

