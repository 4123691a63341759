"""Hostile requests to the dev API over real HTTP: every one a 4xx, never a 5xx, no job.

Malformed JSON, wrong types, NaN and infinity, 50-level nesting, 1 MB and 10 MB bodies
(declared and chunked), unknown options — sent to the enqueue endpoint and to the seed's
``POST /api/dev/queue`` — against the app served by uvicorn on loopback. After the
barrage the API still answers and not one job was created.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from newsletter_queue.config import Settings
from tests.support.liveapi import live_api

EMAIL = {"campaignId": "c-1", "tenantId": "t-1", "recipients": [{"email": "a@example.com"}]}
AI = {"tenantId": "t-1", "type": "subject-optimization", "data": {"subjects": ["Hi"]}}


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"k": value}
    return value


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


def raw_nan(placeholder: str, literal: str) -> bytes:
    """A JSON body holding a bare NaN/Infinity (invalid JSON that Python's parser accepts)."""
    return dumps({"name": "send-batch", "data": {**EMAIL, "recipients": [
        {"email": "a@example.com", "personalizations": {"x": placeholder}}]}}
    ).replace(f'"{placeholder}"'.encode(), literal.encode())


# (case id, path, body bytes, expected status)
CASES: list[tuple[str, str, bytes, int]] = [
    ("malformed-json", "/api/dev/queues/email/jobs", b'{"name": "send-batch", "data": {', 422),
    ("not-json", "/api/dev/queues/email/jobs", b"\x00\xff garbage", 422),
    ("empty-body", "/api/dev/queues/email/jobs", b"", 422),
    ("array-body", "/api/dev/queues/email/jobs", b"[1, 2, 3]", 422),
    ("name-int", "/api/dev/queues/email/jobs", dumps({"name": 123, "data": EMAIL}), 422),
    ("data-string", "/api/dev/queues/email/jobs", dumps({"name": "x", "data": "EMAIL"}), 422),
    ("opts-list", "/api/dev/queues/email/jobs", dumps({"name": "x", "data": EMAIL,
                                                       "opts": [1]}), 422),
    ("extra-field", "/api/dev/queues/email/jobs", dumps({"name": "x", "data": EMAIL,
                                                         "evil": True}), 422),
    ("recipients-int", "/api/dev/queues/email/jobs",
     dumps({"name": "x", "data": {**EMAIL, "recipients": 5}}), 422),
    ("bad-email", "/api/dev/queues/email/jobs",
     dumps({"name": "x", "data": {**EMAIL, "recipients": [{"email": "a\r\nBcc: x@y"}]}}), 422),
    ("subject-header-injection", "/api/dev/queues/email/jobs",
     dumps({"name": "x", "data": {**EMAIL, "content": {
         "subject": "Hi\r\nBcc: victim@example.com", "html": "<p>x</p>"}}}), 422),
    ("priority-string", "/api/dev/queues/email/jobs",
     dumps({"name": "x", "data": EMAIL, "opts": {"priority": "high"}}), 422),
    ("numeric-job-id", "/api/dev/queues/email/jobs",
     dumps({"name": "x", "data": EMAIL, "opts": {"jobId": "123"}}), 422),
    ("job-id-colon", "/api/dev/queues/email/jobs",
     dumps({"name": "x", "data": EMAIL, "opts": {"job_id": "a:b"}}), 422),
    ("unknown-option", "/api/dev/queues/email/jobs",
     dumps({"name": "x", "data": EMAIL, "opts": {"repeat": {"every": 1}}}), 422),
    ("nan", "/api/dev/queues/email/jobs", raw_nan("@@", "NaN"), 422),
    ("infinity", "/api/dev/queues/email/jobs", raw_nan("@@", "-Infinity"), 422),
    ("ai-nan", "/api/dev/queues/ai/jobs", dumps({"name": "x", "data": AI}).replace(
        b'"Hi"', b"NaN"), 422),
    ("nested-50-personalizations", "/api/dev/queues/email/jobs",
     dumps({"name": "x", "data": {**EMAIL, "recipients": [
         {"email": "a@example.com", "personalizations": nested(50)}]}}), 422),
    ("nested-50-ai", "/api/dev/queues/ai/jobs",
     dumps({"name": "x", "data": {**AI, "data": nested(50)}}), 422),
    ("nested-100k-brackets", "/api/dev/queues/ai/jobs", b"[" * 100_000 + b"]" * 100_000, 400),
    # 1 MB passes the 1 MiB body cap and is refused by the 512 KiB job-data limit
    ("one-mb-body", "/api/dev/queues/ai/jobs",
     dumps({"name": "x", "data": {**AI, "data": {"blob": "x" * 1_000_000}}}), 422),
    ("one-mb-email-content", "/api/dev/queues/email/jobs",
     dumps({"name": "x", "data": {**EMAIL, "content": {
         "subject": "Hi", "html": "<p>" + "x" * 1_000_000 + "</p>"}}}), 422),
    ("unknown-queue", "/api/dev/queues/nope/jobs", dumps({"name": "x", "data": AI}), 400),
    ("seed-performance-nan", "/api/dev/queue?action=performance", b'{"jobCount": NaN}', 422),
    ("seed-performance-string", "/api/dev/queue?action=performance",
     b'{"jobCount": "10"}', 422),
    ("seed-performance-nested", "/api/dev/queue?action=performance",
     dumps({"jobCount": nested(50)}), 422),
    ("seed-unknown-action", "/api/dev/queue?action=" + "x" * 5000, b"{}", 400),
    # found by schemathesis: an id past SQLite's 64-bit integers was a 500
    ("dead-letter-id-overflow", "/api/dev/dead-letters/-36893488147419103232/replay",
     b"{}", 422),
    ("dead-letter-id-huge", "/api/dev/dead-letters/9223372036854775808/replay", b"{}", 422),
    # numbers past what the scripts' msgpack/Lua take were 500s
    *[(f"huge-{name}", "/api/dev/queues/ai/jobs",
       dumps({"name": "x", "data": AI, "opts": opts}), 422) for name, opts in (
        ("delay", {"delay": 10**30}), ("delay-int64", {"delay": 2**63}),
        ("attempts", {"attempts": 10**30}),
        ("backoff", {"backoff": {"type": "fixed", "delay": 10**30}}),
        ("keep", {"removeOnComplete": 10**30}),
        ("keep-age", {"removeOnFail": {"age": 10**30}}))],
    ("seed-performance-deep-brackets", "/api/dev/queue?action=performance",
     b"[" * 100_000 + b"]" * 100_000, 400),
]


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    with live_api(settings) as base:
        yield base


@pytest.fixture
async def client(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api, timeout=30) as c:
        yield c


async def job_keys(redis_client: aioredis.Redis, prefix: str) -> list[str]:
    """Every job hash under the test prefix (``{prefix}:{queue}:{id}``, no sub-key)."""
    keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:*", count=1000)]
    return [k for k in keys if k.count(":") == 2 and k.rsplit(":", 1)[1] not in (
        "id", "meta", "events", "wait", "active", "paused", "completed", "failed",
        "delayed", "prioritized", "stalled", "stalled-check", "limiter", "marker", "pc")]


async def test_every_hostile_request_gets_its_4xx_and_creates_nothing(
        client: httpx.AsyncClient, redis_client: aioredis.Redis, prefix: str) -> None:
    seen: dict[str, int] = {}
    for case_id, path, body, _expected in CASES:
        response = await client.post(path, content=body,
                                     headers={"Content-Type": "application/json"})
        seen[case_id] = response.status_code
        assert response.headers["content-type"].startswith("application/json"), case_id
        assert "error" in response.json(), case_id
        assert b"Traceback" not in response.content, case_id
    assert seen == {case_id: expected for case_id, _, _, expected in CASES}
    assert await job_keys(redis_client, prefix) == []
    # and the server is still fine
    assert (await client.get("/readyz")).status_code == 200


async def test_ten_mb_body_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    body = dumps({"name": "x", "data": {**AI, "data": {"blob": "x" * 10_000_000}}})
    response = await client.post("/api/dev/queues/ai/jobs", content=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["limit"] == 1_048_576


async def test_chunked_ten_mb_body_is_cut_off_at_the_cap(client: httpx.AsyncClient) -> None:
    """No Content-Length: the body is counted as it streams in and refused at the cap."""
    chunk = b"x" * 65_536
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"name": "x", "data": {"blob": "'
        for _ in range(160):  # 10.5 MB
            sent += len(chunk)
            yield chunk
        yield b'"}}'

    try:
        response = await client.post("/api/dev/queues/ai/jobs", content=stream(),
                                      headers={"Content-Type": "application/json"})
    except httpx.RemoteProtocolError:
        pytest.fail("the server dropped the connection instead of answering 413")
    assert response.status_code == 413
    assert response.json()["error"].startswith("request body too large")


async def test_valid_job_still_goes_through(client: httpx.AsyncClient,
                                            redis_client: aioredis.Redis, prefix: str) -> None:
    """The control: the same endpoint accepts a well-formed job."""
    response = await client.post("/api/dev/queues/ai/jobs", json={"name": "subject",
                                                                  "data": AI})
    assert response.status_code == 201, response.text
    assert await job_keys(redis_client, prefix) == [f"{prefix}:ai:{response.json()['id']}"]
