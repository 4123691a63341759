"""The integration smoke (enqueue, process, monitor) on a local 3-master Redis Cluster.

Every key of a queue carries the prefix's hash tag (``{nlqc-…}``), so each queue lives
in one slot: BullMQ's multi-key Lua scripts and the bulk add's ``MULTI`` work, and the
monitor's pipelines go to one node.
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.asyncio.cluster import RedisCluster

from newsletter_queue.config import Settings
from newsletter_queue.connection import connect, create_redis
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.store import CampaignRecord, Store
from newsletter_queue.system import System
from tests.cluster.redcluster import LocalCluster
from tests.conftest import make_settings
from tests.security.acl import CLUSTER_COMMANDS, acl_rules
from tests.support.execution_log import read_records
from tests.support.helpers import wait_for, wait_for_sink_total

REPO = Path(__file__).resolve().parents[2]
FAST_MAIL = {"emails_per_second": 100_000, "emails_per_second_per_tenant": 100_000}


def cluster_settings(cluster: LocalCluster, prefix: str, state: Path, **extra: Any
                     ) -> Settings:
    return make_settings(redis_url=cluster.url, redis_cluster=True, key_prefix=prefix,
                         state_dir=state, **FAST_MAIL, **extra)


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as running:
        yield running


async def _keys_and_slots(client: RedisCluster, prefix: str) -> tuple[list[str], set[int]]:
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    slots = {int(await client.execute_command("CLUSTER KEYSLOT", k)) for k in keys[:50]}
    return keys, slots


async def test_connect_gives_a_cluster_client_on_all_three_masters(
    cluster: LocalCluster, tagged_prefix: str, cluster_state: Path
) -> None:
    settings = cluster_settings(cluster, tagged_prefix, cluster_state)
    client = await connect(settings)
    try:
        assert isinstance(client, RedisCluster)
        assert len(client.get_primaries()) == 3
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.mark.timeout(300)  # its waits add up to 190 s on a slow machine
async def test_enqueue_process_and_monitor_on_a_cluster(
    cluster: LocalCluster, tagged_prefix: str, cluster_state: Path, sink: SmtpSink
) -> None:
    settings = cluster_settings(cluster, tagged_prefix, cluster_state)
    async with QueueManager(settings) as manager:
        # --- enqueue ------------------------------------------------------------------
        tx = await manager.schedule_email_job("welcome-email", {
            "campaignId": "welcome", "tenantId": "t1",
            "recipients": [{"email": "new@example.com", "name": "New"}],
            "content": {"subject": "Welcome {{ name }}", "text": "Hi {{ name }}"}})
        recipients = [{"email": f"reader{i}@example.com", "name": f"Reader {i}"}
                      for i in range(250)]
        batches = await manager.schedule_batch_email_sending("news", "t1", recipients, 25)
        assert len(batches) == 10
        again = await manager.schedule_batch_email_sending("news", "t1", recipients, 25)
        assert [j.id for j in again] == [j.id for j in batches]  # idempotent on a cluster
        scheduler = await manager.schedule_recurring_analytics("t1", every_ms=1000)
        assert scheduler == "daily-aggregation-t1"
        ai = await manager.schedule_ai_job("subject-optimization", {
            "tenantId": "t1", "type": "subject-optimization",
            "data": {"subjects": ["Hello", "FREE!!! ACT NOW"]}})

        # --- monitor (before processing) ------------------------------------------------
        stats = await manager.get_all_queue_stats()
        assert (stats["email"].waiting, stats["email"].prioritized) == (1, 10)
        assert stats["ai"].waiting == 1
        health = await manager.health_check()
        assert health.healthy, health.error
        assert set(health.queues) == {"email", "analytics", "ai"}
        # Every key of the prefix is in one slot (the hash tag's).
        client = await manager.client()
        assert isinstance(client, RedisCluster)
        keys, slots = await _keys_and_slots(client, tagged_prefix)
        assert len(keys) > 20
        assert len(slots) == 1

        # --- process -------------------------------------------------------------------
        services = await WorkerServices(settings, smtp_url=sink.url).open()
        system = System(settings, shutdown_timeout=10)
        try:
            assert services.store is not None
            await services.store.upsert_campaign(CampaignRecord(
                tenant_id="t1", campaign_id="news", subject="News for {{ name }}",
                text="Dear {{ name }}", from_addr="News <news@example.com>"))
            workers = system.start_workers(services.registry())
            services.attach_hooks(workers)
            await wait_for_sink_total(sink.handler, 251)

            async def all_done() -> Any:
                s = await manager.get_all_queue_stats()
                return s if (s["email"].completed == 11 and s["ai"].completed == 1
                             and s["analytics"].completed >= 2) else None

            final = await wait_for(all_done, timeout=60, message="every queue to finish")
        finally:
            await system.stop()
            await services.close()

        # --- results -------------------------------------------------------------------
        assert sink.handler.duplicates() == 0
        assert len(sink.handler.counts) == 251
        assert final["email"].failed == final["ai"].failed == final["analytics"].failed == 0
        done_tx = await manager.get_job("email", tx.id)
        assert done_tx is not None
        assert done_tx.return_value["sent"] == 1
        done_ai = await manager.get_job("ai", ai.id)
        assert done_ai is not None
        assert done_ai.state == "completed"
        completed = await manager.get_jobs("analytics", "completed", 0, 50)
        names = collections.Counter(j.name for j in completed)
        assert names["campaign-complete"] == 1  # exactly one, across 10 batches
        assert names["daily-aggregation"] >= 1  # the job scheduler ran on the cluster
        store = Store.from_settings(settings)
        await store.init()
        try:
            row = await store.get_campaign_stats("t1", "news")
        finally:
            await store.close()
        assert row is not None
        assert row.sent == 250
        assert (await manager.health_check()).healthy
        await manager.remove_recurring_analytics("t1")


def _spawn_worker(overrides: dict[str, Any], queues: str, ledger_dir: Path
                  ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.worker_proc", json.dumps(overrides), queues,
         str(ledger_dir)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.timeout(480)  # its waits add up to 330 s on a slow machine
async def test_four_worker_processes_on_two_queues_run_every_job_once(
    cluster: LocalCluster, tagged_prefix: str, cluster_state: Path, sink: SmtpSink,
    tmp_path: Path,
) -> None:
    settings = cluster_settings(cluster, tagged_prefix, cluster_state)
    store = Store.from_settings(settings)
    await store.init()
    await store.upsert_campaign(CampaignRecord(
        tenant_id="t2", campaign_id="big", subject="S {{ name }}", text="Dear {{ name }}"))
    await store.close()
    ledger_dir = tmp_path / "ledger"
    ledger_dir.mkdir()
    overrides = {"redis_url": cluster.url, "redis_cluster": True,
                 "key_prefix": tagged_prefix, "state_dir": str(cluster_state),
                 "smtp_url": sink.url, **FAST_MAIL}
    procs = [_spawn_worker(overrides, "email,ai", ledger_dir) for _ in range(4)]
    try:
        def ledger() -> list[dict[str, Any]]:
            return read_records(ledger_dir)[0]

        async def all_ready() -> bool:
            for proc in procs:
                if proc.poll() is not None:
                    assert proc.stderr is not None
                    pytest.fail(f"a worker process exited: {proc.stderr.read().decode()}")
            return sum(1 for row in ledger() if row["e"] == "ready") == 4

        await wait_for(all_ready, timeout=60, message="4 worker processes to start")
        async with QueueManager(settings) as manager:
            recipients = [{"email": f"r{i}@example.com", "name": f"R{i}"}
                          for i in range(600)]
            email_jobs = await manager.schedule_batch_email_sending("big", "t2", recipients,
                                                                    10)
            ai_jobs = [await manager.schedule_ai_job("subject-optimization", {
                "tenantId": "t2", "type": "subject-optimization",
                "data": {"subjects": [f"Subject {i}", "Another one"]}}) for i in range(20)]
            await wait_for_sink_total(sink.handler, 600)

            async def finished() -> bool:
                s = await manager.get_all_queue_stats()
                return s["email"].completed == 60 and s["ai"].completed == 20

            await wait_for(finished, timeout=60, message="all jobs to complete")
            stats = await manager.get_all_queue_stats()
            # The last batch enqueued exactly one campaign-complete job (no worker here
            # processes analytics, so it waits).
            assert stats["analytics"].waiting == 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(proc.wait, 30) for proc in procs]
        errors = [p.stderr.read().decode(errors="replace") if p.stderr else "" for p in procs]
        for proc in procs:
            if proc.stderr is not None:
                proc.stderr.close()
    assert codes == [0, 0, 0, 0], errors

    rows = ledger()
    active = collections.Counter((r["q"], r["j"]) for r in rows if r["e"] == "start")
    completed = collections.Counter((r["q"], r["j"]) for r in rows if r["e"] == "done")
    expected = {("email", j.id) for j in email_jobs} | {("ai", j.id) for j in ai_jobs}
    assert set(active) == set(completed) == expected
    assert set(active.values()) == {1}  # every job executed exactly once …
    assert set(completed.values()) == {1}  # … and completed once
    pids = {r["p"] for r in rows if r["e"] == "start"}
    assert len(pids) >= 2, "the jobs were not shared between the processes"
    assert sink.handler.duplicates() == 0
    assert len(sink.handler.counts) == 600
    assert stats["email"].failed == stats["ai"].failed == 0


@pytest.mark.timeout(240)  # its waits add up to 130 s on a slow machine
async def test_prefix_limited_acl_user_on_every_node(
    cluster: LocalCluster, tagged_prefix: str, cluster_state: Path, sink: SmtpSink
) -> None:
    """The documented ACL plus +cluster|slots +command, set on each node (ACLs are
    per node): enqueue, process and monitor, with every node's ACL LOG empty."""
    admins = [aioredis.Redis(port=port, decode_responses=True) for port in cluster.ports]
    try:
        for admin in admins:
            await admin.execute_command("ACL", "SETUSER", "nlq", *acl_rules(
                [f"{tagged_prefix}:*"], password="pw", extra=CLUSTER_COMMANDS))
            await admin.execute_command("ACL", "LOG", "RESET")
        settings = cluster_settings(cluster, tagged_prefix, cluster_state).model_copy(
            update={"redis_url": SecretStr(f"redis://nlq:pw@127.0.0.1:{cluster.ports[1]}/0")})
        async with QueueManager(settings) as manager:
            services = await WorkerServices(settings, smtp_url=sink.url).open()
            system = System(settings, shutdown_timeout=10)
            try:
                await manager.schedule_email_job("transactional", {
                    "campaignId": "tx", "tenantId": "t3",
                    "recipients": [{"email": f"u{i}@example.com"} for i in range(5)],
                    "content": {"subject": "Hi", "text": "Hello"}})
                await manager.schedule_ai_job("subject-optimization", {
                    "tenantId": "t3", "type": "subject-optimization",
                    "data": {"subjects": ["Hello"]}})
                workers = system.start_workers(services.registry())
                services.attach_hooks(workers)
                await asyncio.wait_for(sink.handler.wait_for_total(5), 60)

                async def finished() -> bool:
                    s = await manager.get_all_queue_stats()
                    return s["email"].completed == 1 and s["ai"].completed == 1

                await wait_for(finished, timeout=60, message="both jobs to complete")
                assert (await manager.health_check()).healthy
            finally:
                await system.stop()
                await services.close()
        for admin in admins:
            assert await admin.acl_log() == []
    finally:
        for admin in admins:
            await admin.aclose()


async def test_blocking_client_waits_beyond_the_default_socket_timeout_on_a_cluster(
    cluster: LocalCluster, tagged_prefix: str, cluster_state: Path
) -> None:
    """The workers' marker wait (BZPOPMIN) on a cluster client is not cut at 5 s."""
    settings = cluster_settings(cluster, tagged_prefix, cluster_state)
    blocking = create_redis(settings, "blocking")
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await blocking.bzpopmin(f"{tagged_prefix}:never-filled", 6)
        elapsed = loop.time() - started
    finally:
        await blocking.aclose()
    assert result is None
    assert elapsed >= 5.9
