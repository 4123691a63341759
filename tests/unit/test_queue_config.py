"""The queue table and its overrides from settings (no Redis needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from newsletter_queue.queues import QUEUE_DEFAULTS, QUEUE_NAMES, QueueConfig, QueueName
from tests.conftest import make_settings


def test_three_queues_with_the_seeds_concurrency() -> None:
    assert QUEUE_NAMES == ("email", "analytics", "ai")
    assert QUEUE_DEFAULTS[QueueName.EMAIL].concurrency == 5
    assert QUEUE_DEFAULTS[QueueName.ANALYTICS].concurrency == 3
    assert QUEUE_DEFAULTS[QueueName.AI].concurrency == 2


def test_email_and_ai_are_rate_limited() -> None:
    assert QUEUE_DEFAULTS[QueueName.EMAIL].rate_limit is not None
    assert QUEUE_DEFAULTS[QueueName.AI].rate_limit is not None


@pytest.mark.parametrize("name", QUEUE_NAMES)
def test_default_job_options_bound_redis_memory(name: str) -> None:
    opts = QUEUE_DEFAULTS[name].default_job_options()
    assert opts["attempts"] >= 1
    assert opts["backoff"]["type"] == "exponential"
    for key in ("removeOnComplete", "removeOnFail"):
        assert set(opts[key]) == {"age", "count"}
        assert opts[key]["age"] > 0
        assert opts[key]["count"] > 0


def test_env_overrides_one_field_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLQ_QUEUES__EMAIL__CONCURRENCY", "12")
    monkeypatch.setenv("NLQ_QUEUES__AI__RATE_LIMIT", '{"max": 3, "duration_ms": 60000}')
    settings = make_settings()
    email = settings.queue_config("email")
    assert email.concurrency == 12
    assert email.attempts == QUEUE_DEFAULTS[QueueName.EMAIL].attempts
    assert email.rate_limit == QUEUE_DEFAULTS[QueueName.EMAIL].rate_limit
    ai = settings.queue_config("ai")
    assert ai.rate_limit is not None
    assert (ai.rate_limit.max, ai.rate_limit.duration_ms) == (3, 60000)
    assert settings.queue_config("analytics") == QUEUE_DEFAULTS[QueueName.ANALYTICS]


def test_keyword_override_of_retention() -> None:
    settings = make_settings(queues={"analytics": {"remove_on_complete": {"age_s": 60,
                                                                          "count": 10}}})
    opts = settings.queue_config("analytics").default_job_options()
    assert opts["removeOnComplete"] == {"age": 60, "count": 10}


def test_unknown_queue_in_overrides_is_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown queue 'sms'"):
        make_settings(queues={"sms": {"concurrency": 1}})


def test_invalid_queue_values_are_rejected() -> None:
    with pytest.raises(ValidationError, match="concurrency"):
        make_settings(queues={"email": {"concurrency": 0}})
    with pytest.raises(ValidationError):
        QueueConfig(attempts=0)


def test_backoff_jitter_is_passed_to_bullmq() -> None:
    backoff = QUEUE_DEFAULTS[QueueName.EMAIL].default_job_options()["backoff"]
    assert 0 < backoff["jitter"] <= 1
