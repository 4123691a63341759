"""No page of another origin can change anything through the API (loopback, no token).

The attacks, each a real page opened in headless Chromium against a live API on
127.0.0.1 (no token, the out-of-the-box setup):

- a form POST from a page with ``<meta name=referrer content=no-referrer>`` (Chromium
  then sends ``Origin: null``);
- a sandboxed iframe running ``fetch(…, {mode: "no-cors"})`` against every state-changing
  route: retry a failed job, replay a dead letter, ``action=performance``, ``clear``,
  remove a job, retry-failed, clean, enqueue;
- a plain form on another loopback port (``127.0.0.1:<other>``), and the same page as
  ``localhost:<other>`` (same *site*, another origin);
- a ``file://`` page.

Afterwards Redis and the records store show that nothing changed, and the browser's
own view of the network shows that each request reached the API and was refused (403).
The control: a page of the API's own origin does the same POST and it works, as does a
client that is not a browser.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from newsletter_queue.api import create_app
from newsletter_queue.config import Settings
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.store import DeadLetterRecord, Store
from tests.browser.test_dashboard import CHROMIUM, LAUNCH_ARGS, _fail_a_job
from tests.support.helpers import wait_for
from tests.support.liveapi import live_app

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed at "
                       "/usr/bin/chromium (apt-get install chromium)"),
    pytest.mark.timeout(300),
]


def _routes(api: str, letter_id: int) -> list[str]:
    """Every state-changing route, with arguments that would change something."""
    return [
        f"{api}/api/dev/queue?action=pause&queue=email",
        f"{api}/api/dev/queue?action=clear&queue=analytics",
        f"{api}/api/dev/queue?action=test",
        f"{api}/api/dev/queue?action=performance",
        f"{api}/api/dev/queues/ai/jobs/doomed-job/retry",
        f"{api}/api/dev/queues/analytics/jobs/victim-job/remove",
        f"{api}/api/dev/queues/ai/retry-failed",
        f"{api}/api/dev/queues/ai/clean?state=failed",
        f"{api}/api/dev/queues/email/jobs",
        f"{api}/api/dev/dead-letters/{letter_id}/replay",
    ]


ENQUEUE_BODY = json.dumps({"name": "transactional", "data": {
    "campaignId": "csrf", "tenantId": "victim", "recipients": [{"email": "x@example.com"}],
    "content": {"subject": "Hi", "text": "Hi"}}})


def _form_page(action: str, *, no_referrer: bool = False) -> str:
    meta = '<meta name="referrer" content="no-referrer">' if no_referrer else ""
    return (f"<!doctype html><html><head>{meta}</head><body>"
            f'<form method="POST" action="{action}"></form>'
            "<script>document.forms[0].submit()</script></body></html>")


def _sandboxed_fetch_page(urls: list[str]) -> str:
    script = ("<script>const urls = " + json.dumps(urls) + "; const body = "
              + json.dumps(ENQUEUE_BODY) + ";"
              "for (const u of urls) fetch(u, {method: 'POST', mode: 'no-cors', body,"
              " headers: {'Content-Type': 'text/plain'}});</script>")
    srcdoc = script.replace("&", "&amp;").replace('"', "&quot;")
    return (f'<!doctype html><html><body><iframe sandbox="allow-scripts" '
            f'srcdoc="{srcdoc}"></iframe></body></html>')


class Witness:
    """Wraps the API's ASGI app and notes every POST it answered: path, Origin, status.

    (The browser's own network events miss requests from a sandboxed ``srcdoc`` frame,
    so the API side is asked instead.)
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.posts: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        entry: dict[str, Any] = {"path": scope["path"], "origin": headers.get("origin", "-"),
                                 "status": None}

        async def noted(message: Any) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, noted)
        self.posts.append(entry)


