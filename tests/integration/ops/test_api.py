"""The dev API, probes and /metrics through the real app (httpx ASGI transport)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from newsletter_queue.api import create_app
from newsletter_queue.api.context import REDIS_DEADLINE_S
from newsletter_queue.config import Settings
from newsletter_queue.engine import Worker
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.store import DeadLetterRecord, Store
from tests.conftest import make_settings
from tests.integration.ops.conftest import BASE_URL, fail_one_job
from tests.support.helpers import silent_server, wait_for

GETS = ("dashboard", "inspect", "stats", "health", "metrics", "errors", "report")


async def test_every_seed_get_action_answers(api_client: httpx.AsyncClient,
                                             manager: QueueManager) -> None:
    await manager.schedule_ai_job("content-generation", {
        "tenantId": "t-1", "type": "content-generation", "data": {"topic": "x"}})
    for action in GETS:
        r = await api_client.get("/api/dev/queue", params={"action": action, "queue": "ai"})
        assert r.status_code == 200, (action, r.text)
    stats = (await api_client.get("/api/dev/queue?action=stats")).json()
    assert stats["ai"]["waiting"] == 1
    assert set(stats) == {"email", "analytics", "ai"}
    dash = (await api_client.get("/api/dev/queue?action=dashboard")).json()
    assert dash["queues"]["ai"]["counts"]["waiting"] == 1
    assert len(dash["queues"]["email"]["completed_per_minute"]) == 60
    assert dash["breakers"]["smtp"]["state"] == "closed"
    health = (await api_client.get("/api/dev/queue?action=health")).json()
    assert health["status"] in ("healthy", "warning")
    assert set(health["queues"]) == set(stats)
    md = await api_client.get("/api/dev/queue?action=report&format=md")
    assert md.headers["content-type"].startswith("text/markdown")
    assert "| ai |" in md.text


async def test_unknown_action_queue_and_bad_input(api_client: httpx.AsyncClient) -> None:
    r = await api_client.get("/api/dev/queue?action=explode")
    assert r.status_code == 400
    assert r.json()["valid_actions"] == list(GETS)
    r = await api_client.get("/api/dev/queue?action=pause&queue=email")
    assert r.status_code == 400
    assert "POST action" in r.json()["error"]
    r = await api_client.post("/api/dev/queue?action=dashboard")
    assert r.status_code == 400
    assert r.json()["valid_actions"] == ["test", "clear", "pause", "resume", "performance"]
    r = await api_client.get("/api/dev/queue?action=stats&queue=sms")
    assert r.status_code == 400
    assert r.json()["valid_queues"] == ["email", "analytics", "ai"]
    r = await api_client.get("/api/dev/queue?action=inspect")
    assert r.status_code == 400
    assert "needs a queue" in r.json()["error"]
    r = await api_client.get("/api/dev/queue?action=errors&limit=0")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "query.limit"
    for body in ('{"jobCount": "many"}', '{"jobCount": 0}', "not json", '{"other": 1}'):
        r = await api_client.post("/api/dev/queue?action=performance", content=body,
                                  headers={"content-type": "application/json"})
        assert r.status_code == 422, body
        assert "jobCount" in r.json()["error"]
    r = await api_client.post("/api/dev/queue?action=clear&queue=sms")
    assert r.status_code == 400
    assert "all" in r.json()["valid_queues"]


async def test_post_actions_change_redis(api_client: httpx.AsyncClient,
                                         manager: QueueManager) -> None:
    r = await api_client.post("/api/dev/queue?action=test")
    assert r.status_code == 200
    assert len(r.json()["created"]["ai"]) == 3
    r = await api_client.post("/api/dev/queue?action=pause&queue=email")
    assert r.json() == {"queue": "email", "paused": True}
    assert await manager.is_paused("email")
    r = await api_client.post("/api/dev/queue?action=resume&queue=email")
    assert r.json()["paused"] is False
    assert not await manager.is_paused("email")
    r = await api_client.post("/api/dev/queue?action=performance", json={"jobCount": 25})
    assert r.status_code == 200
    assert r.json()["jobs_created"] == 25
    assert (await manager.get_queue_stats("analytics")).waiting == 27
    r = await api_client.post("/api/dev/queue?action=clear&queue=analytics")
    assert r.json() == {"cleared": {"analytics": 27}}
    assert (await manager.get_queue_stats("analytics")).waiting == 0


async def test_clear_is_refused_outside_dev_mode(redis_url: str, prefix: str, tmp_path: Path,
                                                 redis_client: aioredis.Redis) -> None:
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path,
                             dev_mode=False, dev_api=True)
    async with _client(settings) as client:
        r = await client.post("/api/dev/queue?action=clear&queue=all")
        assert r.status_code == 403
        assert "dev mode" in r.json()["error"]


async def test_dev_routes_are_off_unless_enabled(redis_url: str, prefix: str, tmp_path: Path,
                                                 redis_client: aioredis.Redis) -> None:
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path,
                             dev_mode=False, dev_api=False)
    async with _client(settings) as client:
        assert (await client.get("/api/dev/queue?action=stats")).status_code == 404
        assert (await client.get("/dashboard")).status_code == 404
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200
        assert "nlq_redis_up 1.0" in (await client.get("/metrics")).text


async def test_job_list_search_pagination_and_detail(
        api_client: httpx.AsyncClient, manager: QueueManager,
        make_worker: Callable[..., Worker]) -> None:
    await manager.schedule_batch_email_sending(
        "spring-sale", "acme", [{"email": f"r{i}@example.com"} for i in range(5)], 1)
    await manager.schedule_batch_email_sending(
        "autumn", "globex", [{"email": f"r{i}@example.com"} for i in range(3)], 1)
    page = (await api_client.get("/api/dev/queues/email/jobs",
                                 params={"state": "prioritized", "page_size": 3})).json()
    assert page["total"] == 8
    assert len(page["jobs"]) == 3
    page2 = (await api_client.get("/api/dev/queues/email/jobs", params={
        "state": "prioritized", "page_size": 3, "page": 3})).json()
    assert len(page2["jobs"]) == 2
    found = (await api_client.get("/api/dev/queues/email/jobs", params={
        "state": "prioritized", "search": "SPRING"})).json()
    assert found["total"] == 5
    assert {j["campaign_id"] for j in found["jobs"]} == {"spring-sale"}
    by_tenant = (await api_client.get("/api/dev/queues/email/jobs", params={
        "state": "prioritized", "search": "globex"})).json()
    assert by_tenant["total"] == 3
    one_id = by_tenant["jobs"][0]["id"]
    by_id = (await api_client.get("/api/dev/queues/email/jobs", params={
        "state": "prioritized", "search": one_id})).json()
    assert [j["id"] for j in by_id["jobs"]] == [one_id]
    r = await api_client.get("/api/dev/queues/email/jobs", params={"state": "sleeping"})
    assert r.status_code == 400
    assert "failed" in r.json()["valid_states"]

    job_id = await fail_one_job(manager, make_worker)
    detail = (await api_client.get(f"/api/dev/queues/ai/jobs/{job_id}")).json()
    assert detail["state"] == "failed"
    assert detail["logs"] == ["about to fail"]
    assert "ValueError: boom" in detail["stacktrace"][0]
    assert detail["data"]["type"] == "subject-optimization"
    assert detail["max_attempts"] == 1
    r = await api_client.get("/api/dev/queues/ai/jobs/missing")
    assert r.status_code == 404


async def test_job_actions_retry_promote_remove(
        api_client: httpx.AsyncClient, manager: QueueManager,
        make_worker: Callable[..., Worker]) -> None:
    job_id = await fail_one_job(manager, make_worker)
    r = await api_client.post(f"/api/dev/queues/ai/jobs/{job_id}/promote")
    assert r.status_code == 409
    assert "failed" in r.json()["error"]
    r = await api_client.post(f"/api/dev/queues/ai/jobs/{job_id}/retry")
    assert r.status_code == 200
    assert r.json()["state"] in ("waiting", "active", "failed")
    delayed = await manager.schedule_analytics_job("campaign-complete", {
        "campaignId": "c", "tenantId": "t", "eventType": "campaign-complete"},
        {"delay": 3_600_000})
    r = await api_client.post(f"/api/dev/queues/analytics/jobs/{delayed.id}/promote")
    assert r.status_code == 200
    assert r.json()["state"] == "waiting"
    r = await api_client.post(f"/api/dev/queues/analytics/jobs/{delayed.id}/remove")
    assert r.status_code == 200
    assert await manager.get_job("analytics", delayed.id) is None
    r = await api_client.post(f"/api/dev/queues/analytics/jobs/{delayed.id}/retry")
    assert r.status_code == 404
    r = await api_client.post(f"/api/dev/queues/analytics/jobs/{delayed.id}/explode")
    assert r.status_code == 400


async def test_clean_and_retry_failed_routes(api_client: httpx.AsyncClient,
                                             manager: QueueManager,
                                             make_worker: Callable[..., Worker]) -> None:
    await fail_one_job(manager, make_worker)
    r = await api_client.post("/api/dev/queues/ai/clean?state=failed")
    assert r.json() == {"queue": "ai", "state": "failed", "removed": 1}
    r = await api_client.post("/api/dev/queues/ai/clean?state=bogus")
    assert r.status_code == 422
    r = await api_client.post("/api/dev/queues/ai/clean?limit=30485510157674119168")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "query.limit"
    r = await api_client.post("/api/dev/queues/ai/retry-failed")
    assert r.json() == {"queue": "ai", "retried": 0}


async def test_errors_action_reads_the_stream(api_client: httpx.AsyncClient,
                                              manager: QueueManager,
                                              make_worker: Callable[..., Worker]) -> None:
    job_id = await fail_one_job(manager, make_worker)
    data = (await api_client.get("/api/dev/queue?action=errors&queue=ai&limit=5")).json()
    (error,) = data["errors"]
    assert error["job_id"] == job_id
    assert error["final"]
    assert "boom" in error["error"]
    assert (await api_client.get("/api/dev/queue?action=errors&queue=email")).json()[
        "errors"] == []


async def test_dead_letters_list_and_replay(settings: Settings, manager: QueueManager) -> None:
    store = Store.from_settings(settings)
    await store.init()
    try:
        letter_id = await store.add_dead_letter(DeadLetterRecord(
            queue="ai", job_id="old-1", job_name="subject-optimization",
            data={"tenantId": "t", "type": "subject-optimization", "data": {"subjects": ["A"]}},
            error="provider exploded", stacktrace=["Traceback …"], attempts=3,
            failed_at=datetime.now(UTC)))
        async with _client(settings, manager=manager, store=store) as client:
            listed = (await client.get("/api/dev/dead-letters?queue=ai")).json()
            assert [d["id"] for d in listed["dead_letters"]] == [letter_id]
            r = await client.post(f"/api/dev/dead-letters/{letter_id}/replay")
            assert r.status_code == 200
            new_id = r.json()["job_id"]
            job = await manager.get_job("ai", new_id)
            assert job is not None
            assert job.data["data"]["subjects"] == ["A"]
            again = await client.post(f"/api/dev/dead-letters/{letter_id}/replay")
            assert again.status_code == 409
            assert new_id in again.json()["error"]
            assert (await client.get("/api/dev/dead-letters")).json()["dead_letters"] == []
            assert (await client.post("/api/dev/dead-letters/999/replay")).status_code == 404
    finally:
        await store.close()


async def test_store_unavailable_is_503(redis_url: str, prefix: str, tmp_path: Path,
                                        redis_client: aioredis.Redis) -> None:
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path,
                             database_url="postgresql+asyncpg://u:dbsecret@127.0.0.1:1/x")
    async with _client(settings) as client:
        r = await client.get("/api/dev/dead-letters")
        assert r.status_code == 503
        assert "records store" in r.json()["error"]
        assert "dbsecret" not in r.text


async def test_captured_mail_is_listed(api_client: httpx.AsyncClient, settings: Settings,
                                       redis_client: aioredis.Redis) -> None:
    key = f"{settings.key_prefix}:devmail"
    for i in range(3):
        await redis_client.lpush(key, json.dumps({
            "id": i, "received_at": time.time(), "mail_from": "news@example.com",
            "rcpt_tos": [f"r{i}@example.com"], "subject": f"Issue {i}", "message_id": f"<{i}@x>",
            "headers": {}, "text": "hello", "html": ""}))
    data = (await api_client.get("/api/dev/mail?limit=2")).json()
    assert data["total"] == 3
    assert [m["subject"] for m in data["messages"]] == ["Issue 2",
                                                                                "Issue 1"]


async def test_metrics_endpoint_reads_redis_at_scrape_time(
        api_client: httpx.AsyncClient, manager: QueueManager, settings: Settings,
        make_worker: Callable[..., Worker], redis_client: aioredis.Redis) -> None:
    await fail_one_job(manager, make_worker)
    await manager.schedule_email_job("send-newsletter", {
        "campaignId": "c", "tenantId": "t", "recipients": [{"email": "a@example.com"}]})
    await redis_client.hset(f"{settings.key_prefix}:monitor:emails",
                            mapping={"sent": 40, "bounced": 2})
    await redis_client.hset(f"{settings.key_prefix}:circuit:smtp", "state", "open")
    from newsletter_queue.monitor import record_duration

    for ms in (3, 40, 2000):
        await record_duration(redis_client, settings.key_prefix, "email", ms)
    text = (await api_client.get("/metrics")).text
    assert 'nlq_queue_jobs{queue="email",state="waiting"} 1.0' in text
    assert 'nlq_jobs_failed_total{queue="ai"} 1.0' in text
    assert "nlq_emails_sent_total 40.0" in text
    assert "nlq_emails_bounced_total 2.0" in text
    assert 'nlq_circuit_breaker_state{breaker="smtp",state="open"} 1.0' in text
    assert 'nlq_circuit_breaker_open{breaker="ai"} 0.0' in text
    assert 'nlq_job_processing_seconds_bucket{le="0.005",queue="email"} 1.0' in text
    assert 'nlq_job_processing_seconds_bucket{le="2.5",queue="email"} 3.0' in text
    assert 'nlq_job_processing_seconds_count{queue="email"} 3.0' in text
    assert 'nlq_job_processing_seconds_sum{queue="email"} 2.043' in text


async def test_redis_down_is_503_at_once(tmp_path: Path) -> None:
    settings = make_settings(redis_url="redis://:redispw@127.0.0.1:1/0", key_prefix="down",
                             state_dir=tmp_path)
    async with _client(settings) as client:
        for path in ("/api/dev/queue?action=stats", "/api/dev/queue?action=dashboard",
                     "/api/dev/queues/email/jobs", "/api/dev/mail", "/readyz"):
            started = time.monotonic()
            r = await client.get(path)
            # refused at once: well inside the connect timeout it would otherwise wait
            assert time.monotonic() - started < settings.redis_connect_timeout_s, path
            assert r.status_code == 503, (path, r.text)
            assert "error" in r.json()
            assert "redispw" not in r.text
        r = await client.post("/api/dev/queue?action=pause&queue=email")
        assert r.status_code == 503
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "nlq_redis_up 0.0" in metrics.text


async def test_unexpected_errors_are_opaque_500s(api_client: httpx.AsyncClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter_queue.monitor import QueueMonitor

    async def broken(self: Any, *a: Any, **k: Any) -> Any:
        raise KeyError("internal detail /srv/secret/path")

    monkeypatch.setattr(QueueMonitor, "generate_report", broken)
    r = await api_client.get("/api/dev/queue?action=report")
    assert r.status_code == 500
    assert r.json()["error"] == "internal error"
    assert "secret" not in r.text
    assert "Traceback" not in r.text
    assert r.json()["incident"]


async def test_openapi_schema_lists_the_routes(api_client: httpx.AsyncClient) -> None:
    schema = (await api_client.get("/openapi.json")).json()
    for path in ("/api/dev/queue", "/api/dev/queues/{queue}/jobs", "/metrics", "/readyz",
                 "/api/dev/dead-letters/{letter_id}/replay", "/api/dev/mail"):
        assert path in schema["paths"], path


def _client(settings: Settings, **kwargs: Any) -> httpx.AsyncClient:
    app = create_app(settings, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


async def test_a_redis_that_never_answers_is_503_at_the_deadline(tmp_path: Path) -> None:
    """A server that accepts connections but never replies (a hung or black-holed Redis)
    is reported by the readiness deadline, not after the command socket timeout."""
    async with silent_server() as port:
        settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0", key_prefix="hung",
                                 state_dir=tmp_path)
        async with _client(settings) as client:
            started = time.monotonic()
            r = await client.get("/api/dev/queue?action=stats")
            waited = time.monotonic() - started
    assert r.status_code == 503
    assert f"no answer within the deadline ({REDIS_DEADLINE_S} s)" in r.json()["error"]
    # the deadline answered, not the connect (2 s) or command (10 s) timeouts
    assert REDIS_DEADLINE_S <= waited < settings.redis_command_timeout_s


async def test_enqueue_endpoint_creates_once_per_job_id(api_client: httpx.AsyncClient,
                                                        redis_client: aioredis.Redis,
                                                        prefix: str) -> None:
    body = {"name": "campaign-complete",
            "data": {"campaignId": "c-9", "tenantId": "t-9",
                     "eventType": "campaign-complete"},
            "opts": {"jobId": "stats-c-9", "attempts": 2}}
    first = await api_client.post("/api/dev/queues/analytics/jobs", json=body)
    again = await api_client.post("/api/dev/queues/analytics/jobs", json={
        **body, "opts": {"job_id": "stats-c-9"}})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == {"id": "stats-c-9", "queue": "analytics",
                            "name": "campaign-complete", "created": True}
    assert again.json()["created"] is False
    stored = await redis_client.hgetall(f"{prefix}:analytics:stats-c-9")
    assert json.loads(stored["data"]) == body["data"]
    assert json.loads(stored["opts"])["attempts"] == 2
    assert await redis_client.lrange(f"{prefix}:analytics:wait", 0, -1) == ["stats-c-9"]
    # without a job id every request is a new job
    ids = {(await api_client.post("/api/dev/queues/analytics/jobs", json={
        "name": "campaign-complete", "data": body["data"]})).json()["id"] for _ in range(2)}
    assert len(ids) == 2
    assert "stats-c-9" not in ids


async def test_enqueue_endpoint_rejects_bad_jobs_with_their_fields(
        api_client: httpx.AsyncClient, redis_client: aioredis.Redis, prefix: str) -> None:
    response = await api_client.post("/api/dev/queues/email/jobs", json={
        "name": "send-batch", "data": {"campaignId": "c", "tenantId": "t",
                                       "recipients": [{"email": "not-an-address"}]},
        "opts": {"priority": -1}})
    assert response.status_code == 422
    assert "recipients[0].email" in {e["field"] for e in response.json()["errors"]}
    unknown = await api_client.post("/api/dev/queues/sms/jobs", json={"name": "x", "data": {}})
    assert unknown.status_code == 400
    assert unknown.json()["valid_queues"] == ["email", "analytics", "ai"]
    assert await redis_client.exists(f"{prefix}:email:wait") == 0


async def test_one_performance_test_at_a_time(
        api_client: httpx.AsyncClient, manager: QueueManager,
        make_worker: Callable[..., Worker]) -> None:
    import asyncio

    release = asyncio.Event()

    async def hold(job: Any) -> None:
        await release.wait()

    make_worker("analytics", hold, concurrency=5)

    async def worker_seen() -> bool:
        r = await api_client.get("/api/dev/workers")
        return bool(r.json().get("analytics"))

    await wait_for(worker_seen, timeout=30, message="the worker in CLIENT LIST")
    first = asyncio.create_task(api_client.post(
        "/api/dev/queue?action=performance", json={"jobCount": 3, "queue": "analytics"}))

    async def first_running() -> bool:
        return (await manager.get_queue_stats("analytics")).active == 3

    await wait_for(first_running, timeout=30, message="the first run's jobs to be active")
    second = await api_client.post("/api/dev/queue?action=performance",
                                   json={"jobCount": 3, "queue": "analytics"})
    assert second.status_code == 409
    assert "already running" in second.json()["error"]
    assert (await manager.get_queue_stats("analytics")).active == 3  # nothing added
    release.set()
    done = await asyncio.wait_for(first, 60)
    assert done.status_code == 200
    assert done.json()["drained"] is True
    # once it has finished, the next run is accepted
    again = await api_client.post("/api/dev/queue?action=performance",
                                  json={"jobCount": 1, "queue": "analytics"})
    assert again.status_code == 200


async def test_out_of_range_reads_are_4xx_and_ids_are_not_echoed_whole(
        api_client: httpx.AsyncClient) -> None:
    r = await api_client.get(f"/api/dev/queues/email/jobs?page={10**30}")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "query.page"
    assert (await api_client.get("/api/dev/queues/email/jobs?page=10000000")).status_code \
        == 200
    long_id = "x" * 60_000
    for response in (await api_client.get(f"/api/dev/queues/email/jobs/{long_id}"),
                     await api_client.post(f"/api/dev/queues/email/jobs/{long_id}/retry")):
        assert response.status_code == 404
        assert len(response.content) < 500
        assert "x" * 100 not in response.text
    r = await api_client.post("/api/dev/queue?action=performance",
                              content=b"[" * 100_000 + b"]" * 100_000)
    assert r.status_code == 400
    assert "nested too deeply" in r.json()["error"]
