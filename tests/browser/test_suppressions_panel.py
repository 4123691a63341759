"""The dashboard's Suppressions panel, and the Campaigns panel's suppression numbers, in
headless Chromium against real workers, the real SMTP sink, Redis and the SQLite store.

On the page only: addresses are added (the store lists them), a CSV with bad rows is
imported (the bad rows' numbers shown, the good addresses in the store), a campaign to
listed and unlisted addresses runs (the page's *suppressed* count is ``status()``'s and
the sink never got a listed address), a reader's real one-click unsubscribe shows up in
the open drawer without a reload, an entry is removed and an address erased behind their
confirmations (the store no longer lists it / keeps only its hash, its deliveries and
events gone). Hostile addresses, reasons and tenants stay text: nothing on the page runs.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from tests.browser.campaign_fixtures import browser_timezone, page, server, services, sink
from tests.browser.test_dashboard import CHROMIUM
from tests.integration.email.test_campaigns_managed import _finished

__all__ = ["browser_timezone", "page", "server", "services", "sink"]  # the fixtures

pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Chromium is not installed at /usr/bin/chromium"),
              pytest.mark.timeout(300)]
# A valid address (every character is allowed before the @) that would run if it were
# ever put into an HTML attribute; and an invalid one that is markup.
HOSTILE = "x'onfocus=window.__pwned=1'autofocus=''@example.com"
MARKUP = "<svg/onload=window.__pwned=2>@example.com"  # no space: one address typed
# Row 2 is not an address, row 3 is markup, row 5 repeats row 1 in other letters.
CSV = ("email,name\n"
       "bob@example.com,Bob\n"
       "not-an-address,X\n"
       "<img src=x onerror=window.__pwned=3>,Y\n"
       "cid@example.com,Cid\n"
       "BOB@Example.com,Bob again\n")
ADDRESS_CELLS = "#sup-table tbody td.addr"


async def _listed(manager: QueueManager) -> dict[str | None, str]:
    """The tenant's list in the store: address (``None`` once erased) → reason."""
    found = await manager.suppressions.list("t1", page_size=500)
    return {s.email: s.reason for s in found.items}


async def _add_on_page(page: Any, text: str) -> Any:
    form = page.locator("#sup-add-form")
    if not await form.is_visible():
        await page.locator("#sup-add > summary").click()
    await form.get_by_label("Addresses").fill(text)
    async with page.expect_response(lambda r: r.request.method == "POST"):
        await form.get_by_role("button", name="Add to the list").click()
    return page.get_by_test_id("sup-add-result")


async def _confirm(page: Any, question: str, answer: str = "Confirm") -> None:
    from playwright.async_api import expect

    confirm = page.locator("#confirm")
    await expect(confirm).to_be_visible()
    await expect(confirm).to_contain_text(question)
    await confirm.get_by_role("button", name=answer).click()
    await expect(confirm).to_be_hidden()


