"""One-click unsubscribe (RFC 8058) end to end, with real workers, the SMTP sink and the
store: the link of a delivered message, POSTed as a mailbox provider does — from another
origin, with no token, to a public bind — suppresses the address, and the next campaign
skips it. Every forgery is a 400 that records nothing; a GET alone changes nothing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from newsletter_queue.api import create_app
from newsletter_queue.config import Settings
from newsletter_queue.errors import ConfigurationError
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.links import Links
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.store import Store
from tests.integration.email.test_campaigns_managed import _finished, services
from tests.support.postgres import BOTH_STORES

__all__ = ["services"]  # the fixture, shared with the managed-campaign tests
pytestmark = BOTH_STORES  # each test on SQLite and on PostgreSQL

TOKEN = "tok-unsubscribe-9f8e7d6c5b4a"
READERS = ["ann@example.com", "bob@example.com", "cy@example.com"]
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _public_client(settings: Settings) -> httpx.AsyncClient:
    """The API bound publicly (a token is configured), reached through the platform's
    own domain, as a mailbox provider reaches it."""
    app = create_app(settings.model_copy(update={"api_token": SecretStr(TOKEN)}), host="0.0.0.0")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="https://news.example.com",
                             headers={"Origin": "https://mail.provider.example"})


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def _store(settings: Settings) -> Store:
    store = Store.from_settings(settings)
    await store.init()
    return store


@pytest.mark.timeout(240)
async def test_a_one_click_unsubscribe_is_honoured_by_the_next_campaign(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink,
        settings: Settings) -> None:
    await manager.campaigns.save("t1", "june", subject="June", text="Bye: {{ unsubscribe_url }}")
    await manager.campaigns.send("t1", "june", [{"email": e} for e in READERS])
    await _finished(manager, "june")
    ann = next(m for m in sink.handler.recent if m.rcpt_tos == ["ann@example.com"])
    header = ann.headers["List-Unsubscribe"]
    assert (header[0], header[-1]) == ("<", ">")
    assert ann.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = header[1:-1]
    assert link in ann.text  # {{ unsubscribe_url }} is the same signed link

    async with _public_client(settings) as client:
        answer = await client.post(_path(link), data=ONE_CLICK)
        assert answer.status_code == 200, answer.text
        assert "unsubscribed" in answer.text
        assert (await client.post(_path(link), data=ONE_CLICK)).status_code == 200
        # Everything else keeps its access rules on this public bind.
        assert (await client.get("/api/tenants/t1/campaigns")).status_code == 401

    store = await _store(settings)
    try:
        entry = await store.get_suppression("t1", "ann@example.com")
        assert entry is not None
        assert (entry.reason, entry.campaign_id) == ("unsubscribed", "june")
        assert await store.count_events("t1", "june", "unsubscribed") == 1  # once
        assert (await store.refresh_campaign_stats("t1", "june")).unsubscribes == 1
        assert await store.suppression_counts("t1", "june") == {"unsubscribed": 1}
    finally:
        await store.close()

    june = await manager.campaigns.status("t1", "june")
    assert june.suppressions == {"unsubscribed": 1}  # what the panel shows per campaign
    assert june.to_dict()["suppressions"] == {"unsubscribed": 1}

    await manager.campaigns.save("t1", "july", subject="July", text="Hi")
    await manager.campaigns.send("t1", "july", [{"email": e} for e in READERS])
    july = await _finished(manager, "july")
    assert sink.handler.counts["ann@example.com"] == 1  # june's message only
    assert sink.handler.counts["bob@example.com"] == 2
    assert (july.sent, july.suppressed) == (2, 1)
    assert july.stats is not None
    assert july.stats.suppressed == 1


async def test_forged_links_and_bodies_record_nothing(settings: Settings) -> None:
    links = Links.from_settings(settings)
    good = links.unsubscribe_url("t1", "june", "ann@example.com")
    query = {k: v[0] for k, v in parse_qs(urlsplit(good).query).items()}
    sig = query["sig"]
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    forgeries = [
        {**query, "email": "bob@example.com"},           # another address
        {**query, "campaign": "july"},                   # another campaign
        {**query, "tenant": "t2"},                       # another tenant
        {**query, "sig": flipped},                       # a tampered signature
        {**query, "sig": ""},                            # a blank one
        {k: v for k, v in query.items() if k != "sig"},  # none at all
        {},
    ]
    async with _public_client(settings) as client:
        for forged in forgeries:
            for method in ("GET", "POST"):
                answer = await client.request(method, f"/unsubscribe?{urlencode(forged)}",
                                              data=ONE_CLICK if method == "POST" else None)
                assert answer.status_code == 400, (method, forged)
                assert "not valid" in answer.text
        # A real link: GET shows one button and changes nothing …
        page = await client.get(_path(good))
        assert page.status_code == 200
        assert '<button type="submit">Unsubscribe</button>' in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        # … a POST that does not say One-Click changes nothing either …
        for body in ({}, {"List-Unsubscribe": "Yes"}, {"Unsubscribe": "One-Click"}):
            assert (await client.post(_path(good), data=body)).status_code == 400
        assert (await client.post(_path(good), content=b"List-Unsubscribe=One-Click",
                                  headers={"Content-Type": "text/plain"})).status_code == 400
        store = await _store(settings)
        try:
            assert await store.count_suppressions("t1") == 0
            assert await store.count_suppressions("t2") == 0
            assert await store.count_events("t1") == 0
            # … and the multipart form of RFC 8058 works.
            answer = await client.post(_path(good), files={
                "List-Unsubscribe": (None, "One-Click")})
            assert answer.status_code == 200, answer.text
            assert await store.suppressed("t1", ["ann@example.com"]) == {"ann@example.com"}
            assert await store.count_suppressions("t1") == 1
        finally:
            await store.close()
        again = await client.get(_path(good))
        assert "You are unsubscribed" in again.text


@pytest.mark.parametrize("secret", ["", "    ", "too-short"])
def test_a_blank_signing_secret_refuses_to_start(settings: Settings, secret: str) -> None:
    with pytest.raises(ConfigurationError, match="NLQ_SIGNING_SECRET"):
        create_app(settings.model_copy(update={"signing_secret": SecretStr(secret)}))
