"""Redis with a password and with a prefix-limited ACL user: clear, masked errors.

Private servers only (``requirepass`` / ``--user``); the shared test Redis is untouched.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from newsletter_queue.connection import connect
from newsletter_queue.engine import Worker
from newsletter_queue.errors import RedisUnavailableError
from newsletter_queue.manager import QueueManager
from tests.conftest import make_settings
from tests.security.acl import acl_rules
from tests.support.helpers import wait_for
from tests.support.redisserver import private_redis

PASSWORD = "redis-Pw-7q2LxV9"
WRONG = "not-the-Pw-4kD81"
EMAIL = {"campaignId": "c-1", "tenantId": "t-1", "recipients": [{"email": "a@example.com"}]}
# A refused password is answered at once. Treated as an outage it would be retried, each
# attempt bounded by the connect timeout: with this long one, 10 s × 3 attempts. The
# fast-fail bounds are half of that, far from both.
CONNECT_TIMEOUT_S = 10
FAST_S = CONNECT_TIMEOUT_S * 3 / 2


async def test_no_password_says_authentication_is_required(tmp_path: Path) -> None:
    with private_redis(tmp_path, "--requirepass", PASSWORD) as server:
        started = time.monotonic()
        with pytest.raises(RedisUnavailableError) as info:
            await connect(make_settings(redis_url=server.url,
                                        redis_connect_timeout_s=CONNECT_TIMEOUT_S))
        assert time.monotonic() - started < FAST_S  # (not counting the server's stop)
    message = str(info.value)
    assert "authentication failed" in message
    assert "requires a password and the URL gives none" in message
    assert info.value.url == server.url


async def test_wrong_password_is_an_authentication_error_with_the_password_masked(
    tmp_path: Path,
) -> None:
    with private_redis(tmp_path, "--requirepass", PASSWORD) as server:
        url = f"redis://:{WRONG}@127.0.0.1:{server.port}/0"
        with pytest.raises(RedisUnavailableError) as info:
            await connect(make_settings(redis_url=url))
        # The producer side says the same, fast.
        manager = QueueManager(make_settings(redis_url=url, key_prefix="nlqt-auth",
                                             redis_connect_timeout_s=CONNECT_TIMEOUT_S))
        started = time.monotonic()
        with pytest.raises(RedisUnavailableError) as from_manager:
            await manager.schedule_email_job("send", EMAIL)
        assert time.monotonic() - started < FAST_S
        await manager.close()
    for exc in (info.value, from_manager.value):
        assert "authentication failed: the username or password was refused" in str(exc)
        assert exc.url == f"redis://:***@127.0.0.1:{server.port}/0"
        assert WRONG not in str(exc)
        assert WRONG not in repr(exc)


async def test_right_password_works(tmp_path: Path) -> None:
    with private_redis(tmp_path, "--requirepass", PASSWORD) as server:
        url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        async with QueueManager(make_settings(redis_url=url, key_prefix="nlqt-auth")) as m:
            job = await m.schedule_email_job("send", EMAIL)
            assert (await m.get_queue_stats("email")).waiting == 1
            assert PASSWORD not in m.url
        assert job.id


async def test_worker_with_a_wrong_password_backs_off_and_logs_a_masked_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker does not crash or spin on an auth failure: it waits with backoff (the
    password may be fixed server-side) and says why, without the password."""
    caplog.set_level(logging.DEBUG)
    with private_redis(tmp_path, "--requirepass", PASSWORD) as server:
        url = f"redis://:{WRONG}@127.0.0.1:{server.port}/0"
        worker = Worker("email", _never, settings=make_settings(redis_url=url,
                                                                key_prefix="nlqt-auth"))
        worker.start()
        try:
            async def auth_failure_logged() -> bool:
                return any("authentication failed" in r.getMessage() for r in caplog.records)

            await wait_for(auth_failure_logged, timeout=30,
                           message="the worker to log the auth failure")
            started = time.monotonic()
            health = worker.health
            assert health is not None

            async def four_probes() -> bool:
                return health.probes >= 4

            await wait_for(four_probes, timeout=30, message="four reconnection probes")
            # Probes back off exponentially (0.1, 0.2, 0.4, 0.8 s ± 20 %): no tight loop.
            assert time.monotonic() - started >= 0.9
            assert worker.is_running
        finally:
            await worker.close(timeout=2)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert WRONG not in logged
    assert f"redis://:***@127.0.0.1:{server.port}/0" in logged


async def test_acl_user_cannot_reach_keys_outside_its_prefix(tmp_path: Path) -> None:
    rules = acl_rules(["nlqt-mine:*"], password="pw")
    with private_redis(tmp_path, "--user", "nlq", *rules) as server:
        url = f"redis://nlq:pw@127.0.0.1:{server.port}/0"
        async with QueueManager(make_settings(redis_url=url, key_prefix="nlqt-mine")) as m:
            await m.schedule_email_job("send", EMAIL)
            assert (await m.get_queue_stats("email")).waiting == 1
        async with QueueManager(make_settings(redis_url=url, key_prefix="nlqt-other")) as m:
            with pytest.raises(NoPermissionError, match="no permissions to access"):
                await m.schedule_email_job("send", EMAIL)
        admin = aioredis.Redis(port=server.port, decode_responses=True)  # default user
        try:
            assert [k async for k in admin.scan_iter("nlqt-other*")] == []
            denied = await admin.acl_log()
            assert {e["reason"] for e in denied} == {"key"}
            # Dangerous commands are refused outright.
            limited = aioredis.Redis.from_url(url, decode_responses=True)
            for command in (("FLUSHALL",), ("CONFIG", "SET", "maxmemory", "1"),
                            ("KEYS", "*"), ("CLIENT", "KILL", "ID", "1")):
                with pytest.raises(NoPermissionError):
                    await limited.execute_command(*command)
            await limited.aclose()
        finally:
            await admin.aclose()


async def _never(job: object) -> None:
    raise AssertionError("no job should reach this worker")
