"""The dashboard in a real browser: headless Chromium (Debian's package) via Playwright,
against the app served by uvicorn on a free loopback port and a real Redis.

Nothing is downloaded: Chromium is ``/usr/bin/chromium``; without it the test skips and
says why. Screenshots go to ``test-output/screenshots/`` (gitignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import redis.asyncio as aioredis
import uvicorn

from newsletter_queue.api import create_app
from newsletter_queue.config import Settings
from newsletter_queue.engine import Worker
from newsletter_queue.manager import QueueManager
from newsletter_queue.monitor import MonitorRecorder
from newsletter_queue.services.sink import SmtpSink
from tests.conftest import make_settings
from tests.support.helpers import wait_for

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
STATES = ("waiting", "prioritized", "active", "delayed", "completed", "failed")
# The page polls every 2 s; Playwright's default 5 s for an expectation is two polls, too
# few for a slow, busy machine. The expectations still fail, only later.
EXPECT_TIMEOUT_MS = 20_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and shutil.which("chromium") is None,
    reason="Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")


@contextlib.asynccontextmanager
async def serve(settings: Settings, manager: QueueManager) -> AsyncIterator[str]:
    """The app served by uvicorn on a free loopback port; yields its base URL."""
    app = create_app(settings, manager=manager)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            access_log=False, lifespan="on")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    await wait_for(lambda: _started(srv, task), timeout=30, message="uvicorn to start")
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@pytest.fixture
async def server(settings: Settings, manager: QueueManager) -> AsyncIterator[str]:
    async with serve(settings, manager) as url:
        yield url


async def _started(srv: uvicorn.Server, task: asyncio.Task[Any]) -> bool:
    if task.done():
        task.result()
    return srv.started


async def _fail_a_job(manager: QueueManager, settings: Settings,
                      client: aioredis.Redis) -> Worker:
    await manager.schedule_ai_job("subject-optimization", {
        "tenantId": "acme", "type": "subject-optimization", "data": {"subjects": ["Hi"]}},
        {"attempts": 1, "job_id": "doomed-job"})

    async def explode(job: Any) -> None:
        raise ValueError("boom: the provider refused the prompt")

    worker = Worker("ai", explode, settings=settings, metrics_max_data_points=60)
    MonitorRecorder(client, settings).attach([worker])
    worker.start()

    async def failed() -> bool:
        return (await manager.get_queue_stats("ai")).failed == 1

    await wait_for(failed, timeout=30, message="the AI job to fail")
    return worker


async def _deliver_mail(settings: Settings, client: aioredis.Redis) -> None:
    sink = await SmtpSink("127.0.0.1", 0, redis=client, key_prefix=settings.key_prefix).start()
    try:
        message = EmailMessage()
        message["From"] = "Demo <news@demo.example>"
        message["To"] = "reader1@demo.example"
        message["Subject"] = "Welcome to the newsletter, Reader 1!"
        message["Message-ID"] = "<demo-1@demo.example>"
        message.set_content("Hello Reader 1")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=sink.port, timeout=5)
    finally:
        await sink.stop()


@pytest.mark.timeout(300)  # about 5 s here; a slow machine, and one expectation's wait
async def test_dashboard_shows_redis_and_steers_the_queues(
        server: str, manager: QueueManager, settings: Settings,
        redis_client: aioredis.Redis) -> None:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)

    await manager.schedule_batch_email_sending(
        "spring", "acme", [{"email": f"r{i}@example.com"} for i in range(5)], 2)
    for i in range(4):
        await manager.schedule_analytics_job("campaign-complete", {
            "campaignId": f"c{i}", "tenantId": "acme", "eventType": "campaign-complete"},
            {"delay": 3_600_000} if i == 0 else None)
    worker = await _fail_a_job(manager, settings, redis_client)
    await _deliver_mail(settings, redis_client)
    SHOTS.mkdir(parents=True, exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                           args=LAUNCH_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            console_errors: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text)
                    if m.type == "error" else None)
            await page.goto(f"{server}/dashboard")

            # Counts shown are the counts in Redis.
            stats = await manager.get_all_queue_stats()
            for queue, s in stats.items():
                for state in STATES:
                    await expect(page.get_by_test_id(f"count-{queue}-{state}")).to_have_text(
                        str(getattr(s, state)))
            assert stats["email"].prioritized == 3
            assert stats["analytics"].delayed == 1
            await expect(page.locator("#workers")).to_contain_text("ai")

            # Captured dev mail is listed.
            await expect(page.get_by_test_id("mail-item").first).to_contain_text(
                "Welcome to the newsletter, Reader 1!")

            # The failed job's stack trace opens in the drawer.
            await page.select_option("#job-queue", "ai")
            await page.get_by_role("button", name="Open job doomed-job").click()
            drawer = page.get_by_role("dialog", name="Job doomed-job (ai)")
            await expect(drawer).to_be_visible()
            await expect(drawer.get_by_test_id("stacktrace").first).to_contain_text(
                "ValueError: boom: the provider refused the prompt")
            await page.screenshot(path=str(SHOTS / "dashboard-drawer-1280x800.png"))
            await page.keyboard.press("Escape")
            await expect(drawer).to_be_hidden()

            # Pausing from the page (after its confirmation) pauses the queue in Redis.
            await page.get_by_test_id("pause-email").click()
            confirm = page.locator("#confirm")
            await expect(confirm).to_be_visible()
            await expect(confirm).to_contain_text("Pause the email queue?")
            await confirm.get_by_role("button", name="Confirm").click()
            await wait_for(lambda: manager.is_paused("email"), timeout=30,
                           message="email paused")
            await expect(page.get_by_test_id("paused-email")).to_be_visible()
            await expect(page.get_by_test_id("health-email")).to_have_text("warning")
            await expect(page.get_by_test_id("resume-email")).to_be_visible()
            await page.screenshot(path=str(SHOTS / "dashboard-1280x800.png"), full_page=False)

            # Cancelling the confirmation changes nothing.
            await page.get_by_test_id("resume-email").click()
            await confirm.get_by_role("button", name="Cancel").click()
            assert await manager.is_paused("email")

            await page.set_viewport_size({"width": 390, "height": 844})
            await expect(page.get_by_test_id("resume-email")).to_be_visible()
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"page is {overflow}px wider than a phone screen"
            await page.screenshot(path=str(SHOTS / "dashboard-390x844.png"))
            await page.screenshot(path=str(SHOTS / "dashboard-390x844-full.png"),
                                  full_page=True)
            assert console_errors == []
        finally:
            await browser.close()
            await worker.close(2)
    assert (SHOTS / "dashboard-1280x800.png").stat().st_size > 10_000


@pytest.mark.timeout(300)  # a slow machine's browser start, and one expectation's wait
async def test_dashboard_asks_for_the_configured_token_before_changing_anything(
        redis_url: str, prefix: str, tmp_path: Path, redis_client: aioredis.Redis) -> None:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)

    settings = make_settings(redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path,
                             api_token="dash-token-123")
    async with QueueManager(settings) as manager, serve(settings, manager) as url, \
            async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                           args=LAUNCH_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"{url}/dashboard")
            await page.get_by_test_id("pause-ai").click()
            await page.locator("#confirm").get_by_role("button", name="Confirm").click()
            token = page.locator("#token-dialog")
            await expect(token).to_be_visible()
            assert not await manager.is_paused("ai")  # refused (401) until the token is given
            await token.get_by_label("Token").fill("dash-token-123")
            await token.get_by_role("button", name="Save").click()
            await wait_for(lambda: manager.is_paused("ai"), timeout=30, message="ai paused")
            await expect(page.get_by_test_id("resume-ai")).to_be_visible()
        finally:
            await browser.close()
