"""The store's side of bounces, on SQLite and PostgreSQL: every delivery row keeps the
reference its bounce address carries and is found by it (two rows with one reference
name neither); a delivery turns bounced once; events are found per kind and recipient."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from newsletter_queue.services.store import DeliveryRecord, EventRecord, Store
from newsletter_queue.services.store.models import Delivery
from newsletter_queue.services.store.records import delivery_ref


async def test_a_delivery_is_found_by_its_bounce_reference(store: Store) -> None:
    await store.record_deliveries([
        DeliveryRecord("t1", "june", "Ann@Example.com", "sent", message_id="<m1>"),
        DeliveryRecord("t1", "june", "bob@example.com", "sent"),
        DeliveryRecord("t2", "june", "ann@example.com", "suppressed"),
    ])
    found = await store.deliveries_by_ref(delivery_ref("t1", "june", "ann@example.com"))
    assert [(d.tenant_id, d.email, d.status) for d in found] == [
        ("t1", "Ann@Example.com", "sent")]  # the reference is case-blind
    other = await store.deliveries_by_ref(delivery_ref("t2", "june", "ann@example.com"))
    assert [d.tenant_id for d in other] == ["t2"]  # per tenant
    assert await store.deliveries_by_ref(delivery_ref("t1", "july", "ann@example.com")) == []
    # Recording the outcome again keeps the reference (an upsert sets it too).
    await store.record_deliveries([DeliveryRecord("t1", "june", "Ann@Example.com", "sent")])
    assert len(await store.deliveries_by_ref(delivery_ref("t1", "june", "ann@example.com"))) == 1


async def test_two_rows_with_one_reference_are_both_returned(store: Store) -> None:
    await store.record_deliveries([DeliveryRecord("t1", "june", "ann@example.com", "sent"),
                                   DeliveryRecord("t1", "june", "bob@example.com", "sent")])
    ref = delivery_ref("t1", "june", "ann@example.com")
    async with store._write() as conn:  # a collision, made by hand
        await conn.execute(update(Delivery).where(Delivery.email == "bob@example.com")
                           .values(bounce_ref=ref))
    assert len(await store.deliveries_by_ref(ref)) == 2


async def test_a_delivery_turns_bounced_once(store: Store) -> None:
    await store.record_deliveries([DeliveryRecord("t1", "june", "ann@example.com", "sent",
                                                  smtp_code=250, smtp_response="250 ok")])
    assert await store.mark_bounced("t1", "june", "ann@example.com", smtp_code=550,
                                    smtp_response="550 5.1.1 user unknown")
    assert not await store.mark_bounced("t1", "june", "ann@example.com", smtp_code=550,
                                        smtp_response="550 again")
    assert not await store.mark_bounced("t1", "june", "nobody@example.com", smtp_code=None,
                                        smtp_response="x")
    delivery = await store.get_delivery("t1", "june", "ann@example.com")
    assert delivery is not None
    assert (delivery.status, delivery.smtp_code, delivery.smtp_response) == (
        "bounced", 550, "550 5.1.1 user unknown")
    assert delivery.updated_at is not None
    assert delivery.created_at is not None
    assert delivery.updated_at >= delivery.created_at


async def test_events_are_found_per_kind_and_recipient(store: Store) -> None:
    now = datetime.now(UTC)
    await store.record_events([EventRecord("t1", "june", "ann@example.com", "deferred", now)])
    assert await store.has_event("t1", "june", "ann@example.com", "deferred")
    assert not await store.has_event("t1", "june", "ann@example.com", "bounced")
    assert not await store.has_event("t1", "june", "bob@example.com", "deferred")
    assert not await store.has_event("t2", "june", "ann@example.com", "deferred")
