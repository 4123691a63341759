"""Job states, the job hash and the application's keys: each modelled once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from newsletter_queue import keyspace
from newsletter_queue.campaigns import CampaignProgress
from newsletter_queue.engine.jobhash import as_int, parse_job_hash
from newsletter_queue.engine.keys import QueueKeys, worker_name_prefix
from newsletter_queue.engine.states import (
    CLEAN_STATES,
    JOB_STATES,
    OVERVIEW_STATES,
    JobState,
)
from newsletter_queue.services.circuit import CircuitBreaker
from newsletter_queue.services.ratelimit import SendRateLimiter
from newsletter_queue.services.send_ledger import CampaignLedger
from newsletter_queue.snapshots import JobInfo, QueueStats

STATIC = Path(__file__).parents[2] / "src" / "newsletter_queue" / "api" / "static"


def test_each_state_knows_its_key_and_structure() -> None:
    keys = QueueKeys("{p}", "email")
    assert keys.state(JobState.WAITING) == keys.wait == "{p}:email:wait"
    assert keys.state(JobState.WAITING_CHILDREN) == "{p}:email:waiting-children"
    assert {s for s in JobState if s.is_list} == {JobState.WAITING, JobState.ACTIVE,
                                                 JobState.PAUSED}
    assert JOB_STATES == ("waiting", "prioritized", "active", "delayed", "completed",
                          "failed", "paused", "waiting-children")
    assert JOB_STATES[:6] == OVERVIEW_STATES
    assert set(CLEAN_STATES) == set(JOB_STATES) - {"waiting-children"}
    stats = QueueStats("q", **{s.field: i for i, s in enumerate(JobState)}, is_paused=False)
    assert [getattr(stats, s.field) for s in JobState] == list(range(8))


def test_the_dashboard_takes_its_states_from_the_server() -> None:
    """No state list in the page or its script: both come from ``action=dashboard``."""
    script = (STATIC / "dashboard.js").read_text(encoding="utf-8")
    page = (STATIC / "dashboard.html").read_text(encoding="utf-8")
    assert "data.overview_states" in script
    assert "data.job_states" in script
    for text in (script, page):
        assert not re.search(r'"prioritized"|>prioritized<|"waiting-children"', text)


def test_a_reader_shows_what_the_worker_refuses() -> None:
    raw = {"name": "n", "data": "{not json", "opts": '{"attempts": 3, "kl": 5}',
           "atm": "two", "timestamp": "1700000000000.0", "stacktrace": '["a", "b"]'}
    with pytest.raises(ValueError, match="Expecting property name"):
        parse_job_hash(raw, strict=True)
    lenient = parse_job_hash(raw)
    assert lenient.data == "{not json"
    assert lenient.attempts_made == 0
    assert lenient.timestamp == 1_700_000_000_000
    assert lenient.stacktrace == ["a", "b"]
    with pytest.raises(ValueError, match="not an object"):
        parse_job_hash({"opts": "[1]"}, strict=True)
    assert parse_job_hash({"opts": "[1]"}).opts == {}


def test_job_info_is_the_parsed_hash_with_its_place() -> None:
    raw = {"name": "send-batch", "data": json.dumps({"campaignId": "c"}), "atm": "2",
           "ats": "3", "pb": "w-1", "returnvalue": '{"sent": 1}', "defa": "x"}
    info = JobInfo.from_hash("email", "7", raw, "completed")
    assert (info.id, info.queue, info.state, info.attempts_made, info.attempts_started,
            info.processed_by, info.return_value) == ("7", "email", "completed", 2, 3,
                                                      "w-1", {"sent": 1})
    shown: dict[str, Any] = info.to_dict()
    assert list(shown)[:2] == ["id", "queue"]
    assert "deferred_failure" not in shown
    assert "repeat_job_key" not in shown


@pytest.mark.parametrize(("value", "expected"), [
    ("12", 12), ("12.9", 12), ("", 0), (None, 0), ("inf", 0), ("nan", 0), ("x", 0), (7, 7)])
def test_as_int(value: Any, expected: int) -> None:
    assert as_int(value, 0) == expected


def test_every_application_key_is_named_in_keyspace() -> None:
    client = aioredis.Redis()  # never connects: the constructors only register scripts
    p = "{nlq}"
    assert CircuitBreaker(client, p, "smtp").key == keyspace.breaker_key(p, "smtp")
    assert SendRateLimiter(client, p, global_rate=1, tenant_rate=1).prefix == \
        keyspace.send_rate_key(p)
    ledger = CampaignLedger(client, p, "t", "c")
    assert ledger.key == keyspace.ledger_key(p, "t", "c") == "{nlq}:email:ledger:t:c"
    progress = CampaignProgress(client, p, "t", "c")
    assert progress.total_key == keyspace.campaign_key(p, "t", "c") + ":batches"
    assert keyspace.devmail_key(p) == "{nlq}:devmail"
    assert keyspace.emails_counter_key(p) == "{nlq}:monitor:emails"
    assert keyspace.histogram_key(p, "ai") == "{nlq}:monitor:ai:hist"
    assert keyspace.BREAKERS == ("smtp", "ai")
    assert worker_name_prefix(p, "email") == "{nlq}:ZW1haWw=:w:"
