"""Open and click tracking end to end, with real workers, the SMTP sink and the store (each
test on SQLite and on PostgreSQL): a campaign saved with tracking has the pixel and the
click redirects in the HTML the sink receives (mailto, tel, anchors and the unsubscribe
link untouched, the page still well-formed, the text part as written); loading the pixel
and following a link through the public API records the open and the click, the
redirect leads to the original URL, repeated hits add to the totals and not to the
unique counts, and ``campaign-complete`` and a later re-aggregation count them. Forged
links — the open-redirect attempt included — are 400s that record nothing; HEAD records
nothing; a campaign without tracking is sent as rendered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from newsletter_queue.config import Settings
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.links import Links
from newsletter_queue.services.sink import CapturedMessage, SmtpSink
from newsletter_queue.services.store import LinkClicks, Store
from newsletter_queue.services.tracking import PIXEL_GIF
from tests.integration.email.test_campaigns_managed import HeldSink, _finished, services
from tests.integration.email.test_cli_campaigns import env, nlq
from tests.integration.email.test_unsubscribe import TOKEN, _path, _public_client, _store
from tests.support import htmlcheck
from tests.support.postgres import BOTH_STORES

__all__ = ["env", "services"]  # fixtures shared with the managed-campaign and CLI tests
pytestmark = BOTH_STORES  # each test on SQLite and on PostgreSQL

READERS = ["ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"]
JUNE = "https://example.com/june?utm_source=news&utm_medium=email"
HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>June news</title>
<style>a { color: #06c }</style></head>
<body><table role="presentation"><tr><td>
<p>Hello {{ name }},</p>
<p><a href="https://example.com/june?utm_source=news&amp;utm_medium=email">Read June</a></p>
<p><a href="{{ personalizations.page }}">Your page</a></p>
<p><a href="mailto:editor@example.com">Write to us</a> · <a href="tel:+15550100">Call</a>
· <a href="#top">Top</a></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</td></tr></table></body>
</html>"""
TEXT = "Hello {{ name }}, read June: https://example.com/june"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _page(email: str) -> str:
    return f"https://example.com/me/{email.split('@')[0]}?from=june"


def _recipients() -> list[dict[str, Any]]:
    return [{"email": e, "name": e.split("@")[0].title(), "personalizations": {
        "page": _page(e)}} for e in READERS]


def _message(sink: SmtpSink, email: str, subject: str = "June") -> CapturedMessage:
    return next(m for m in sink.handler.recent if m.rcpt_tos == [email]
                and m.subject == subject)


def _links_of(message: CapturedMessage) -> tuple[str, str, str]:
    """The open pixel, the click link of June and that of the reader's page."""
    (pixel,) = htmlcheck.images(message.html)
    hrefs = htmlcheck.hrefs(message.html)
    return pixel["src"] or "", hrefs[0], hrefs[1]


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def _hit(client: httpx.AsyncClient, url: str, method: str = "GET") -> httpx.Response:
    return await client.request(method, _path(url))


async def _counts(store: Store) -> tuple[int, int]:
    return (await store.count_events("t1", "june", "opened"),
            await store.count_events("t1", "june", "clicked"))


@pytest.mark.timeout(240)
async def test_tracked_opens_and_clicks_reach_the_campaign_stats(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink,
        settings: Settings) -> None:
    async with _public_client(settings) as client:
        saved = await client.put("/api/tenants/t1/campaigns/june", headers=AUTH, json={
            "subject": "June", "html": HTML, "text": TEXT, "track_opens": True,
            "track_clicks": True})
        assert saved.status_code == 200, saved.text
        held = HeldSink(sink, after=2)  # two readers get theirs before the campaign ends
        await manager.campaigns.send("t1", "june", _recipients(), batch_size=2)
        await asyncio.wait_for(held.held.wait(), 60)
        first = [m.rcpt_tos[0] for m in sink.handler.recent]
        assert len(first) == 2
        a, b = first

        # What the first reader got: the pixel, web links redirected, the rest as written.
        message = _message(sink, a)
        htmlcheck.assert_well_formed(message.html)
        pixel, june, page = _links_of(message)
        hrefs = htmlcheck.hrefs(message.html)
        unsubscribe = message.headers["List-Unsubscribe"][1:-1]
        assert hrefs[2:] == ["mailto:editor@example.com", "tel:+15550100", "#top",
                             unsubscribe]
        assert (_query(june)["url"], _query(page)["url"]) == (JUNE, _page(a))
        assert _query(june)["email"] == a
        assert urlsplit(june).path == "/t/c"
        assert urlsplit(pixel).path == "/t/o"
        assert message.html.rstrip().endswith("/></body>\r\n</html>")  # just before </body>
        assert message.text.strip() == f"Hello {a.split('@')[0].title()}, read June: " \
            "https://example.com/june"  # the text part untouched

        # The reader opens the message twice and clicks June twice and their page once;
        # the second reader opens it once. A link scanner's HEADs count for nothing.
        for url, method in [(pixel, "HEAD"), (june, "HEAD")]:
            answer = await _hit(client, url, method)
            assert answer.status_code in (200, 302)
        opened = await _hit(client, pixel)
        assert opened.status_code == 200
        assert opened.content == PIXEL_GIF
        assert opened.headers["content-type"] == "image/gif"
        assert "no-store" in opened.headers["cache-control"]
        await _hit(client, pixel)
        for url in (june, june, page):
            answer = await _hit(client, url)
            assert answer.status_code == 302
            assert "no-store" in answer.headers["cache-control"]
        assert answer.headers["location"] == _page(a)
        assert (await _hit(client, june)).headers["location"] == JUNE
        await _hit(client, _links_of(_message(sink, b))[0])
        held.release()

        done = await _finished(manager)  # campaign-complete ran after these hits
        stats = done.stats
        assert stats is not None
        assert (stats.sent, stats.opens, stats.unique_opens, stats.clicks,
                stats.unique_clicks) == (4, 3, 2, 4, 1)
        assert (stats.open_rate, stats.click_rate) == (0.5, 0.25)
        assert stats.top_links == (LinkClicks(JUNE, 3), LinkClicks(_page(a), 1))

        # A reader of the second half opens and clicks after the campaign ended: a later
        # re-aggregation counts it.
        c = next(r for r in READERS if r not in first)
        later_pixel, later_june, _ = _links_of(_message(sink, c))
        assert (await _hit(client, later_pixel)).status_code == 200
        assert (await _hit(client, later_june)).headers["location"] == JUNE
    store = await _store(settings)
    try:
        again = await store.refresh_campaign_stats("t1", "june")
        assert (again.opens, again.unique_opens, again.clicks, again.unique_clicks) == \
            (4, 3, 5, 2)
        assert (again.open_rate, again.click_rate) == (0.75, 0.5)
        assert again.top_links[0] == LinkClicks(JUNE, 4)
        assert (await store.get_campaign_stats("t1", "june")) == again
        assert await _counts(store) == (4, 5)
    finally:
        await store.close()


