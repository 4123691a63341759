"""The dashboard's Campaigns panel in headless Chromium, against real workers, the real
SMTP sink, Redis and the SQLite store.

A campaign is caught mid-send by holding the sink's answer to DATA (``HeldSink``, as in
the managed-campaign tests); the page's numbers are compared with
``manager.campaigns.status()`` and the store, and pause / resume / cancel are pressed on
the page (accepting its confirmation) and checked in Redis and at the sink.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from newsletter_queue.campaigns import CampaignStatus
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from tests.browser.campaign_fixtures import browser_timezone, page, server, services, sink
from tests.browser.test_dashboard import CHROMIUM
from tests.integration.email.test_campaigns_managed import (
    ALL,
    HeldSink,
    _all_parked,
    _finished,
    _start_campaign,
)
from tests.support.helpers import wait_for

__all__ = ["browser_timezone", "page", "server", "services", "sink"]  # the fixtures

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Chromium is not installed at /usr/bin/chromium")
NUMBERS = ("total", "sent", "bounced", "failed", "pending")


async def _page_numbers(page: Any, campaign: str) -> dict[str, str]:
    return {k: (await page.get_by_test_id(f"campaign-{k}-{campaign}").text_content() or "")
            for k in NUMBERS}


async def _page_matches_redis_and_store(page: Any, manager: QueueManager,
                                        campaign: str) -> CampaignStatus:
    """Wait until the page shows what ``status()`` says and the store holds."""
    store = await manager.store()

    async def probe() -> CampaignStatus | None:
        status = await manager.campaigns.status("t1", campaign)
        shown = await _page_numbers(page, campaign)
        stored = await store.count_deliveries("t1", campaign, "sent")
        badge = await page.get_by_test_id(f"campaign-state-{campaign}").text_content()
        wanted = {k: str(getattr(status, k)) for k in NUMBERS}
        return status if shown == wanted and stored == status.sent \
            and badge == status.state else None

    return await wait_for(probe, timeout=60, message="the page to show Redis's numbers")


async def _press(page: Any, test_id: str, question: str) -> None:
    from playwright.async_api import expect

    await page.get_by_test_id(test_id).click()
    confirm = page.locator("#confirm")
    await expect(confirm).to_be_visible()
    await expect(confirm).to_contain_text(question)
    await confirm.get_by_role("button", name="Confirm").click()


@pytest.mark.timeout(300)
async def test_the_panel_shows_a_campaign_mid_send_and_pauses_and_resumes_it(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink, server: str,
        page: Any) -> None:
    from playwright.async_api import expect

    held = HeldSink(sink, after=30)
    await _start_campaign(manager)
    await asyncio.wait_for(held.held.wait(), 60)
    await page.goto(f"{server}/dashboard?tenant=t1")

    # Mid-send: the page shows what Redis and the store hold.
    mid = await _page_matches_redis_and_store(page, manager, "june")
    assert mid.state == "sending"
    assert mid.total == len(ALL)
    assert mid.pending > 0
    await expect(page.get_by_test_id("campaign-rate-june")).to_contain_text("batches")

    # Cancelling the confirmation changes nothing.
    await page.get_by_test_id("campaign-pause-june").click()
    await page.locator("#confirm").get_by_role("button", name="Cancel").click()
    assert (await manager.campaigns.status("t1", "june")).state == "sending"

    # Pause from the page: paused in Redis; after the messages in flight, nothing more.
    await _press(page, "campaign-pause-june", "Pause campaign june of t1?")
    await wait_for(lambda: _state_is(manager, "june", "paused"), timeout=30,
                   message="june paused")
    held.release()
    await wait_for(lambda: _all_parked(manager), timeout=60, message="batches parked")
    at_pause = sum(sink.handler.counts.values())
    assert 30 <= at_pause < len(ALL)
    paused = await _page_matches_redis_and_store(page, manager, "june")
    assert (paused.state, paused.sent) == ("paused", at_pause)
    await expect(page.get_by_test_id("campaign-resume-june")).to_be_visible()
    await expect(page.get_by_test_id("campaign-pause-june")).to_have_count(0)
    assert sum(sink.handler.counts.values()) == at_pause  # still nothing more

    # Resume from the page: every remaining recipient exactly once.
    await _press(page, "campaign-resume-june", "Resume campaign june of t1?")
    await asyncio.wait_for(sink.handler.wait_for_total(len(ALL)), 120)
    done = await _finished(manager)
    assert sorted(sink.handler.counts) == sorted(ALL)
    assert set(sink.handler.counts.values()) == {1}
    final = await _page_matches_redis_and_store(page, manager, "june")
    assert (final.state, final.sent, final.pending) == ("completed", len(ALL), 0)

    # A second campaign to one of june's readers: the drawer's history shows both.
    await manager.campaigns.save("t1", "july", subject="July", text="Hi")
    await manager.campaigns.send("t1", "july", [{"email": ALL[7]}])
    await _finished(manager, "july")

    # The drawer: numbers, stats, and one delivered address's SMTP answer.
    await page.get_by_role("button", name="Open campaign june").click()
    drawer = page.get_by_role("dialog", name="Campaign june (t1)")
    await expect(drawer).to_be_visible()
    await expect(drawer.get_by_test_id("drawer-sent")).to_have_text(str(done.sent))
    await expect(drawer.get_by_test_id("campaign-stats")).to_contain_text("Opens")
    delivery = await manager.campaigns.recipient("t1", "june", ALL[7])
    assert delivery is not None
    assert delivery.smtp_response
    await drawer.get_by_role("searchbox", name="Recipient").fill(ALL[7])
    await drawer.get_by_role("button", name="Look up").click()
    result = drawer.get_by_test_id("recipient-result")
    await expect(result).to_contain_text(delivery.smtp_response)
    await expect(result).to_contain_text(str(delivery.smtp_code))
    await expect(result).to_contain_text(delivery.message_id or "")
    history = result.get_by_test_id("recipient-history")
    await expect(history.locator("tbody tr td:first-child")).to_have_text(["july", "june"])
    await expect(history.locator("tbody tr td:nth-child(2)")).to_have_text(["sent", "sent"])
    await drawer.get_by_role("searchbox", name="Recipient").fill("nobody@example.com")
    await drawer.get_by_role("button", name="Look up").click()
    await expect(result).to_contain_text("No delivery recorded for nobody@example.com")


@pytest.mark.timeout(300)
async def test_cancel_from_the_panel_sends_nothing_more_and_text_stays_text(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink, server: str,
        page: Any) -> None:
    from playwright.async_api import expect

    hostile = '<img src=x onerror="window.__pwned=1">{{ name }}'
    await manager.campaigns.save("t1", "draft-x", subject=hostile, text="Hi")
    held = HeldSink(sink, after=30)
    await _start_campaign(manager)
    await asyncio.wait_for(held.held.wait(), 60)
    await page.goto(f"{server}/dashboard?tenant=t1")
    await _page_matches_redis_and_store(page, manager, "june")

    # A subject is shown as text, never run as HTML; a draft has no controls.
    draft = page.locator('[data-campaign="draft-x"]')
    await expect(draft).to_contain_text(hostile)
    assert await page.evaluate("window.__pwned") is None
    await expect(page.get_by_test_id("campaign-state-draft-x")).to_have_text("draft")
    await expect(draft.get_by_role("button", name="Cancel")).to_have_count(0)

    await _press(page, "campaign-cancel-june", "Cancel campaign june of t1?")
    await wait_for(lambda: _state_is(manager, "june", "cancelled"), timeout=30,
                   message="june cancelled")
    held.release()
    done = await _finished(manager)
    delivered = sum(sink.handler.counts.values())
    assert 30 <= delivered < len(ALL)
    assert set(sink.handler.counts.values()) == {1}
    shown = await _page_matches_redis_and_store(page, manager, "june")
    assert (shown.state, shown.sent) == ("cancelled", delivered) == (done.state, done.sent)
    await expect(page.get_by_test_id("campaign-resume-june")).to_have_count(0)
    assert sum(sink.handler.counts.values()) == delivered  # nothing after the cancel


async def _state_is(manager: QueueManager, campaign: str, state: str) -> bool:
    return (await manager.campaigns.status("t1", campaign)).state == state
