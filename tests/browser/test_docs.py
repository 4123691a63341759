"""``/docs`` and ``/redoc`` work on a machine without internet: Swagger UI and ReDoc are
the copies in the project's own dependency ``fastapi-offline``, served by the API; the
browser may reach nothing else.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from newsletter_queue.api import create_app
from newsletter_queue.config import Settings
from tests.browser.test_dashboard import CHROMIUM, LAUNCH_ARGS
from tests.support.liveapi import live_app

pytestmark = pytest.mark.timeout(300)


async def test_docs_page_loads_nothing_from_other_sites(settings: Settings) -> None:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        for path in ("/docs", "/redoc"):
            page = await http.get(path)
            assert page.status_code == 200
            urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
            assert urls, page.text[:500]
            assert all(u.startswith("/") for u in urls), urls  # this API's own paths only
            for url in urls:
                assert (await http.get(url)).status_code == 200, url


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed at "
                    "/usr/bin/chromium (apt-get install chromium)")
async def test_docs_render_with_every_other_host_unreachable(settings: Settings) -> None:
    from playwright.async_api import async_playwright, expect

    with live_app(create_app(settings)) as api:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                               args=LAUNCH_ARGS)
            try:
                page = await browser.new_page()
                elsewhere: list[str] = []

                async def only_the_api(route: Any) -> None:
                    if route.request.url.startswith(api):
                        await route.continue_()
                    else:
                        elsewhere.append(route.request.url)
                        await route.abort()

                await page.route("**/*", only_the_api)
                await page.goto(f"{api}/docs")
                operation = page.locator(".opblock-summary-path", has_text="/api/dev/queue")
                await expect(operation.first).to_be_visible(timeout=60_000)
                assert elsewhere == []
            finally:
                await browser.close()
