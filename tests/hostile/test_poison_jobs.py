"""Poison jobs written straight into Redis by "another producer" (raw HSET + LPUSH +
marker, as a buggy or hostile Node/any-language producer could), on every queue.

Each must end *failed* on its first attempt (unrecoverable, although it allows 3) with a
reason that says what is wrong, become a dead letter, and leave the workers running: a
normal job added afterwards completes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from newsletter_queue.manager import QueueManager
from tests.hostile.conftest import Engine
from tests.support.helpers import wait_for

VALID: dict[str, tuple[str, dict[str, Any]]] = {
    "email": ("send-batch", {"campaignId": "c-1", "tenantId": "t-1",
                             "recipients": [{"email": "a@example.com"}]}),
    "analytics": ("campaign-complete", {"campaignId": "c-1", "tenantId": "t-1",
                                        "eventType": "campaign-complete"}),
    "ai": ("subject-optimization", {"tenantId": "t-1", "type": "subject-optimization",
                                    "data": {"subjects": ["Hello"]}}),
}
MODEL = {"email": "EmailJobData", "analytics": "AnalyticsJobData", "ai": "AIJobData"}
BIG = "x" * 3_000_000


def _huge(queue: str) -> dict[str, Any]:
    data = json.loads(json.dumps(VALID[queue][1]))
    if queue == "email":
        data["recipients"][0]["personalizations"] = {"blob": BIG}
    else:
        data["data"] = {**data.get("data", {}), "blob": BIG}
    return data


def _with(queue: str, **changes: Any) -> str:
    return json.dumps({**VALID[queue][1], **changes})


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"d": value}
    return value


def poisons(queue: str) -> dict[str, tuple[dict[str, str], str]]:
    """name → (job hash fields, a fragment the failure reason must contain)."""
    name = VALID[queue][0]
    model = MODEL[queue]
    wrong_field = {"email": ("campaignId", 5), "analytics": ("eventType", "explode"),
                   "ai": ("type", "rm -rf /")}[queue]
    nan_field = {"email": {"recipients": [{"email": "a@example.com",
                                           "personalizations": {"score": float("nan")}}]},
                 "analytics": {"data": {"score": float("inf")}},
                 "ai": {"data": {"subjects": ["a"], "score": float("nan")}}}[queue]
    deep_field = ({"recipients": [{"email": "a@example.com",
                                   "personalizations": _nested(50)}]}
                  if queue == "email" else {"data": _nested(50)})
    return {
        "invalid-json": ({"name": name, "data": "{not json"}, "not valid JSON"),
        "json-array": ({"name": name, "data": "[1, 2, 3]"},
                       f"invalid {model}: (root): Input should be a valid dictionary"),
        "json-null": ({"name": name, "data": "null"}, f"invalid {model}"),
        "wrong-type": ({"name": name, "data": _with(queue, **{wrong_field[0]: wrong_field[1]})},
                       f"{wrong_field[0]}: "),
        "nan": ({"name": name, "data": json.dumps({**VALID[queue][1], **nan_field})},
                "NaN and infinity are not JSON values"),
        "nested-50": ({"name": name, "data": json.dumps({**VALID[queue][1], **deep_field})},
                      "nested deeper than 32 levels"),
        "unknown-field": ({"name": name, "data": _with(queue, __proto__={"admin": True})},
                          "__proto__: Extra inputs are not permitted"),
        # The ai queue dispatches on data.type, whatever the name: that job is valid.
        **({} if queue == "ai" else {"missing-name": (
            {"data": json.dumps(VALID[queue][1])},
            f"no processor registered for job name '' in queue '{queue}'")}),
        "huge-payload": ({"name": name, "data": json.dumps(_huge(queue))},
                         "bytes; at most 524288"),
        "invalid-opts-json": ({"name": name, "data": json.dumps(VALID[queue][1]),
                               "opts": "{attempts: 3"}, "not valid JSON"),
    }


async def _write_raw_job(client: aioredis.Redis, prefix: str, queue: str, job_id: str,
                         fields: dict[str, str]) -> None:
    """What a producer does: the job hash, its id on the wait list, the wake-up marker."""
    base = {"timestamp": "1700000000000", "delay": "0", "priority": "0",
            "opts": '{"attempts": 3}'}
    pipe = client.pipeline(transaction=True)
    pipe.hset(f"{prefix}:{queue}:{job_id}", mapping={**base, **fields})
    pipe.lpush(f"{prefix}:{queue}:wait", job_id)
    pipe.zadd(f"{prefix}:{queue}:marker", {"0": 0})
    await pipe.execute()


@pytest.mark.parametrize("queue", ["email", "analytics", "ai"])
async def test_poison_jobs_fail_unrecoverable_with_a_clear_reason(
    engine: Engine, redis_client: aioredis.Redis, prefix: str, queue: str
) -> None:
    cases = poisons(queue)
    for case, (fields, _) in cases.items():
        await _write_raw_job(redis_client, prefix, queue, f"poison-{case}", fields)
    results = await asyncio.gather(*(engine.finished(queue, f"poison-{case}", timeout=60)
                                     for case in cases))
    problems = {}
    for (case, (_, expected)), job in zip(cases.items(), results, strict=True):
        reason = job.failed_reason or ""
        if job.state != "failed" or job.attempts_made != 1 or expected not in reason:
            problems[case] = (job.state, job.attempts_made, reason[:200])
    assert problems == {}
    # Failed jobs stay inspectable: each is a dead letter with its reason.
    store = engine.services.store
    assert store is not None

    async def all_letters() -> Any:  # written by the worker's failed hook, just after
        letters = await store.list_dead_letters(100, queue, False)
        return letters if len(letters) >= len(cases) else None

    letters = await wait_for(all_letters, timeout=30, message="the dead letters")
    assert {letter.job_id for letter in letters} == {f"poison-{c}" for c in cases}
    assert all(letter.error for letter in letters)
    await engine.assert_alive()


async def test_malformed_job_hash_fails_at_once(
    engine: Engine, redis_client: aioredis.Redis, prefix: str
) -> None:
    name, data = VALID["email"]
    cases = {
        "opts-array": {"name": name, "data": json.dumps(data), "opts": "[1, 2]"},
        "timestamp-text": {"name": name, "data": json.dumps(data), "timestamp": "yesterday"},
        "attempts-text": {"name": name, "data": json.dumps(data), "atm": "many"},
        "nested-100k": {"name": name, "data": "[" * 100_000 + "]" * 100_000},
    }
    for case, fields in cases.items():
        await _write_raw_job(redis_client, prefix, "email", f"malformed-{case}", fields)
    queue = await engine.manager.queue("email")

    async def states() -> list[str]:
        return [await queue.getJobState(f"malformed-{case}") for case in cases]

    async def all_failed() -> bool:
        return await states() == ["failed"] * len(cases)

    try:
        await wait_for(all_failed, timeout=30, message="the malformed jobs to fail")
    finally:
        print("states:", dict(zip(cases, await states(), strict=True)))
    # "At once": on the first attempt, not after the retries their 3 attempts allow (the
    # count, not the clock, says so).
    problems = {}
    for case in cases:
        info = await engine.manager.get_job("email", f"malformed-{case}")
        assert info is not None
        reason = info.failed_reason or ""
        if info.attempts_made != 1 or "malformed job hash" not in reason:
            problems[case] = (info.attempts_made, reason[:200])
    assert problems == {}
    await engine.assert_alive()


async def test_reading_a_deeply_nested_job_does_not_raise(
    manager: QueueManager, redis_client: aioredis.Redis, prefix: str
) -> None:
    await _write_raw_job(redis_client, prefix, "email", "deep",
                         {"name": "send-batch", "data": "[" * 100_000 + "]" * 100_000})
    info = await manager.get_job("email", "deep")
    assert info is not None
    assert (await manager.get_jobs("email", "waiting"))[0].id == "deep"
