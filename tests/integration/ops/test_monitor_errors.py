"""The monitor reports Redis failing as "Redis unreachable", and only that.

An unknown queue (the caller's mistake) and a full connection pool (this process is
overloaded; Redis answers well) are not outages: they reach the caller as what they are,
so the API answers them 400 and 503 *overloaded* instead of painting every queue red.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError

from newsletter_queue.config import Settings
from newsletter_queue.connection import PoolExhaustedError
from newsletter_queue.errors import (
    OverloadedError,
    QueueNotFoundError,
    RedisUnavailableError,
    RedisVersionError,
)
from newsletter_queue.manager import QueueManager
from newsletter_queue.monitor import QueueMonitor, redis_down
from tests.conftest import make_settings


async def test_a_queue_the_manager_does_not_know_is_an_error_not_redis_unreachable(
        settings: Settings) -> None:
    # The monitor's queue table has "ai"; the manager it shares serves a table without it.
    narrow = settings.model_copy(update={"queues": {
        name: config for name, config in settings.queues.items() if name != "ai"}})
    async with QueueManager(narrow) as manager:
        monitor = QueueMonitor(settings, manager=manager)
        with pytest.raises(QueueNotFoundError, match="'ai'"):
            await monitor.get_queue_health("ai")
        with pytest.raises(QueueNotFoundError, match="'ai'"):
            await monitor.generate_report()
        # Redis itself answers, and the monitor says so for the queues both know.
        assert (await monitor.get_redis_info()).ok
        assert (await monitor.get_queue_health("email")).status == "healthy"


async def test_a_full_pool_is_overload_not_redis_unreachable(
        redis_url: str, prefix: str, tmp_path: Path, redis_client: aioredis.Redis) -> None:
    # One pooled connection, taken away below; the pool wait (1 s) ends before the
    # monitor's own deadline on INFO (5 s), so the pool's verdict is what comes back.
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path,
                             redis_max_connections=1, redis_command_timeout_s=1.0,
                             redis_connect_timeout_s=5.0)
    async with QueueManager(settings) as manager:
        monitor = QueueMonitor(settings, manager=manager)
        pool = (await manager.client()).connection_pool  # type: ignore[union-attr]
        taken = await pool.get_connection()
        try:
            with pytest.raises(PoolExhaustedError):
                await monitor.get_redis_info()
            with pytest.raises(PoolExhaustedError):
                await monitor.get_queue_health("email")
            with pytest.raises(PoolExhaustedError):
                await monitor.generate_report()
        finally:
            await pool.release(taken)
        assert (await monitor.get_redis_info()).ok
        assert (await monitor.generate_report()).redis.ok


@pytest.mark.parametrize(("exc", "down"), [
    (RedisUnavailableError("redis://x", "refused"), True),
    (RedisVersionError("redis://x", "5.0.0", "6.2.0"), True),  # reachable, not usable
    (RedisConnectionError("reset"), True),
    (NoPermissionError("NOPERM info"), True),
    (ConnectionRefusedError(), True),
    (TimeoutError(), True),
    (PoolExhaustedError("all 1 busy"), False),
    (OverloadedError("all 1 busy"), False),
    (QueueNotFoundError("sms", ["email"]), False),
    (ValueError("a bug"), False),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_what_counts_as_redis_down(exc: BaseException, down: bool) -> None:
    assert redis_down(exc) is down
