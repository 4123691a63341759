"""The Redis-backed circuit breaker: open after K failures, half-open probe, close."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from newsletter_queue.services.circuit import CircuitBreaker
from tests.support.helpers import wait_for

# Long enough that the checks of the open state run inside it even on a slow, busy
# machine (the test waits it out once).
COOLDOWN_MS = 2000


async def test_opens_after_threshold_and_closes_after_a_good_probe(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    breaker = CircuitBreaker(redis_client, prefix, "smtp", threshold=3,
                             cooldown_ms=COOLDOWN_MS)
    assert (await breaker.allow()).allowed
    assert await breaker.record_failure() == 0
    assert await breaker.record_failure() == 0
    # The third consecutive failure opens it.
    assert await breaker.record_failure() == COOLDOWN_MS
    decision = await breaker.allow()
    assert not decision.allowed
    assert decision.state == "open"
    assert 0 < decision.retry_after_ms <= COOLDOWN_MS
    status = await breaker.status()
    assert (status.state, status.failures, status.opened_count) == ("open", 3, 1)

    # After the cool-down exactly one probe is let through (half-open).
    async def let_through() -> Any:
        probe = await breaker.allow()
        assert probe.allowed or 0 < probe.retry_after_ms <= COOLDOWN_MS
        return probe if probe.allowed else None

    probe = await wait_for(let_through, timeout=COOLDOWN_MS / 1000 + 30,
                           message="the cool-down to end")
    assert probe.state == "half-open"
    second = await breaker.allow()
    assert not second.allowed
    assert second.state == "half-open"
    # While the probe runs, the others are told to ask again soon (probe_poll_ms), not
    # to wait out the probe's whole TTL (30 s): the queue they pause would stay paused
    # that long after the probe succeeded.
    assert 0 < second.retry_after_ms <= breaker.probe_poll_ms < breaker.probe_ttl_ms
    assert await breaker.record_success() is True
    assert (await breaker.status()).state == "closed"
    assert (await breaker.allow()).allowed


async def test_failed_probe_reopens_and_success_resets_the_count(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    breaker = CircuitBreaker(redis_client, prefix, "ai", threshold=2, cooldown_ms=100)
    await breaker.record_failure()
    await breaker.record_success()  # not consecutive any more
    assert await breaker.record_failure() == 0
    assert await breaker.record_failure() == 100
    while not (await breaker.allow()).allowed:
        pass
    assert await breaker.record_failure() == 100  # the probe failed: open again
    status = await breaker.status()
    assert (status.state, status.opened_count) == ("open", 2)


async def test_state_is_shared_between_instances(redis_client: aioredis.Redis,
                                                 prefix: str) -> None:
    one = CircuitBreaker(redis_client, prefix, "smtp", threshold=1, cooldown_ms=60_000)
    other = CircuitBreaker(redis_client, prefix, "smtp", threshold=1, cooldown_ms=60_000)
    await one.record_failure()
    assert not (await other.allow()).allowed
    await other.reset()
    assert (await one.allow()).allowed
