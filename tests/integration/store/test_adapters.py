"""The store behind the email processor's ``CampaignSource`` and ``DeliveryRecorder``."""

from __future__ import annotations

from newsletter_queue.processors.email import Delivery
from newsletter_queue.services.render import Content
from newsletter_queue.services.store import CampaignRecord, Store
from newsletter_queue.services.store.adapters import StoreCampaignSource, StoreDeliveryRecorder


async def test_campaign_source_returns_render_content(store: Store) -> None:
    source = StoreCampaignSource(store)
    assert await source.get_content("t1", "c1") is None
    await store.upsert_campaign(CampaignRecord(
        "t1", "c1", "Hi {{ name }}", html="<p>Hi</p>", text="Hi", from_addr="a@example.com",
        reply_to="r@example.com", headers={"X-Campaign": "c1"}))
    assert await source.get_content("t1", "c1") == Content(
        subject="Hi {{ name }}", html="<p>Hi</p>", text="Hi", from_addr="a@example.com",
        reply_to="r@example.com", headers={"X-Campaign": "c1"})


async def test_delivery_recorder_writes_final_outcomes_only(store: Store) -> None:
    recorder = StoreDeliveryRecorder(store)
    await recorder.record([
        Delivery("t1", "c1", "a@example.com", "sent", 1, message_id="<m@x>", smtp_code=250,
                 smtp_response="250 OK"),
        Delivery("t1", "c1", "b@example.com", "bounced", 1, smtp_code=550,
                 smtp_response="550 unknown user"),
        Delivery("t1", "c1", "c@example.com", "deferred", 1, smtp_code=451),
    ])
    rows = {d.email: d for d in await store.list_deliveries("t1", "c1")}
    assert sorted(rows) == ["a@example.com", "b@example.com"]
    assert (rows["a@example.com"].message_id, rows["a@example.com"].smtp_code) == ("<m@x>", 250)
    assert rows["b@example.com"].smtp_response == "550 unknown user"
