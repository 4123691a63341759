"""The store's side of bounces and complaints that arrive after sending. Mixed into
``Store`` (``Store(…, DeliveryReports)``).

A bounce address names its delivery by a reference (``records.delivery_ref``) that every
delivery row keeps in its indexed ``bounce_ref`` column: ``deliveries_by_ref`` is the one
lookup a bounce costs. ``mark_bounced`` turns a delivery the server had accepted into a
bounced one (with the report's diagnostic as its SMTP response), and ``has_event`` lets
the inbound processor record each kind of report once per message, however often the
report is delivered to us or its job is run.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import Delivery, Event
from .records import DeliveryRecord, utcnow
from .rows import delivery_record


class DeliveryReports:
    """Bounce lookups and writes (the ``Store`` provides ``_read`` and ``_write``)."""

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def deliveries_by_ref(self, ref: str, *, limit: int = 2) -> list[DeliveryRecord]:
        """The deliveries whose bounce address carries ``ref`` (normally one; two mean the
        reference is ambiguous and names neither)."""
        query = (select(Delivery.__table__).where(Delivery.bounce_ref == ref)
                 .order_by(Delivery.id).limit(limit))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [delivery_record(r) for r in rows]

    async def mark_bounced(self, tenant_id: str, campaign_id: str, email: str, *,
                           smtp_code: int | None, smtp_response: str) -> bool:
        """Record that the message to ``email`` (as the delivery row spells it) bounced
        after the server accepted it. Returns whether the status changed (``False`` when
        it was bounced already, or there is no such row)."""
        stmt = (update(Delivery).where(
            Delivery.tenant_id == tenant_id, Delivery.campaign_id == campaign_id,
            Delivery.email == email, Delivery.status != "bounced")
            .values(status="bounced", smtp_code=smtp_code,
                    smtp_response=smtp_response[:500], updated_at=utcnow()))
        async with self._write() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    async def has_event(self, tenant_id: str, campaign_id: str, recipient: str,
                        type: str) -> bool:
        """Whether the recipient has an event of ``type`` in the campaign."""
        query = select(Event.id).where(
            Event.tenant_id == tenant_id, Event.campaign_id == campaign_id,
            Event.recipient == recipient, Event.type == type).limit(1)
        async with self._read() as conn:
            return await conn.scalar(query) is not None
