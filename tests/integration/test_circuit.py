"""The Redis-backed circuit breaker: open after K failures, half-open probe, close."""

from __future__ import annotations

import redis.asyncio as aioredis

from newsletter_queue.services.circuit import CircuitBreaker


async def test_opens_after_threshold_and_closes_after_a_good_probe(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    breaker = CircuitBreaker(redis_client, prefix, "smtp", threshold=3, cooldown_ms=150)
    assert (await breaker.allow()).allowed
    assert await breaker.record_failure() == 0
    assert await breaker.record_failure() == 0
    assert await breaker.record_failure() == 150  # third consecutive failure opens it
    decision = await breaker.allow()
    assert not decision.allowed
    assert decision.state == "open"
    assert 0 < decision.retry_after_ms <= 150
    status = await breaker.status()
    assert (status.state, status.failures, status.opened_count) == ("open", 3, 1)

    # After the cool-down exactly one probe is let through (half-open).
    while not (probe := await breaker.allow()).allowed:
        assert probe.retry_after_ms <= 150
    assert probe.state == "half-open"
    second = await breaker.allow()
    assert not second.allowed
    assert second.state == "half-open"
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
