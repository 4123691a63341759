"""The system under a Redis ACL user limited to its key prefix and the documented
commands (``tests/security/acl.py``, shown in docs/scaling.md, "A least-privilege Redis user").

- statically: the list covers every command BullMQ's (pinned) Lua scripts and ours call;
- in process: a campaign, its analytics, an AI job and the monitor under a user whose
  only keys are ``~{prefix}:*``, with the server's ACL LOG empty afterwards;
- a representative part of the suite (queue basics, email end to end, the engine tests
  that need no ``CLIENT KILL`` or restart) in a subprocess as that user.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.monitor import QueueMonitor
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.store import CampaignRecord
from newsletter_queue.system import System
from tests.conftest import make_settings
from tests.security.acl import (
    ACL_COMMANDS,
    TEST_ONLY_COMMANDS,
    acl_rules,
    lua_commands_used,
    setuser_line,
    unknown_variable_calls,
)
from tests.support.helpers import wait_for
from tests.support.redisserver import PrivateRedis, private_redis

REPO = Path(__file__).resolve().parents[2]
ADMIN_PW = "admin-" + uuid.uuid4().hex
SUITE = ["tests/integration/test_queue_basic.py",
         "tests/integration/email/test_campaign_e2e.py",
         # The 10,000-recipient run is a load test: it calls the same scripts and commands
         # as the smaller campaigns of the file, only 100 times as often.
         "--deselect", "tests/integration/email/test_campaign_e2e.py::"
                       "test_10000_recipients_each_get_one_personalised_message",
         "tests/integration/engine",
         "--ignore", "tests/integration/engine/test_resilience.py"]  # CLIENT KILL, restarts
# The subset takes about a minute here; a machine four times slower with busy cores must
# still finish it, and the inner deadline fires before pytest-timeout's (a clearer message).
SUITE_TIMEOUT_S = 840


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private server whose default user needs a password (the admin's)."""
    with private_redis(tmp_path / "redis", "--user", "default", "on", f">{ADMIN_PW}", "~*",
                       "&*", "+@all") as server:
        yield server


@pytest.fixture
async def admin(acl_server: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=acl_server.port, password=ADMIN_PW, decode_responses=True)
    yield client
    await client.aclose()


async def _denials(admin: aioredis.Redis) -> list[tuple[str, str]]:
    return [(e["reason"], e["object"]) for e in await admin.acl_log(count=1000)]


def test_the_list_covers_every_command_of_the_lua_scripts() -> None:
    assert unknown_variable_calls() == set()
    missing = lua_commands_used() - set(ACL_COMMANDS)
    assert missing == set(), f"add these to ACL_COMMANDS and docs/scaling.md: {sorted(missing)}"
    assert len(set(ACL_COMMANDS)) == len(ACL_COMMANDS)
    dangerous = {"flushall", "flushdb", "config", "keys", "client|kill", "debug", "shutdown",
                 "acl", "module", "scan"}
    assert dangerous.isdisjoint(ACL_COMMANDS)


def test_the_docs_show_the_acl() -> None:
    page = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
    assert setuser_line("<password>") in page