async def test_add_import_and_a_campaign_that_skips_the_listed_addresses(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink, server: str,
        page: Any) -> None:
    from playwright.async_api import expect

    await page.goto(f"{server}/dashboard?tenant=t1")
    panel = page.locator("#suppressions")
    await expect(page.locator("#sup-note")).to_have_text(
        "0 addresses on the list of tenant t1, newest first.")

    # Add two addresses from the page: the store lists them; the hostile one is text.
    result = await _add_on_page(page, f"ann@example.com,\n{HOSTILE}\n")
    await expect(result.get_by_test_id("sup-add-summary")).to_have_text(
        "2 addresses added to the list of tenant t1 (manual).")
    assert await _listed(manager) == {"ann@example.com": "manual", HOSTILE: "manual"}
    await expect(panel.locator(ADDRESS_CELLS)).to_have_text([HOSTILE, "ann@example.com"])
    await expect(panel.locator("#sup-table tbody tr").first).to_contain_text("manual")

    # A bad address: refused as the API words it, naming which one; nothing listed.
    result = await _add_on_page(page, f"dee@example.com {MARKUP}")
    refused = result.get_by_test_id("sup-refused")
    await expect(refused).to_contain_text(
        "Nothing was added: invalid suppression: emails[1]: not an email address")
    await expect(refused.locator("li")).to_have_text(
        [f"emails[1] ({MARKUP}): not an email address"])
    addresses = page.locator("#sup-add-emails")
    await expect(addresses).to_have_attribute("aria-invalid", "true")
    await expect(addresses).to_be_focused()
    assert await _listed(manager) == {"ann@example.com": "manual", HOSTILE: "manual"}
    result = await _add_on_page(page, "ANN@example.com")
    await expect(result.get_by_test_id("sup-add-summary")).to_have_text(
        "0 addresses added to the list of tenant t1 (manual); 1 already on it.")
    await expect(addresses).not_to_have_attribute("aria-invalid", "true")

    # Import a CSV with bad rows as complaints: their numbers shown, the good ones listed.
    await page.locator("#sup-import > summary").click()
    form = page.locator("#sup-import-form")
    await form.get_by_label("Reason").select_option("complaint")
    await form.get_by_label("File").set_input_files(files=[{
        "name": "complaints.csv", "mimeType": "application/octet-stream",
        "buffer": CSV.encode()}])
    await form.get_by_role("button", name="Import").click()
    out = page.get_by_test_id("sup-import-result")
    await expect(out.get_by_test_id("sup-import-summary")).to_have_text(
        "complaints.csv: 2 addresses added to the list of tenant t1 (complaint), "
        "0 already on it.")
    await expect(out).to_contain_text("1 repeated address counted once.")
    await expect(out.get_by_test_id("sup-bad-rows-head")).to_have_text("2 bad rows left out:")
    rows = out.get_by_test_id("bad-rows").locator("li")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("Row 2, email:")
    await expect(rows.nth(1)).to_contain_text("Row 3, email:")
    assert await _listed(manager) == {"ann@example.com": "manual", HOSTILE: "manual",
                                      "bob@example.com": "complaint",
                                      "cid@example.com": "complaint"}
    await expect(panel.locator(ADDRESS_CELLS)).to_have_text(
        ["cid@example.com", "bob@example.com", HOSTILE, "ann@example.com"])

    # The reason filter.
    await page.locator("#sup-reason").select_option("complaint")
    await expect(panel.locator(ADDRESS_CELLS)).to_have_text(
        ["cid@example.com", "bob@example.com"])
    await expect(page.locator("#sup-note")).to_have_text(
        "2 addresses on the list of tenant t1 with reason complaint, newest first.")
    await page.locator("#sup-reason").select_option("")
    await expect(panel.locator(ADDRESS_CELLS)).to_have_count(4)

    # A campaign to two listed and three unlisted readers (fay's server refuses her).
    sink.handler.rules.reject.add("fay@example.com")
    readers = ["ann@example.com", "bob@example.com", "dee@example.com", "eve@example.com",
               "fay@example.com"]
    await manager.campaigns.save("t1", "june", subject="June",
                                 text="Hi. Leave: {{ unsubscribe_url }}")
    await manager.campaigns.send("t1", "june", [{"email": e} for e in readers])
    done = await _finished(manager)
    assert (done.sent, done.bounced, done.suppressed, done.pending) == (2, 1, 2, 0)
    assert sink.handler.counts == {"dee@example.com": 1, "eve@example.com": 1}
    await expect(page.get_by_test_id("campaign-state-june")).to_have_text("completed")
    await expect(page.get_by_test_id("campaign-suppressed-june")).to_have_text(
        str(done.suppressed))
    await expect(page.get_by_test_id("bar-june-suppressed")).to_have_attribute(
        "data-count", str(done.suppressed))
    await expect(page.get_by_test_id("campaign-bounced-june")).to_have_text("1")
    await expect(page.locator('[data-campaign="june"] .progress')).to_have_attribute(
        "aria-label", "Progress: 2 sent, 1 bounced, 0 failed, 2 suppressed, 0 pending of 5")

    # The drawer: Suppressed among the numbers and in the stats; nothing listed by june yet.
    await page.get_by_role("button", name="Open campaign june").click()
    drawer = page.get_by_role("dialog", name="Campaign june (t1)")
    await expect(drawer.get_by_test_id("drawer-suppressed")).to_have_text("2")
    assert done.stats is not None
    await expect(drawer.get_by_test_id("stats-suppressed")).to_have_text(
        str(done.stats.suppressed))
    for label in ("unsubscribes", "bounces", "complaints"):
        await expect(drawer.get_by_test_id(f"drawer-{label}")).to_have_text("0")

    # Dee unsubscribes with her message's link, in another tab; eve complains and fay's
    # bounce is listed (through Python: nothing on this branch lists them by itself).
    header = next(m for m in sink.handler.recent
                  if m.rcpt_tos == ["dee@example.com"]).headers["List-Unsubscribe"]
    link = urlsplit(header[1:-1])
    reader = await page.context.browser.new_page()  # a browser profile of her own
    await reader.goto(f"{server}{link.path}?{link.query}")
    await reader.get_by_role("button", name="Unsubscribe").click()
    await expect(reader.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    await reader.close()
    await manager.suppressions.add("t1", ["eve@example.com"], reason="complaint",
                                   campaign_id="june")
    await manager.suppressions.add("t1", ["fay@example.com"], reason="hard-bounce",
                                   campaign_id="june")
    assert (await manager.campaigns.status("t1", "june")).suppressions == {
        "unsubscribed": 1, "complaint": 1, "hard-bounce": 1}
    # The open drawer follows, without a reload (the campaign completed before).
    for label in ("unsubscribes", "bounces", "complaints"):
        await expect(drawer.get_by_test_id(f"drawer-{label}")).to_have_text("1")
    await expect(panel.locator(ADDRESS_CELLS)).to_have_count(7)
    dee = panel.locator("#sup-table tbody tr").filter(has_text="dee@example.com")
    await expect(dee.locator("td")).to_have_text(
        ["dee@example.com", "unsubscribed", "june", re.compile(r"\d"), "Remove"])
    assert sum(sink.handler.counts.values()) == 2  # listed addresses never got mail


async def test_remove_and_erase_behind_confirmations_paging_and_hostile_input(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink, server: str,
        page: Any) -> None:
    from playwright.async_api import expect

    await manager.suppressions.add("t1", ["bob@example.com"])
    await manager.suppressions.add("t1", [HOSTILE])
    await manager.campaigns.save("t1", "june", subject="June", text="Hi")
    await manager.campaigns.send("t1", "june", [{"email": "ann@example.com"}])
    await _finished(manager)
    assert await manager.record_events([
        {"tenantId": "t1", "campaignId": "june", "recipient": "ann@example.com",
         "type": t, "url": "https://example.com/a"}
        for t in ("opened", "clicked")]) == 2
    store = await manager.store()
    assert await store.get_delivery("t1", "june", "ann@example.com") is not None

    await page.goto(f"{server}/dashboard?tenant=t1")
    panel = page.locator("#suppressions")
    await expect(panel.locator(ADDRESS_CELLS)).to_have_text([HOSTILE, "bob@example.com"])

    # Remove: cancelling changes nothing; confirming takes it off, in the store too.
    remove = panel.get_by_role("button", name=f"Remove {HOSTILE}")
    await remove.click()
    await _confirm(page, f"Take {HOSTILE} off the suppression list of tenant t1?", "Cancel")
    assert HOSTILE in await _listed(manager)
    await remove.click()
    await _confirm(page, f"Take {HOSTILE} off the suppression list of tenant t1?")
    await expect(panel.locator(ADDRESS_CELLS)).to_have_text(["bob@example.com"])
    assert await _listed(manager) == {"bob@example.com": "manual"}
    await expect(panel.get_by_role("button", name="Remove bob@example.com")).to_be_focused()
    await expect(page.locator("#announcer")).to_have_text(
        f"{HOSTILE} is off the suppression list of tenant t1.")

    # Erase: the API's refusal of a non-address; a cancel; then ann is forgotten.
    await page.locator("#sup-erase > summary").click()
    erase = page.locator("#sup-erase-form")
    out = page.get_by_test_id("sup-erase-result")
    await erase.get_by_label("Address").fill("not-an-address")
    await erase.get_by_role("button", name="Erase…").click()
    await _confirm(page, "Erase not-an-address from tenant t1?")
    await expect(out).to_contain_text(
        "Not erased: invalid erasure: email: not an email address")
    await erase.get_by_label("Address").fill("ann@example.com")
    await erase.get_by_role("button", name="Erase…").click()
    explained = ("Every delivery and event of this address is deleted — the campaigns it "
                 "got, its opens, clicks and unsubscribes — and only a hashed suppression "
                 "entry is kept, so it is never mailed again. This cannot be undone.")
    await _confirm(page, explained, "Cancel")
    await expect(out).to_have_text("Cancelled: nothing was erased.")
    assert await store.get_delivery("t1", "june", "ann@example.com") is not None
    await erase.get_by_role("button", name="Erase…").click()
    await _confirm(page, explained)
    await expect(out.get_by_test_id("sup-erase-summary")).to_have_text(
        "Erased ann@example.com: 1 delivery and 2 events deleted; a hashed suppression "
        "entry (manual) keeps it from being mailed.")
    entry = await manager.suppressions.get("t1", "ann@example.com")
    assert entry is not None
    assert (entry.email, entry.reason) == (None, "manual")
    assert await store.get_delivery("t1", "june", "ann@example.com") is None
    assert await manager.campaigns.recipient_history("t1", "ann@example.com") == []
    assert await store.count_events("t1", "june") == 0
    erased = panel.locator(f'#sup-table tr[data-hash="{entry.email_hash}"]')
    await expect(erased.locator("td").nth(0)).to_have_text("(erased)")
    await expect(erased.locator("td").nth(1)).to_have_text("manual")
    await expect(erased.get_by_role("button")).to_have_count(0)  # no address to remove

    # Pages of 20.
    await manager.suppressions.add("t1", [f"p{i:02}@example.com" for i in range(25)])
    await expect(page.locator("#sup-page-info")).to_have_text("Page 1 of 2")
    await expect(panel.locator("#sup-table tbody tr")).to_have_count(20)
    await expect(page.locator("#sup-prev")).to_be_disabled()
    await page.locator("#sup-next").click()
    await expect(page.locator("#sup-page-info")).to_have_text("Page 2 of 2")
    await expect(panel.locator("#sup-table tbody tr")).to_have_count(7)
    await expect(panel.locator(ADDRESS_CELLS).last).to_have_text("bob@example.com")
    await page.locator("#sup-prev").click()
    await expect(page.locator("#sup-page-info")).to_have_text("Page 1 of 2")

    # A tampered reason: the API refuses it, nothing is listed, nothing runs.
    before = await _listed(manager)
    await page.locator("#sup-add > summary").click()
    await page.locator("#sup-add-reason").evaluate(
        "(el, v) => { el.options[0].value = v; el.value = v; }",
        '<img src=x onerror="window.__pwned=4">')
    result = await _add_on_page(page, "gus@example.com")
    await expect(result.get_by_test_id("sup-refused")).to_contain_text(
        "Nothing was added: invalid request")
    await expect(result.locator("li")).to_contain_text(["body.reason: Input should be"])
    assert await _listed(manager) == before
    await expect(page.locator("#suppressions img")).to_have_count(0)

    # A hostile tenant: refused by the API, said as text.
    await page.goto(f"{server}/dashboard?tenant={quote(MARKUP.split('@')[0])}")
    await expect(page.locator("#sup-note")).to_contain_text("Suppression list unavailable:")
    await expect(page.locator("#suppressions img")).to_have_count(0)
    assert await _listed(manager) == before
    assert sum(sink.handler.counts.values()) == 1  # ann's June message, before the erasure
