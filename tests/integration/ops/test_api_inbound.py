"""``POST /api/inbound`` refuses what it cannot queue with a JSON 4xx and queues nothing:
an envelope recipient with a NUL or a line break (header injection), an empty body. (Found
by the schema fuzz test: a NUL in ``rcpt`` was a 500.)"""

from __future__ import annotations

import httpx

from newsletter_queue.manager import QueueManager


async def test_a_bad_rcpt_or_an_empty_body_is_a_4xx_and_queues_nothing(
        api_client: httpx.AsyncClient, manager: QueueManager) -> None:
    raw = b"From: MAILER-DAEMON@example.net\r\nSubject: Undelivered\r\n\r\nGone.\r\n"
    for rcpt in ("bounces+x\x00@example.com", "a\r\nBcc: evil@example.com", "x" * 999):
        r = await api_client.post("/api/inbound", params={"rcpt": rcpt}, content=raw,
                                  headers={"Content-Type": "message/rfc822"})
        assert r.status_code == 422, (rcpt[:20], r.text)
        assert "rcpt" in r.text  # the field is named
    r = await api_client.post("/api/inbound", content=b"  \r\n",
                              headers={"Content-Type": "message/rfc822"})
    assert r.status_code == 400
    assert (await manager.get_queue_stats("analytics")).waiting == 0
    ok = await api_client.post("/api/inbound", params={"rcpt": "bounces+abc@example.com"},
                               content=raw, headers={"Content-Type": "message/rfc822"})
    assert ok.status_code == 202, ok.text
    assert ok.json()["created"] is True