@contextlib.asynccontextmanager
async def attacker(pages: dict[str, str]) -> AsyncIterator[int]:
    """A site of its own on another loopback port, serving ``pages``; yields the port."""
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=pages[request.path], content_type="text/html")

    app = web.Application()
    for path in pages:
        app.router.add_get(path, page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def _state(manager: QueueManager, client: aioredis.Redis, prefix: str,
                 store: Store, letter_id: int) -> dict[str, Any]:
    stats = await manager.get_all_queue_stats()
    letter = await store.get_dead_letter(letter_id)
    return {
        "counts": {q: s.to_dict() for q, s in stats.items()},
        "paused": [q for q, s in stats.items() if s.is_paused],
        "doomed": (await manager.get_job("ai", "doomed-job")).state,  # type: ignore[union-attr]
        "victim": await client.exists(f"{prefix}:analytics:victim-job"),
        "replayed": letter.replayed_at if letter else "gone",
        "keys": len([k async for k in client.scan_iter(f"{prefix}:*", count=1000)]),
    }


async def test_no_page_of_another_origin_changes_anything(
        settings: Settings, manager: QueueManager, redis_client: aioredis.Redis,
        prefix: str, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    worker = await _fail_a_job(manager, settings, redis_client)
    await worker.close(2)
    await manager.schedule_analytics_job("campaign-complete", {
        "campaignId": "c1", "tenantId": "acme", "eventType": "campaign-complete"},
        {"job_id": "victim-job"})
    store = Store.from_settings(settings)
    await store.init()
    letter_id = await store.add_dead_letter(DeadLetterRecord(
        queue="ai", job_id="old-1", job_name="subject-optimization",
        data={"tenantId": "t", "type": "subject-optimization", "data": {"subjects": ["A"]}},
        error="provider exploded", attempts=1, failed_at=datetime.now(UTC)))
    refused: list[tuple[str, int]] = []
    try:
        witness = Witness(create_app(settings))  # its own manager, on the server thread
        with live_app(witness) as api:
            routes = _routes(api, letter_id)
            pause = routes[0]
            pages = {"/noref": _form_page(pause, no_referrer=True),
                     "/plain": _form_page(pause),
                     "/sandboxed": _sandboxed_fetch_page(routes)}
            (tmp_path / "attack.html").write_text(_form_page(pause))
            before = await _state(manager, redis_client, prefix, store, letter_id)
            assert before["doomed"] == "failed"
            assert before["victim"] == 1
            async with attacker(pages) as port, async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM),
                                                   headless=True, args=LAUNCH_ARGS)
                try:
                    page = await browser.new_page()
                    other = f"http://127.0.0.1:{port}"
                    attacks = [(f"{other}/noref", 1), (f"{other}/plain", 1),
                               (f"http://localhost:{port}/plain", 1),
                               ((tmp_path / "attack.html").as_uri(), 1),
                               (f"{other}/sandboxed", len(routes))]
                    expected = 0
                    for url, requests in attacks:
                        expected += requests
                        await page.goto(url)
                        await wait_for(lambda n=expected: _enough(witness.posts, n),
                                       timeout=60, message=f"the API's answers to {url}")
                    refused = [(p["path"], p["status"]) for p in witness.posts]
                    origins = {p["origin"] for p in witness.posts}
                    # the page on another origin, the null origin and file:// all tried
                    assert "null" in origins
                    assert f"http://127.0.0.1:{port}" in origins
                    assert f"http://localhost:{port}" in origins
                    assert all(status == 403 for _, status in refused), refused
                    after = await _state(manager, redis_client, prefix, store, letter_id)
                    assert after == before

                    # Control: the API's own page makes the same POST, and it works.
                    await page.goto(f"{api}/dashboard")
                    status = await page.evaluate(
                        "async (u) => (await fetch(u, {method: 'POST'})).status",
                        pause.replace("queue=email", "queue=ai"))
                    assert status == 200
                    assert await manager.is_paused("ai")
                finally:
                    await browser.close()
            # … and so does a client that is not a browser (the curl examples in docs/operating.md).
            async with httpx.AsyncClient() as curl:
                assert (await curl.post(pause)).status_code == 200
            assert await manager.is_paused("email")
    finally:
        await store.close()
    assert len(refused) >= 4 + len(_routes("", letter_id))


async def _enough(seen: list[Any], n: int) -> bool:
    return len(seen) >= n
