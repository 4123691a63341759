"""The store in the shapes the email processor asks for.

``processors.email.EmailProcessor`` takes a ``CampaignSource`` (``get_content``) and a
``DeliveryRecorder`` (``record``) — small protocols, so the processor does not depend on
the store. These two classes are the store's side of that contract; the worker wiring
passes them in::

    EmailProcessor(settings, redis, pool, StoreCampaignSource(store),
                   deliveries=StoreDeliveryRecorder(store), ...)

Deliveries are taken by their attributes (the processor's ``Delivery`` has exactly the
fields of ``DeliveryRecord``), so this module does not import the processors package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, cast

from ..render import Content
from .records import DELIVERY_STATUSES, DeliveryRecord, DeliveryStatus
from .store import Store


class DeliveryOutcome(Protocol):
    """One recipient's outcome as the email processor reports it."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def campaign_id(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def smtp_code(self) -> int | None: ...
    @property
    def smtp_response(self) -> str | None: ...


class StoreCampaignSource:
    """Stored campaign content for the email processor."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get_content(self, tenant_id: str, campaign_id: str) -> Content | None:
        campaign = await self.store.get_campaign(tenant_id, campaign_id)
        if campaign is None:
            return None
        return Content(subject=campaign.subject, html=campaign.html, text=campaign.text,
                       from_addr=campaign.from_addr, reply_to=campaign.reply_to,
                       headers=dict(campaign.headers), track_opens=campaign.track_opens,
                       track_clicks=campaign.track_clicks)


class StoreDeliveryRecorder:
    """Writes the email processor's delivery outcomes (one transaction per chunk).

    Outcomes that are not final (``deferred``: the job will retry that recipient) are
    not recorded.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, deliveries: Sequence[DeliveryOutcome], *,
                     only_missing: bool = False) -> None:
        await self.store.record_deliveries([
            DeliveryRecord(
                tenant_id=d.tenant_id, campaign_id=d.campaign_id, email=d.email,
                status=cast(DeliveryStatus, d.status), attempt=d.attempt,
                message_id=d.message_id, smtp_code=d.smtp_code,
                smtp_response=d.smtp_response,
            )
            for d in deliveries if d.status in DELIVERY_STATUSES
        ], only_missing=only_missing)
