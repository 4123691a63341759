"""The one-click unsubscribe as an attacker's page in headless Chromium sees it.

Against a live API on loopback (no token, the out-of-the-box setup), pages of another
origin:

- load a real signed link the way a link scanner or a prefetching client does (``<img>``,
  ``<iframe>``, a top-level GET): nothing is suppressed;
- auto-submit a one-click form with a forged link (another address, a tampered
  signature): the API answers 400 and nothing is suppressed;
- auto-submit the real link: RFC 8058 wants that to work from any origin, and it does.

Redis is not involved; the records store is checked after each step.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from newsletter_queue.api import create_app
from newsletter_queue.config import Settings
from newsletter_queue.services.links import Links
from newsletter_queue.services.store import Store
from tests.browser.test_csrf import Witness, attacker
from tests.browser.test_dashboard import CHROMIUM, LAUNCH_ARGS
from tests.support.helpers import wait_for
from tests.support.liveapi import live_app

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed at "
                       "/usr/bin/chromium (apt-get install chromium)"),
    pytest.mark.timeout(300),
]


def _one_click_form(action: str) -> str:
    return ("<!doctype html><html><body>"
            f'<form method="POST" action="{html.escape(action)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click"></form>'
            "<script>document.forms[0].submit()</script></body></html>")


def _scanner(url: str) -> str:
    link = html.escape(url)
    return (f'<!doctype html><html><body><img src="{link}">'
            f'<iframe src="{link}"></iframe></body></html>')


async def test_pages_of_another_origin_cannot_forge_an_unsubscribe(
        settings: Settings) -> None:
    from playwright.async_api import async_playwright

    store = Store.from_settings(settings)
    await store.init()
    witness = Witness(create_app(settings))
    try:
        with live_app(witness) as api:
            real = Links.from_settings(settings).unsubscribe_url("t1", "june",
                                                                 "ann@example.com")
            query = {k: v[0] for k, v in parse_qs(urlsplit(real).query).items()}
            link = f"{api}/unsubscribe?{urlencode(query)}"
            other = {**query, "email": "bob@example.com"}
            sig = query["sig"]
            tampered = {**query, "sig": ("B" if sig[0] == "A" else "A") + sig[1:]}
            pages = {
                "/scanner": _scanner(link),
                "/other-address": _one_click_form(f"{api}/unsubscribe?{urlencode(other)}"),
                "/tampered": _one_click_form(f"{api}/unsubscribe?{urlencode(tampered)}"),
                "/real": _one_click_form(link),
            }
            async with attacker(pages) as port, async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM),
                                                   headless=True, args=LAUNCH_ARGS)
                try:
                    page = await browser.new_page()
                    site = f"http://127.0.0.1:{port}"
                    # Link scanners and prefetchers only GET: nothing changes.
                    async with page.expect_response(lambda r: r.url == link):
                        await page.goto(f"{site}/scanner")
                    scanned = await page.goto(link)
                    assert scanned is not None
                    assert scanned.status == 200
                    assert await store.count_suppressions("t1") == 0
                    assert witness.posts == []

                    for seen, path in enumerate(("/other-address", "/tampered")):
                        await page.goto(f"{site}{path}")
                        await wait_for(lambda n=seen: _more(witness, n), timeout=60,
                                       message=f"the API's answer to {path}")
                    assert [p["status"] for p in witness.posts] == [400, 400]
                    assert {p["origin"] for p in witness.posts} == {site}
                    assert await store.count_suppressions("t1") == 0
                    assert await store.count_events("t1") == 0

                    # The real link works from any origin, as RFC 8058 requires.
                    await page.goto(f"{site}/real")
                    await wait_for(lambda: _more(witness, 2), timeout=60,
                                   message="the API's answer to the real link")
                    assert witness.posts[-1]["status"] == 200
                    assert await store.suppressed("t1", ["ann@example.com", "bob@example.com"]
                                                  ) == {"ann@example.com"}
                    assert await store.count_events("t1", "june", "unsubscribed") == 1
                finally:
                    await browser.close()
    finally:
        await store.close()


async def _more(witness: Witness, seen: int) -> bool:
    return len(witness.posts) > seen
