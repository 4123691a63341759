"""Batch splitting and job options (no Redis needed)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from newsletter_queue.campaigns import (
    CampaignProgress,
    batch_job_id,
    campaign_complete_job_id,
    plan_batches,
)
from newsletter_queue.errors import JobValidationError
from newsletter_queue.manager import to_bullmq_options


@pytest.mark.parametrize(("total", "size", "expected"), [
    (0, 100, []),
    (1, 100, [(0, 1)]),
    (100, 100, [(0, 100)]),
    (101, 100, [(0, 100), (100, 101)]),
    (250, 100, [(0, 100), (100, 200), (200, 250)]),
    (5, 1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
])
def test_plan_batches(total: int, size: int, expected: list[tuple[int, int]]) -> None:
    assert plan_batches(list(range(total)), size) == expected


def test_batches_cover_every_recipient_once() -> None:
    items = list(range(100_003))
    seen = [i for start, end in plan_batches(items, 97) for i in items[start:end]]
    assert seen == items


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_batches([1], 0)


def test_batch_job_ids_are_deterministic_and_distinct() -> None:
    assert batch_job_id("t1", "c1", 0) == batch_job_id("t1", "c1", 0)
    ids = {batch_job_id("t1", "c1", i) for i in range(1000)}
    assert len(ids) == 1000
    assert batch_job_id("t1", "c1", 0) != batch_job_id("t2", "c1", 0)
    assert all(":" not in i and not i.isdigit() for i in ids)


async def test_campaign_ids_and_keys_are_those_already_in_redis() -> None:
    # Written by earlier versions of running systems: a campaign sent before an upgrade
    # must still complete (exactly once) after it.
    assert batch_job_id("t1", "c1", 7) == "email-t1-c1-b00007"
    assert campaign_complete_job_id("t1", "c1") == "campaign-complete-t1-c1"
    client = aioredis.Redis()  # never connected: only the key names are read
    progress = CampaignProgress(client, "nlq", "t1", "c1")
    assert (progress.total_key, progress.done_key, progress.flag_key) == (
        "nlq:email:campaign:t1:c1:batches", "nlq:email:campaign:t1:c1:done",
        "nlq:email:campaign:t1:c1:completed")
    await client.aclose()


def test_options_are_translated_to_bullmq() -> None:
    assert to_bullmq_options({"job_id": "welcome-1", "delay": 1500, "priority": 1,
                              "attempts": 4, "backoff": {"type": "fixed", "delay": 10},
                              "remove_on_complete": True}) == {
        "jobId": "welcome-1", "delay": 1500, "priority": 1, "attempts": 4,
        "backoff": {"type": "fixed", "delay": 10}, "removeOnComplete": True}
    assert to_bullmq_options(None) == {}


def test_bad_options_name_every_field() -> None:
    with pytest.raises(JobValidationError) as info:
        to_bullmq_options({"delay": -1, "priority": 3_000_000, "attempts": 0,
                           "job_id": "12", "colour": "red"})  # type: ignore[typeddict-unknown-key]
    assert set(info.value.paths) == {"opts.delay", "opts.priority", "opts.attempts",
                                     "opts.job_id", "opts.colour"}
