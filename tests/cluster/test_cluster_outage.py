"""A Redis Cluster that goes away and comes back (its own throw-away cluster).

redis-py's cluster client reports an unreachable cluster with ``RedisClusterException``
("Redis Cluster cannot be connected …", not a ``redis.RedisError``) and a cluster without
a primary for some slot with ``ClusterDownError``: producers must turn both into our
``RedisUnavailableError`` (fast, password masked), and workers must resume by themselves.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from newsletter_queue.connection import connect, create_redis, is_cluster_outage
from newsletter_queue.engine import Job, Worker
from newsletter_queue.engine.health import is_connection_error
from newsletter_queue.errors import RedisUnavailableError
from newsletter_queue.manager import QueueManager
from tests.cluster.redcluster import LocalCluster
from tests.conftest import make_settings
from tests.support.helpers import wait_for

EMAIL = {"campaignId": "c-1", "tenantId": "t-1", "recipients": [{"email": "a@example.com"}]}


# A long connect timeout, which a refused connection must not wait for: sitting it out
# would take 10 s × 3 attempts per call (``create_redis``'s ``Retry(…, 2)``); being
# refused takes milliseconds. The bound per call is half of the slow path, far from both.
CONNECT_TIMEOUT_S = 10
FAST_S = CONNECT_TIMEOUT_S * 3 / 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_cluster_is_a_clear_masked_redis_unavailable_error() -> None:
    port = _closed_port()
    settings = make_settings(redis_url=f"redis://app:cl-pw-9@127.0.0.1:{port}/0",
                             redis_cluster=True, key_prefix="{nlqc-down}",
                             redis_connect_timeout_s=CONNECT_TIMEOUT_S)
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError) as info:
        await connect(settings)
    assert time.monotonic() - started < FAST_S
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError) as from_manager:
        await QueueManager(settings).schedule_email_job("send", EMAIL)
    assert time.monotonic() - started < FAST_S
    started = time.monotonic()
    health = await QueueManager(settings).health_check()
    assert time.monotonic() - started < FAST_S
    assert not health.healthy
    for exc in (info.value, from_manager.value):
        assert exc.url == f"redis://app:***@127.0.0.1:{port}/0"
        assert "cannot be connected" in str(exc)
        assert "cl-pw-9" not in str(exc)


async def test_producer_fails_fast_while_the_cluster_is_down_then_works_again(
    cluster: LocalCluster, tagged_prefix: str, cluster_state: Path
) -> None:
    settings = make_settings(redis_url=cluster.url, redis_cluster=True,
                             key_prefix=tagged_prefix, state_dir=cluster_state,
                             redis_connect_timeout_s=CONNECT_TIMEOUT_S)
    async with QueueManager(settings) as manager:
        await manager.schedule_email_job("send", EMAIL)
        cluster.stop()
        try:
            started = time.monotonic()
            with pytest.raises(RedisUnavailableError, match="cannot be connected"):
                await manager.schedule_email_job("send", EMAIL)
            assert time.monotonic() - started < FAST_S
            started = time.monotonic()
            with pytest.raises(RedisUnavailableError):
                await manager.get_all_queue_stats()
            assert time.monotonic() - started < FAST_S
            started = time.monotonic()
            health = await manager.health_check()
            assert time.monotonic() - started < FAST_S
            assert not health.healthy
        finally:
            cluster.start()
        # Nothing was persisted (an outage of an in-memory cluster); the same manager
        # works again without being recreated.
        job = await manager.schedule_email_job("send", EMAIL)
        assert (await manager.get_queue_stats("email")).waiting == 1
        assert job.id


@pytest.mark.timeout(300)  # the cluster's restart and the waits add up to 180 s
async def test_worker_resumes_by_itself_after_a_cluster_outage(
    cluster: LocalCluster, tagged_prefix: str, cluster_state: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="newsletter_queue")
    settings = make_settings(redis_url=cluster.url, redis_cluster=True,
                             key_prefix=tagged_prefix, state_dir=cluster_state)
    done: list[str] = []

    async def record(job: Job) -> int:
        done.append(str(job.id))
        return 1

    worker = Worker("email", record, settings=settings)
    async with QueueManager(settings) as manager:
        worker.start()
        try:
            # Explicit ids: the restarted cluster is empty, its id counter starts again.
            first = await manager.schedule_email_job("send", EMAIL, {"job_id": "before"})
            await wait_for(_has(done, first.id), timeout=30, message="the first job")
            cluster.stop()
            try:
                await wait_for(_logged(caplog), timeout=30,
                               message="the worker to notice the outage")
            finally:
                cluster.start()
            second = await manager.schedule_email_job("send", EMAIL, {"job_id": "after"})
            # Seconds here (the health probe's back-off is capped at 2 s); what is checked
            # is that the same worker resumes without a restart, not how fast.
            await wait_for(_has(done, second.id), timeout=90,
                           message="the worker to resume after the outage")
            assert worker.is_running
            # The outage went through the worker's Health (back-off, one warning), not
            # through the "unexpected error" path.
            assert worker.health is not None
            assert worker.health.outages >= 1
            unexpected = [r for r in caplog.records if "unexpected error" in r.getMessage()]
            assert unexpected == []
        finally:
            await worker.close(timeout=2)
    assert done == [first.id, second.id]


async def test_engine_treats_a_cluster_outage_as_a_connection_error(
    cluster: LocalCluster, tagged_prefix: str, cluster_state: Path
) -> None:
    settings = make_settings(redis_url=cluster.url, redis_cluster=True,
                             key_prefix=tagged_prefix, state_dir=cluster_state)
    client = create_redis(settings)
    try:
        assert await client.ping()
        cluster.stop()
        try:
            with pytest.raises(Exception) as info:  # noqa: PT011 - whatever redis-py raises
                await client.execute_command("EXISTS", f"{tagged_prefix}:x")
        finally:
            cluster.start()
    finally:
        await client.aclose()
    assert is_cluster_outage(info.value)
    assert is_connection_error(info.value)


def _has(done: list[str], job_id: str) -> Any:
    async def probe() -> bool:
        return job_id in done
    return probe


def _logged(caplog: pytest.LogCaptureFixture) -> Any:
    async def probe() -> bool:
        return any(r.levelno >= logging.WARNING for r in caplog.records)
    return probe
