"""Fixtures of the browser tests that drive campaigns: real workers (``email`` and
``analytics``) on the real SMTP sink, the app served on loopback, and a Chromium page.

A test module takes them with ``from tests.browser.campaign_fixtures import *`` (they are
pytest fixtures: importing them into the module registers them there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from newsletter_queue.config import Settings
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.system import System
from tests.browser.test_dashboard import CHROMIUM, EXPECT_TIMEOUT_MS, LAUNCH_ARGS, serve

__all__ = ["browser_timezone", "page", "server", "services", "sink"]


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as running:
        yield running


@pytest.fixture
async def services(settings: Settings, sink: SmtpSink) -> AsyncIterator[WorkerServices]:
    """Workers whose send rates never hold a test back."""
    fast = settings.model_copy(update={"emails_per_second": 100_000,
                                       "emails_per_second_per_tenant": 100_000})
    system = System(fast, shutdown_timeout=10)
    opened = await WorkerServices(fast, smtp_url=sink.url).open()
    workers = system.start_workers(opened.registry(), ["email", "analytics"])
    opened.attach_hooks(workers)
    system.close_later(opened.close)
    yield opened
    await system.stop()


@pytest.fixture
async def server(settings: Settings, manager: QueueManager) -> AsyncIterator[str]:
    async with serve(settings, manager) as url:
        yield url


@pytest.fixture
def browser_timezone() -> str | None:
    """The page's time zone (``None``: the machine's); a module overrides this fixture
    to test local times."""
    return None


@pytest.fixture
async def page(browser_timezone: str | None) -> AsyncIterator[Any]:
    """A Chromium page (in ``browser_timezone``); script errors, and any hostile string
    that ran, fail the test."""
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                           args=LAUNCH_ARGS)
        try:
            tab = await browser.new_page(viewport={"width": 1280, "height": 900},
                                         timezone_id=browser_timezone)
            errors: list[str] = []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            yield tab
            # A refused fetch (4xx) logs "status of 4…"; any script error would fail here.
            assert [e for e in errors if "status of 4" not in e] == []
            assert await tab.evaluate("window.__pwned") is None
        finally:
            await browser.close()
