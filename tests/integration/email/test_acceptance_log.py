"""``AcceptanceLog``: accepted messages reach the ledger, many per write, on a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from newsletter_queue.services.send_ledger import AcceptanceLog, CampaignLedger


class CountedPipelines:
    """The real client, counting the pipelines the log opens (one per write)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.opened = 0

    def pipeline(self, **kwargs: Any) -> Any:
        self.opened += 1
        return self.client.pipeline(**kwargs)


async def test_concurrent_acceptances_share_writes_and_all_land(
        redis_client: aioredis.Redis, prefix: str) -> None:
    counted = CountedPipelines(redis_client)
    log = AcceptanceLog(counted)  # type: ignore[arg-type]
    june = CampaignLedger(redis_client, prefix, "t1", "june")
    july = CampaignLedger(redis_client, prefix, "t1", "july")
    emails = [f"reader{i}@example.com" for i in range(200)]

    await asyncio.gather(*(log.mark_sent(ledger.key, email)
                           for email in emails for ledger in (june, july)))

    for ledger in (june, july):
        values = await redis_client.hgetall(ledger.key)
        assert sorted(values) == sorted(emails)
        assert all(value.startswith("s|") for value in values.values())
        assert (await ledger.counts()).sent == len(emails)
    # 400 acceptances made before the first write starts: that write carries them all.
    assert counted.opened == 1


async def test_one_acceptance_alone_is_written_at_once(
        redis_client: aioredis.Redis, prefix: str) -> None:
    log = AcceptanceLog(redis_client)
    ledger = CampaignLedger(redis_client, prefix, "t1", "june")
    await log.mark_sent(ledger.key, "ann@example.com")
    assert (await redis_client.hget(ledger.key, "ann@example.com") or "").startswith("s|")


async def test_a_failed_write_fails_every_acceptance_it_carried(prefix: str) -> None:
    unreachable = aioredis.Redis(port=1, socket_connect_timeout=1, decode_responses=True)
    log = AcceptanceLog(unreachable)
    try:
        results = await asyncio.gather(
            *(log.mark_sent(f"{prefix}:ledger", f"r{i}@example.com") for i in range(5)),
            return_exceptions=True)
    finally:
        await unreachable.aclose()
    assert len(results) == 5
    assert all(isinstance(r, RedisConnectionError | OSError) for r in results), results


async def test_a_cancelled_caller_does_not_stop_the_others(
        redis_client: aioredis.Redis, prefix: str) -> None:
    log = AcceptanceLog(redis_client)
    ledger = CampaignLedger(redis_client, prefix, "t1", "june")
    first = asyncio.create_task(log.mark_sent(ledger.key, "first@example.com"))
    cancelled = asyncio.create_task(log.mark_sent(ledger.key, "cancelled@example.com"))
    last = asyncio.create_task(log.mark_sent(ledger.key, "last@example.com"))
    await asyncio.sleep(0)  # all three queued
    cancelled.cancel()
    await asyncio.wait_for(asyncio.gather(first, last), 10)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    # Accepted is accepted: the cancelled caller's record is written too.
    assert set(await redis_client.hkeys(ledger.key)) == {
        "first@example.com", "cancelled@example.com", "last@example.com"}
