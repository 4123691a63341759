"""No secret in logs, reprs, job data, stored records, API or CLI output.

One run of the whole system with every secret set — a Redis password (private server
with ``requirepass``), an SMTP user and password (the dev sink requiring AUTH), an AI key
(the fake OpenAI server, which receives it and, on purpose, echoes it back in an error
message), an API token, a DKIM private key (signing every message) — plus a wrong SMTP
password and a wrong Redis password on the error paths. Afterwards every log record
(DEBUG and up), every key and value in Redis, the SQLite file, the reprs of the objects
that hold secrets, the dev API's answers and the CLI's output are scanned for each
secret and its base64 forms.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from newsletter_queue.api import create_app
from newsletter_queue.errors import RedisUnavailableError
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.store import CampaignRecord
from newsletter_queue.system import System
from tests.conftest import make_settings
from tests.support.dkimkeys import pem, rsa_key
from tests.support.fakeopenai import FakeOpenAI
from tests.support.helpers import wait_for
from tests.support.redisserver import private_redis

REDIS_PW = "redisPw-" + uuid.uuid4().hex[:12]
SMTP_PW = "smtpPw-" + uuid.uuid4().hex[:12]
WRONG_SMTP_PW = "wrongSmtp-" + uuid.uuid4().hex[:12]
WRONG_REDIS_PW = "wrongRedis-" + uuid.uuid4().hex[:12]
AI_KEY = "aiKey-" + uuid.uuid4().hex[:16]
API_TOKEN = "apiTok-" + uuid.uuid4().hex[:16]
DKIM_PEM = pem(rsa_key("no-secrets"))
# 64 base64 characters of the private exponent (DER bytes 336-384; the modulus before it is
# public, and dkim-records prints it).
DKIM_KEY_LINE = DKIM_PEM.splitlines()[8]
SECRETS = (REDIS_PW, SMTP_PW, WRONG_SMTP_PW, WRONG_REDIS_PW, AI_KEY, API_TOKEN,
           DKIM_KEY_LINE)


def _forms(secret: str) -> list[str]:
    """The secret, and how it looks base64-encoded in AUTH PLAIN/LOGIN and Basic auth."""
    forms = [secret, base64.b64encode(secret.encode()).decode()]
    for user in ("mailer", ""):
        forms.append(base64.b64encode(f"\0{user}\0{secret}".encode()).decode())
        forms.append(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return forms


def _leaks(where: str, texts: Iterable[str]) -> list[str]:
    found = []
    for text in texts:
        for secret in SECRETS:
            if any(form in text for form in _forms(secret)):
                found.append(f"{where}: {secret!r} in {text[:300]!r}")
    return found


async def _dump_redis(client: aioredis.Redis) -> list[str]:
    """Every key and value of the (private) database, as text."""
    out = []
    async for key in client.scan_iter(count=1000):
        kind = await client.type(key)
        value: Any
        if kind == "string":
            value = await client.get(key)
        elif kind == "hash":
            value = await client.hgetall(key)
        elif kind == "list":
            value = await client.lrange(key, 0, -1)
        elif kind == "set":
            value = await client.smembers(key)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = await client.xrange(key)
        else:
            value = kind
        out.append(f"{key} {value!r}")
    return out


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "newsletter_queue", *args], env=env,
                            cwd=cwd, capture_output=True, text=True, timeout=60,
                            check=False)
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


# The dev sink requires AUTH without TLS here: it is on loopback, in this process.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_no_secret_anywhere_after_a_full_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    prefix = f"nlqt-{uuid.uuid4().hex[:10]}"
    leaks: list[str] = []
    with private_redis(tmp_path / "redis", "--requirepass", REDIS_PW) as server:
        redis_url = f"redis://:{REDIS_PW}@127.0.0.1:{server.port}/0"
        async with SmtpSink(credentials=("mailer", SMTP_PW)) as sink, \
                FakeOpenAI() as fake:
            # plaintext AUTH only because the sink is on loopback and the URL opts in
            smtp_url = f"smtp://mailer:{SMTP_PW}@127.0.0.1:{sink.port}?plaintext_auth=loopback"
            settings = make_settings(
                redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path / "state",
                smtp_url=smtp_url, ai_base_url=fake.base_url, ai_api_key=AI_KEY,
                api_token=API_TOKEN, emails_per_second=100_000,
                emails_per_second_per_tenant=100_000, dkim_domain="example.com",
                dkim_selector="sec", dkim_private_key=DKIM_PEM)
            fake.reply('{"alternatives": ["A better subject"]}')
            fake.error(401, f"Incorrect API key provided: {AI_KEY}. Bearer {AI_KEY}")

            manager = QueueManager(settings)
            services = await WorkerServices(settings).open()
            system = System(settings, shutdown_timeout=10)
            try:
                assert services.store is not None
                await services.store.upsert_campaign(CampaignRecord(
                    tenant_id="t1", campaign_id="news", subject="News for {{ name }}",
                    text="Hello {{ name }}"))
                workers = system.start_workers(services.registry())
                services.attach_hooks(workers)
                recipients = [{"email": f"r{i}@example.com", "name": f"R{i}"}
                              for i in range(30)]
                await manager.schedule_batch_email_sending("news", "t1", recipients, 10)
                await manager.schedule_recurring_analytics("t1", every_ms=60_000)
                good_ai = await manager.schedule_ai_job("subject-optimization", {
                    "tenantId": "t1", "type": "subject-optimization",
                    "data": {"subjects": ["Hello"]}})
                await wait_for(lambda: manager.get_jobs("ai", "completed"), timeout=20,
                               message="the first AI job to complete")
                bad_ai = await manager.schedule_ai_job("subject-optimization", {
                    "tenantId": "t1", "type": "subject-optimization",
                    "data": {"subjects": ["Again"]}})
                await asyncio.wait_for(sink.handler.wait_for_total(30), 30)
                assert all(m.raw.startswith(b"DKIM-Signature: ")  # the key was in use
                           for m in sink.handler.recent)
                failed_ai = await wait_for(lambda: manager.get_jobs("ai", "failed"),
                                           timeout=20, message="the 401 AI job to fail")
                assert failed_ai[0].id == bad_ai.id
                assert "***" in (failed_ai[0].failed_reason or "")
                auth_seen = [r.authorization for r in fake.requests]
                assert auth_seen == [f"Bearer {AI_KEY}"] * 2  # the key was really in use
                assert good_ai.id != bad_ai.id

                # The reprs of everything that holds a secret.
                leaks += _leaks("repr", [
                    repr(settings), str(settings), settings.model_dump_json(),
                    repr(settings.model_dump()), repr(services.pool),
                    repr(services.provider), manager.url, repr(manager),
                    repr(await manager.health_check()), *map(repr, workers)])

                # The dev API's read endpoints.
                app = create_app(settings, manager=manager, store=services.store)
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport,
                                             base_url="http://127.0.0.1") as api:
                    paths = ["/readyz", "/metrics", "/api/dev/workers", "/api/dev/mail",
                             "/api/dev/dead-letters", "/api/dev/queue?action=inspect&queue=ai",
                             *(f"/api/dev/queue?action={a}" for a in
                               ("dashboard", "stats", "health", "metrics", "errors",
                                "report")),
                             *(f"/api/dev/queues/{q}/jobs?state={s}" for q in
                               ("email", "ai", "analytics") for s in ("completed", "failed")),
                             f"/api/dev/queues/ai/jobs/{bad_ai.id}"]
                    for path in paths:
                        response = await api.get(path)
                        assert response.status_code == 200, (path, response.text[:300])
                        leaks += _leaks(f"GET {path}", [response.text])
            finally:
                await system.stop()
                await services.close()
                await manager.close()

            # Error paths: a wrong SMTP password, a wrong Redis password.
            wrong_smtp = settings.model_copy(update={
                "smtp_url": SecretStr(
                    f"smtp://mailer:{WRONG_SMTP_PW}@127.0.0.1:{sink.port}"
                    "?plaintext_auth=loopback")})
            services = await WorkerServices(wrong_smtp).open()
            manager = QueueManager(wrong_smtp)
            system = System(wrong_smtp, shutdown_timeout=10)
            try:
                workers = system.start_workers(services.registry(), ["email"])
                services.attach_hooks(workers)
                job = await manager.schedule_email_job("transactional", {
                    "campaignId": "tx", "tenantId": "t1",
                    "recipients": [{"email": "z@example.com"}],
                    "content": {"subject": "Receipt", "text": "Thanks"}})
                async def attempted() -> Any:
                    info = await manager.get_job("email", job.id)
                    return info if info and info.attempts_made >= 1 and info.failed_reason \
                        else None

                # Our credentials refused: a transient failure, retried — nobody bounced.
                done = await wait_for(attempted, timeout=60, message="the wrong-password job")
                assert done.failed_reason is not None
                assert "authentication failed" in done.failed_reason
                assert done.state in ("delayed", "wait", "failed", "active")
                assert sink.handler.counts.get("z@example.com", 0) == 0
                leaks += _leaks("failed reason", [done.failed_reason, *done.stacktrace])
            finally:
                await system.stop()
                await services.close()
                await manager.close()
            wrong_redis = settings.model_copy(update={
                "redis_url": SecretStr(
                    f"redis://:{WRONG_REDIS_PW}@127.0.0.1:{server.port}/0")})
            with pytest.raises(RedisUnavailableError) as info:
                async with QueueManager(wrong_redis) as bad:
                    await bad.get_all_queue_stats()
            leaks += _leaks("error", [str(info.value), repr(info.value)])

            # The CLI, configured from the environment as in production.
            env = {k: v for k, v in os.environ.items() if not k.startswith("NLQ_")}
            env.update(REDIS_URL=redis_url, SMTP_URL=smtp_url, AI_API_KEY=AI_KEY,
                       AI_BASE_URL=fake.base_url, NLQ_API_TOKEN=API_TOKEN,
                       NLQ_KEY_PREFIX=prefix, NLQ_STATE_DIR=str(tmp_path / "state"),
                       NLQ_DKIM_DOMAIN="example.com", NLQ_DKIM_SELECTOR="sec",
                       NLQ_DKIM_PRIVATE_KEY=DKIM_PEM, COLUMNS="200")
            cli_runs = [["health", "--json"], ["stats", "--json"], ["errors"],
                        ["inspect", "ai"], ["report"], ["dkim-records"]]
            outputs = await asyncio.gather(*(asyncio.to_thread(_cli, args, env, tmp_path)
                                             for args in cli_runs))
            for args, output in zip(cli_runs, outputs, strict=True):
                assert output.startswith("exit "), output
                leaks += _leaks(f"nlq {' '.join(args)}", [output])

        # Everything stored: Redis (the whole private database) and the SQLite file.
        admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            stored = await _dump_redis(admin)
        finally:
            await admin.aclose()
    assert any(f"{prefix}:ai:" in line and "failedReason" in line for line in stored)
    leaks += _leaks("redis", stored)
    sqlite_files = list((tmp_path / "state").glob("*.sqlite3*"))
    assert sqlite_files
    leaks += _leaks("sqlite", [p.read_bytes().decode("latin-1") for p in sqlite_files])

    ours = caplog.records
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    assert len(ours) > 50  # DEBUG records of our code and the libraries were captured
    leaks += _leaks("log", [formatter.format(r) for r in ours])
    assert leaks == []


async def test_a_redis_password_in_the_query_string_is_never_shown(tmp_path: Path) -> None:
    """redis-py takes ``?password=`` as the password: masked like ``:password@``."""
    query_pw = "queryPw-" + uuid.uuid4().hex[:12]
    wrong_pw = "wrongQueryPw-" + uuid.uuid4().hex[:12]
    prefix = f"nlqt-{uuid.uuid4().hex[:10]}"
    shown: list[str] = []
    with private_redis(tmp_path / "redis", "--requirepass", query_pw) as server:
        url = f"redis://127.0.0.1:{server.port}/0?password={query_pw}"
        settings = make_settings(redis_url=url, key_prefix=prefix,
                                 state_dir=tmp_path / "state")
        async with QueueManager(settings) as manager:
            assert (await manager.health_check()).healthy  # the password was used
            app = create_app(settings, manager=manager)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as api:
                for path in ("/readyz", "/api/dev/queue?action=dashboard",
                             "/api/dev/queue?action=report", "/api/dev/queue?action=health",
                             "/metrics"):
                    response = await api.get(path)
                    assert response.status_code == 200, (path, response.text[:300])
                    shown.append(f"GET {path}: {response.text}")
            shown += [manager.url, repr(manager), str(settings.masked_redis_url)]
        # A wrong password in the query: the 503 and the exception say so, masked.
        wrong = make_settings(redis_url=f"redis://127.0.0.1:{server.port}/0?password={wrong_pw}",
                              key_prefix=prefix, state_dir=tmp_path / "state")
        app = create_app(wrong)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1") as api:
            for path in ("/readyz", "/api/dev/queue?action=stats"):
                response = await api.get(path)
                assert response.status_code == 503, (path, response.text[:300])
                shown.append(f"GET {path}: {response.text}")
        with pytest.raises(RedisUnavailableError) as info:
            async with QueueManager(wrong) as bad:
                await bad.get_all_queue_stats()
        shown += [str(info.value), repr(info.value)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("NLQ_")}
        env.update(REDIS_URL=url, NLQ_KEY_PREFIX=prefix,
                   NLQ_STATE_DIR=str(tmp_path / "state"), COLUMNS="200")
        shown.append(await asyncio.to_thread(_cli, ["report"], env, tmp_path))
        shown.append(await asyncio.to_thread(_cli, ["health", "--json"], env, tmp_path))
    assert any("password=***" in text for text in shown)
    assert [text[:300] for text in shown if query_pw in text or wrong_pw in text] == []