@pytest.mark.timeout(240)  # its waits add up to 150 s on a slow machine
async def test_prefix_limited_user_runs_a_campaign_analytics_ai_and_the_monitor(
    acl_server: PrivateRedis, admin: aioredis.Redis, tmp_path: Path
) -> None:
    prefix = f"nlqt-{uuid.uuid4().hex[:10]}"
    await admin.execute_command("ACL", "SETUSER", "nlq",
                                *acl_rules([f"{prefix}:*"], password="pw"))
    settings = make_settings(redis_url=f"redis://nlq:pw@127.0.0.1:{acl_server.port}/0",
                             key_prefix=prefix, state_dir=tmp_path / "state",
                             emails_per_second=100_000, emails_per_second_per_tenant=100_000)
    async with SmtpSink() as sink, QueueManager(settings) as manager:
        services = await WorkerServices(settings, smtp_url=sink.url).open()
        system = System(settings, shutdown_timeout=10)
        try:
            assert services.store is not None
            await services.store.upsert_campaign(CampaignRecord(
                tenant_id="t1", campaign_id="acl", subject="Hi {{ name }}", text="Hello"))
            workers = system.start_workers(services.registry())
            services.attach_hooks(workers)
            recipients = [{"email": f"r{i}@example.com", "name": f"R{i}"} for i in range(60)]
            await manager.schedule_batch_email_sending("acl", "t1", recipients, 20)
            await manager.schedule_email_job("transactional", {
                "campaignId": "tx", "tenantId": "t1", "recipients": [{"email": "x@example.com"}],
                "content": {"subject": "Receipt", "text": "Thanks"}})
            await manager.schedule_ai_job("subject-optimization", {
                "tenantId": "t1", "type": "subject-optimization",
                "data": {"subjects": ["Hello", "Hi there"]}})
            await manager.schedule_recurring_analytics("t1", every_ms=1000)
            await manager.schedule_email_job("no-such-processor", {
                "campaignId": "bad", "tenantId": "t1", "recipients": [{"email": "y@example.com"}]})
            await asyncio.wait_for(sink.handler.wait_for_total(61), 60)

            async def finished() -> bool:
                s = await manager.get_all_queue_stats()
                return (s["email"].completed == 4 and s["email"].failed == 1
                        and s["ai"].completed == 1 and s["analytics"].completed >= 2)

            await wait_for(finished, timeout=60, message="the jobs to finish")
            monitor = QueueMonitor(manager=manager)
            # The errors stream is written by the 'failed' hook, after BullMQ's state change.
            errors = await wait_for(monitor.get_recent_errors, timeout=30,
                                    message="the failed hook to record the error")
            assert len(errors) == 1
            assert (errors[0].name, errors[0].final) == ("no-such-processor", True)
            workers_seen = await monitor.get_workers()
            assert all(workers_seen[q] for q in ("email", "analytics", "ai"))
            report = await monitor.generate_report()
            assert report is not None
            assert len(report.recent_errors) == 1
            assert (await manager.health_check()).healthy
            assert await manager.retry_failed("email") == 1
            assert await manager.clean_queue("email", 0) != []
            await manager.pause_queue("ai")
            await manager.resume_queue("ai")
            await manager.remove_recurring_analytics("t1")
        finally:
            await system.stop()
            await services.close()
    assert await _denials(admin) == []


@pytest.mark.timeout(SUITE_TIMEOUT_S + 60)
async def test_representative_suite_passes_as_a_prefix_limited_acl_user(
    acl_server: PrivateRedis, admin: aioredis.Redis, tmp_path: Path
) -> None:
    # Every test of the suite uses its own prefix ``nlqt-<hex>`` (``{nlqt-<hex>}`` for the
    # hash-tag test); the fixtures' clean-up also needs SCAN.
    await admin.execute_command("ACL", "SETUSER", "nlq", *acl_rules(
        ["nlqt-*", "{nlqt-*"], password="pw", extra=TEST_ONLY_COMMANDS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NLQ_")}
    env.update(REDIS_URL=f"redis://nlq:pw@127.0.0.1:{acl_server.port}/0",
               TMPDIR=str(tmp_path))
    try:
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITE],
            cwd=REPO, capture_output=True, text=True, env=env, timeout=SUITE_TIMEOUT_S,
            check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"the ACL-limited suite ran past {SUITE_TIMEOUT_S}s:\n{out[-4000:]}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert "skipped" not in result.stdout
    # Nothing was refused, not even a command whose failure the client ignores.
    assert await _denials(admin) == []
    # The suite really ran on this server (it deletes its keys, so count commands): about
    # 1,050 script calls without the 10,000-recipient run; a run elsewhere would leave ~0.
    stats = await admin.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] > 500
    assert stats["cmdstat_bzpopmin"]["calls"] > 0
