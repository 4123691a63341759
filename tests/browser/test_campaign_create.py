"""The Campaigns panel's "New campaign" form and "Send…" dialog in headless Chromium,
against real workers, the real SMTP sink, Redis and the SQLite store.

A newcomer's path, on the page only: save a draft (the store holds what was typed), have
a broken template and a bad id refused with the field and line the API names (nothing
new stored), upload a CSV with bad rows (refused with their numbers, no email job in
Redis), send its good rows anyway (each good address reaches the sink exactly once and
the page's numbers reach *completed*), and schedule an NDJSON send at a local time (the
campaign's ``send_at`` is that instant in UTC). Hostile subjects, ids and rows stay text.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from newsletter_queue.errors import CampaignNotFoundError
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from tests.browser.campaign_fixtures import page, server, services, sink
from tests.browser.test_dashboard import CHROMIUM
from tests.integration.email.test_campaigns_managed import _finished

__all__ = ["page", "server", "services", "sink"]  # the fixtures

pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Chromium is not installed at /usr/bin/chromium"),
              pytest.mark.timeout(300)]
# A zone with a half-hour offset: a send-at read as UTC, or off by a whole hour, shows.
ZONE = "America/St_Johns"


@pytest.fixture
def browser_timezone() -> str:
    """This module's pages run half an hour off UTC-whole hours: a send-at typed in local
    time must reach the API as that instant in UTC."""
    return ZONE
HOSTILE = '<img src=x onerror="window.__pwned=1">'
CONTENT = {"subject": f"{HOSTILE}Hi {{{{ name }}}}", "from_addr": "News <news@example.com>",
           "reply_to": "desk@example.com", "html": "<p>Hello {{ name }}</p>",
           "text": "Hello {{ name }} in {{ personalizations.city }}"}
FIELDS = {"subject": "Subject", "from_addr": "From", "reply_to": "Reply-to",
          "html": "HTML body", "text": "Text body"}
# Rows 3 and 5 are bad; row 6 repeats row 1's address in other letters.
CSV = ("email,name,city\n"
       "ann@example.com,Ann,Oslo\n"
       "bob@example.com,Bob,Rome\n"
       "not-an-address,Bad,Oslo\n"
       "cid@example.com,Cid,Lima\n"
       '"<img src=x onerror=window.__pwned=3>",X,Y\n'
       "ANN@Example.com,Ann again,Oslo\n"
       "dee@example.com,Dee,Kyiv\n")
GOOD = ["ann@example.com", "bob@example.com", "cid@example.com", "dee@example.com"]


async def _fill_and_save(page: Any, campaign: str, **content: str) -> Any:
    """Open the form if needed, type ``campaign`` and ``content``, press Save draft and
    wait for the API's answer to the PUT; returns the form's result region."""
    form = page.locator("#campaign-form")
    if not await form.is_visible():
        await page.get_by_text("New campaign", exact=True).click()
    await form.get_by_label("Campaign id").fill(campaign)
    for key, label in FIELDS.items():
        if key in content:
            await form.get_by_label(label).fill(content[key])
    async with page.expect_response(lambda r: r.request.method == "PUT"):
        await form.get_by_role("button", name="Save draft").click()
    return page.get_by_test_id("campaign-form-result")


async def _no_email_jobs(manager: QueueManager) -> None:
    stats = await manager.get_queue_stats("email")
    assert (stats.pending, stats.completed, stats.failed) == (0, 0, 0)


async def test_the_form_saves_a_draft_and_refuses_a_bad_template_naming_field_and_line(
        manager: QueueManager, server: str, page: Any) -> None:
    from playwright.async_api import expect

    await page.goto(f"{server}/dashboard?tenant=t1")
    await page.get_by_text("New campaign", exact=True).click()
    form = page.locator("#campaign-form")
    await expect(form.get_by_label("Tenant")).to_have_value("t1")  # the panel's tenant

    result = await _fill_and_save(page, "june", **CONTENT)
    await expect(result).to_contain_text("Saved campaign june of tenant t1 as a draft.")
    await expect(page.get_by_test_id("campaign-state-june")).to_have_text("draft")
    card = page.locator('[data-campaign="june"]')
    await expect(card).to_contain_text(CONTENT["subject"])  # text, never HTML
    await expect(card.get_by_role("button", name="Send…")).to_be_visible()
    store = await manager.store()
    saved = await store.get_campaign("t1", "june")
    assert saved is not None
    assert {k: getattr(saved, k) for k in CONTENT} == CONTENT
    assert saved.headers == {}

    # A broken tag on line 2 of the HTML: refused where the API says; nothing stored.
    broken = "<p>Hello</p>\n{% if %}</p>"
    result = await _fill_and_save(page, "june", html=broken)
    await expect(result).to_contain_text("Not saved: html, line 2")
    html_box = form.get_by_label("HTML body")
    await expect(html_box).to_have_attribute("aria-invalid", "true")
    await expect(html_box).to_be_focused()
    assert await store.get_campaign("t1", "june") == saved
    await _fill_and_save(page, "july")  # the same broken HTML under a new id
    await expect(result).to_contain_text("html, line 2")
    assert await store.get_campaign("t1", "july") is None
    with pytest.raises(CampaignNotFoundError):
        await manager.campaigns.status("t1", "july")

    # An id the API refuses: named, shown as text, nothing stored; then a fix is saved.
    await html_box.fill(CONTENT["html"])
    result = await _fill_and_save(page, HOSTILE)
    await expect(result).to_contain_text("Not saved:")
    await expect(result).to_contain_text("campaignId")
    await expect(form.get_by_label("Campaign id")).to_have_attribute("aria-invalid", "true")
    await expect(form.get_by_label("HTML body")).not_to_have_attribute("aria-invalid", "true")
    listed = await manager.campaigns.list("t1")
    assert [c.campaign_id for c in listed.items] == ["june"]
    result = await _fill_and_save(page, "july")
    await expect(result).to_contain_text("Saved campaign july of tenant t1 as a draft.")
    await expect(form.get_by_label("Campaign id")).not_to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_test_id("campaign-state-july")).to_have_text("draft")


async def test_a_csv_with_bad_rows_is_refused_then_its_good_rows_are_sent_once_each(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink, server: str,
        page: Any) -> None:
    from playwright.async_api import expect

    await page.goto(f"{server}/dashboard?tenant=t1")
    await expect(await _fill_and_save(page, "june", **CONTENT)).to_contain_text("Saved")
    await page.get_by_test_id("campaign-send-june").click()
    dialog = page.get_by_role("dialog", name="Send campaign june")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text(f"subject: {CONTENT['subject']}")
    await expect(dialog.get_by_label("Recipients file")).to_be_focused()
    # The extension decides the Content-Type, not what the OS calls the file.
    await dialog.get_by_label("Recipients file").set_input_files(files=[{
        "name": "readers.csv", "mimeType": "application/octet-stream",
        "buffer": CSV.encode()}])

    # Bad rows, no "partial": refused with their numbers, nothing enqueued or sent.
    await dialog.get_by_role("button", name="Send", exact=True).click()
    result = dialog.get_by_test_id("send-result")
    await expect(result.get_by_test_id("send-refused")).to_have_text(
        "Nothing was sent: 2 bad rows.")
    rows = result.get_by_test_id("bad-rows").locator("li")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("Row 3, email:")
    await expect(rows.nth(1)).to_contain_text("Row 5, email:")
    assert (await manager.campaigns.status("t1", "june")).state == "draft"
    await _no_email_jobs(manager)
    assert sum(sink.handler.counts.values()) == 0

    # The good rows despite the bad ones, two a batch.
    await dialog.get_by_label("Send the good rows despite bad ones").check()
    await dialog.get_by_label("Batch size").fill("2")
    await dialog.get_by_role("button", name="Send", exact=True).click()
    summary = result.get_by_test_id("send-summary")
    await expect(summary).to_have_text("4 recipients in 2 batches, sending.")
    await expect(result).to_contain_text("1 duplicate address collapsed")
    await expect(result).to_contain_text("2 bad rows left out")
    await expect(result.get_by_test_id("bad-rows").locator("li")).to_have_count(2)
    await expect(dialog.get_by_role("button", name="Send", exact=True)).to_be_disabled()

    await asyncio.wait_for(sink.handler.wait_for_total(len(GOOD)), 120)
    done = await _finished(manager)
    assert sink.handler.counts == dict.fromkeys(GOOD, 1)
    assert (done.state, done.total, done.sent, done.batches_total) == ("completed", 4, 4, 2)
    assert any("Hello Cid in Lima" in m.text for m in sink.handler.recent)

    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()
    # Its Send… is gone: focus is on the campaign's name, kept there across refreshes.
    await expect(page.get_by_role("button", name="Open campaign june")).to_be_focused()
    await expect(page.get_by_test_id("campaign-state-june")).to_have_text("completed")
    for key, value in (("total", 4), ("sent", 4), ("pending", 0), ("failed", 0)):
        await expect(page.get_by_test_id(f"campaign-{key}-june")).to_have_text(str(value))
    await expect(page.get_by_test_id("campaign-send-june")).to_have_count(0)
    await expect(page.locator('[data-campaign="june"]')).to_contain_text(CONTENT["subject"])
    assert sum(sink.handler.counts.values()) == len(GOOD)  # the refused upload sent nothing


async def test_the_drawer_schedules_an_ndjson_send_at_a_local_time(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink, server: str,
        page: Any) -> None:
    from playwright.async_api import expect

    await page.goto(f"{server}/dashboard?tenant=t1")
    await expect(await _fill_and_save(page, "later", subject="Soon", text="Hi {{ name }}")
                 ).to_contain_text("Saved")
    await page.get_by_role("button", name="Open campaign later").click()
    drawer = page.get_by_role("dialog", name="Campaign later (t1)")
    await drawer.get_by_test_id("campaign-send-later").click()
    dialog = page.get_by_role("dialog", name="Send campaign later")
    await expect(dialog).to_be_visible()

    # Not a recipients file: refused on the page, nothing sent.
    picker = dialog.get_by_label("Recipients file")
    await picker.set_input_files(files=[{"name": "readers.txt", "mimeType": "text/plain",
                                         "buffer": b"email\na@example.com\n"}])
    await dialog.get_by_role("button", name="Send", exact=True).click()
    await expect(dialog.get_by_test_id("send-result")).to_contain_text(
        "readers.txt is not a .csv, .ndjson or .jsonl file: nothing was sent.")
    assert (await manager.campaigns.status("t1", "later")).state == "draft"

    local = (datetime.now(ZoneInfo(ZONE)) + timedelta(days=2)).replace(
        second=0, microsecond=0)
    ndjson = '{"email": "a@example.com", "name": "A"}\n\n{"email": "b@example.com"}\n'
    await picker.set_input_files(files=[{"name": "readers.ndjson", "mimeType": "",
                                         "buffer": ndjson.encode()}])
    await dialog.get_by_label("Send at").fill(local.strftime("%Y-%m-%dT%H:%M"))
    await dialog.get_by_role("button", name="Send", exact=True).click()
    await expect(dialog.get_by_test_id("send-summary")).to_contain_text(
        "2 recipients in 1 batch, scheduled for")

    status = await manager.campaigns.status("t1", "later")
    assert (status.state, status.total) == ("scheduled", 2)
    assert status.send_at == local.astimezone(UTC)
    assert (await manager.get_queue_stats("email")).delayed == 1
    await dialog.get_by_role("button", name="Close").click()
    await expect(drawer.get_by_test_id("drawer-state")).to_have_text("scheduled")
    await expect(page.get_by_test_id("campaign-state-later")).to_have_text("scheduled")
    await expect(drawer.get_by_role("button", name="Close details")).to_be_focused()
    assert sum(sink.handler.counts.values()) == 0

