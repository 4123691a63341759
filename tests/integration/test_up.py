"""The README's run command on a machine with no Redis configured: `up --demo` starts the
embedded server, the dev SMTP sink, the workers and the dashboard; the demo campaign is
delivered, its stats computed; Ctrl-C/SIGTERM stops everything and leaves nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from newsletter_queue.embedded import _pid_alive
from newsletter_queue.services.store import Store

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _poll(url: str, check: object, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2).json()
            if check(last):  # type: ignore[operator]
                return last
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    pytest.fail(f"timed out polling {url}; last answer: {last!r}")


@pytest.mark.timeout(400)  # its waits add up to 280 s on a slow machine
def test_up_demo_delivers_the_campaign_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NLQ_", "REDIS_URL", "SMTP_URL", "DATABASE_URL"))}
    env.update(NLQ_STATE_DIR=str(tmp_path), NLQ_DEV_SMTP_PORT="0",
               NLQ_REDIS_PROBE_URL=f"redis://127.0.0.1:{_free_port()}")
    proc = subprocess.Popen([str(BIN / "newsletter-queue"), "up", "--demo", "--port",
                             str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _poll(f"{base}/healthz", lambda _: True, 60)
        dashboard = httpx.get(f"{base}/dashboard", timeout=30)
        assert dashboard.status_code == 200
        mail = _poll(f"{base}/api/dev/mail?limit=200",
                     lambda m: len(m["messages"]) >= 200, 60)
        assert isinstance(mail, dict)
        rcpts = {r for m in mail["messages"] for r in m["rcpt_tos"]}
        assert len(rcpts) == 200  # every demo reader got the campaign once
        stats = _poll(f"{base}/api/dev/queue?action=stats",
                      lambda s: s["analytics"]["completed"] >= 1
                      and s["email"]["completed"] == 4, 60)
        assert isinstance(stats, dict)
        # The records: every delivery and the campaign-complete stats row.
        assert asyncio.run(_demo_stats(tmp_path)) == (200, 0, 0)
        # Sent through manager.campaigns: the dashboard's Campaigns panel lists it.
        listed = _poll(f"{base}/api/tenants/demo-tenant/campaigns",
                       lambda p: p["total"] == 1
                       and _numbers(p["campaigns"][0])["state"] == "completed", 60)
        assert isinstance(listed, dict)
        demo = listed["campaigns"][0]
        assert demo["campaign_id"].startswith("welcome-demo-")
        assert (_numbers(demo)["sent"], _numbers(demo)["pending"]) == (200, 0)
        state = json.loads((tmp_path / "redis" / "server.json").read_text())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "started embedded" in err
    assert "dashboard: http://127.0.0.1" in err
    assert "stopped." in err
    deadline = time.monotonic() + 10
    while _pid_alive(int(state["pid"])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(int(state["pid"])), "the embedded Redis outlived `up`"


def _numbers(item: dict[str, Any]) -> dict[str, Any]:
    """A listed campaign's status (nested under "status", or the item itself)."""
    return item.get("status") or item  # type: ignore[no-any-return]


async def _demo_stats(state_dir: Path) -> tuple[int, int, int]:
    async with Store(f"sqlite+aiosqlite:///{state_dir / 'newsletter-queue.sqlite3'}"
                     ) as store:
        today = datetime.now(UTC).date()
        campaigns = [c for c in await store.campaigns_active_on("demo-tenant", today)
                     if c.startswith("welcome-demo-")]
        assert len(campaigns) == 1
        row = await store.get_campaign_stats("demo-tenant", campaigns[0])
        assert row is not None
        return row.sent, row.failed, row.bounced