async def test_forged_links_record_nothing_and_redirect_nowhere(settings: Settings) -> None:
    own = Links.from_settings(settings).for_recipient("t1", "june", "ann@example.com")
    pixel, june = own.open_url, own.click_url(JUNE)
    p, c = _query(pixel), _query(june)
    flipped = ("B" if c["sig"][0] == "A" else "A") + c["sig"][1:]
    clicks = [
        {**c, "url": "https://evil.example/phish"},            # the open-redirect attempt
        {**c, "url": JUNE + "&x=1"},                           # any change to the target
        {**c, "email": "bob@example.com"},                     # another reader
        {**c, "campaign": "july"}, {**c, "tenant": "t2"},      # another campaign, tenant
        {**c, "sig": flipped}, {**c, "sig": p["sig"]},         # tampered; the pixel's
        {k: v for k, v in c.items() if k != "url"}, {},
    ]
    opens = [{**p, "email": "bob@example.com"}, {**p, "sig": c["sig"]},
             {k: v for k, v in p.items() if k != "sig"}, {}]
    async with _public_client(settings) as client:
        for forged in clicks:
            for method in ("GET", "HEAD"):
                answer = await client.request(method, f"/t/c?{urlencode(forged)}")
                assert answer.status_code == 400, (method, forged)
                assert "location" not in answer.headers
        for forged in opens:
            answer = await client.get(f"/t/o?{urlencode(forged)}")
            assert answer.status_code == 400, forged
            assert answer.headers["content-type"] == "image/gif"  # no broken image
        store = await _store(settings)
        try:
            assert await _counts(store) == (0, 0)
            assert await store.count_events("t2") == 0
            # The genuine links work, on a public bind with no token, from anywhere.
            assert (await _hit(client, pixel)).status_code == 200
            assert (await _hit(client, june)).headers["location"] == JUNE
            assert await _counts(store) == (1, 1)
            assert (await client.post(_path(june))).status_code == 405
            assert await _counts(store) == (1, 1)
        finally:
            await store.close()


@pytest.mark.timeout(240)
async def test_without_tracking_the_html_is_sent_as_rendered(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink,
        settings: Settings) -> None:
    await manager.campaigns.save("t1", "june", subject="June", html=HTML)
    await manager.campaigns.send("t1", "june", _recipients()[:1])
    await _finished(manager)
    html = _message(sink, READERS[0]).html
    htmlcheck.assert_well_formed(html)
    unsubscribe = Links.from_settings(settings).unsubscribe_url("t1", "june", READERS[0])
    assert htmlcheck.hrefs(html) == [JUNE, _page(READERS[0]), "mailto:editor@example.com",
                                     "tel:+15550100", "#top", unsubscribe]
    assert htmlcheck.images(html) == []
    assert "/t/o" not in html
    assert "/t/c" not in html
    store = await _store(settings)
    try:
        record = await store.get_campaign("t1", "june")
        assert record is not None
        assert (record.track_opens, record.track_clicks) == (False, False)
    finally:
        await store.close()


def test_the_cli_saves_the_tracking_options(env: dict[str, str | None], tmp_path: Path,
                                            settings: Settings) -> None:
    page = tmp_path / "june.html"
    page.write_text(HTML, encoding="utf-8")
    nlq(env, "save", "t1", "june", "--subject", "June", "--html-file", str(page),
        "--track-opens", "--track-clicks")
    nlq(env, "save", "t1", "july", "--subject", "July", "--html-file", str(page),
        "--track-clicks")

    async def stored() -> list[tuple[bool, bool]]:
        store = await _store(settings)
        try:
            found = [await store.get_campaign("t1", c) for c in ("june", "july")]
            listed = {r.campaign_id: r for r in await store.list_campaigns("t1")}
            assert all(r is not None and listed[r.campaign_id] == r for r in found)
            return [(r.track_opens, r.track_clicks) for r in found if r is not None]
        finally:
            await store.close()

    assert asyncio.run(stored()) == [(True, True), (False, True)]
