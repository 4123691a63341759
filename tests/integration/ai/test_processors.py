"""The AI processor: each job type offline and online, rate limits, the circuit breaker
(real Redis), invalid data. The provider is real; only the remote API is the fake."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from newsletter_queue.engine import RateLimited, UnrecoverableError
from newsletter_queue.processors.ai import build_ai_processors
from newsletter_queue.services.ai import (
    OfflineProvider,
    OpenAICompatibleProvider,
    ProviderUnavailable,
)
from newsletter_queue.services.circuit import CircuitBreaker
from newsletter_queue.services.store import Store
from tests.integration.ai.conftest import MODEL, RecordingJob, ai_job
from tests.support.fakeopenai import FakeOpenAI
from tests.support.helpers import wait_for

CONTENT_DATA = {"topic": "spring gardening", "outline": ["Seeds to start indoors",
                                                         "When to plant tomatoes"],
                "tone": "casual", "audience": "beginners"}
SUBJECT_DATA = {"subjects": ["FREE seeds!!! Act now", "Your spring garden plan: 5 steps"]}
STATS_DATA = {"stats": {"sent": 1000, "bounced": 80, "opens": 100, "clicks": 5,
                        "unsubscribes": 1, "send_hour": 6, "best_send_hour": 9}}
# Long enough that the checks of an open circuit run inside the cool-down even on a slow,
# busy machine (the breaker tests wait it out once each).
COOLDOWN_MS = 2000
COOLED_DOWN_WITHIN_S = COOLDOWN_MS / 1000 + 30


def test_processor_names() -> None:
    processors = build_ai_processors(OfflineProvider(), None)
    assert sorted(processors) == ["ai-job", "campaign-insights", "content-generation",
                                  "subject-optimization"]
    assert len(set(processors.values())) == 1  # one function, dispatching on data.type


# --- offline --------------------------------------------------------------------------
async def test_offline_content_generation_is_a_deterministic_template() -> None:
    process = build_ai_processors(OfflineProvider())["ai-job"]
    job = ai_job("content-generation", CONTENT_DATA)
    value = await process(job)
    again = await process(ai_job("content-generation", CONTENT_DATA))
    assert value == again
    assert (value["provider"], value["model"], value["type"]) == (
        "offline", "heuristics-v1", "content-generation")
    assert (value["jobId"], value["tenantId"]) == ("job-1", "tenant-1")
    result = value["result"]
    assert result["format"] == "json"
    assert result["subject"] == "Spring gardening: what beginners should know"
    assert result["preheader"] == "Inside: Seeds to start indoors and 1 more"
    assert result["html"].startswith("<h1>Spring gardening</h1>\n<p>Hey {{ name }}!</p>")
    assert "<h2>When to plant tomatoes</h2>" in result["html"]
    assert result["text"].splitlines()[0] == "Hey {{ name }}!"
    assert result["notes"].startswith("template draft")
    assert result["subjectScore"]["score"] == 90
    assert job.progress == [10, 90, 100]
    json.dumps(value)  # JSON-able as a job return value


async def test_offline_subject_optimization_ranks_and_suggests() -> None:
    process = build_ai_processors(OfflineProvider())["subject-optimization"]
    value = await process(ai_job("subject-optimization", SUBJECT_DATA))
    result = value["result"]
    assert [c["subject"] for c in result["candidates"]] == [
        "Your spring garden plan: 5 steps", "FREE seeds!!! Act now"]
    # 90 + 3 (number) / 90 − 10 (21 chars) − 45 (3 triggers) − 10 (FREE) − 10 (!!!)
    assert [c["score"] for c in result["candidates"]] == [93, 15]
    assert [c["rank"] for c in result["candidates"]] == [1, 2]
    assert result["candidates"][1]["spamTriggers"] == ["free", "!!!", "act now"]
    assert [s["subject"] for s in result["suggestions"]] == [
        "{{ name }}, your spring garden plan: 5 steps",
        "This week: your spring garden plan: 5 steps",
        "Seeds",  # the cleaned second candidate
    ]
    assert [s["score"] for s in result["suggestions"]] == [98, 93, 70]
    assert result["best"] == {"subject": "{{ name }}, your spring garden plan: 5 steps",
                              "score": 98, "source": "suggestion"}


async def test_offline_campaign_insights() -> None:
    process = build_ai_processors(OfflineProvider())["campaign-insights"]
    value = await process(ai_job("campaign-insights", STATS_DATA))
    result = value["result"]
    assert [r["code"] for r in result["recommendations"]] == [
        "list-hygiene", "subject-lines", "calls-to-action", "send-time"]
    assert [r["severity"] for r in result["recommendations"]] == [
        "high", "high", "high", "medium"]
    assert result["metrics"]["delivered"] == 920
    assert result["metrics"]["bounceRate"] == 0.08
    assert result["summary"].startswith(
        "Sent 1000, open rate 10.9%, click rate 0.5%, bounce rate 8.0%. Top priority: "
        "Bounce rate 8.0% is above 5.0%")
    assert result["summary"].endswith("(3 more to review.)")


# --- online ---------------------------------------------------------------------------
async def test_online_content_generation_parses_fenced_json(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    draft = {"subject": "Grow your first\r\ntomatoes", "preheader": "Start seeds in March",
             "html": "<h1>Tomatoes</h1><p>Hi {{ name }}, start now.</p>"}
    fake_openai.reply("Sure! Here is the draft:\n```json\n" + json.dumps(draft) + "\n```",
                      model="gpt-served")
    value = await build_ai_processors(provider)["content-generation"](
        ai_job("content-generation", CONTENT_DATA))
    assert (value["provider"], value["model"]) == ("openai-compatible", "gpt-served")
    result = value["result"]
    assert result["format"] == "json"
    assert result["subject"] == "Grow your first tomatoes"  # no header injection
    assert result["text"] == "Tomatoes\nHi {{ name }}, start now."  # derived from html
    [request] = fake_openai.requests
    assert request.model == MODEL
    system, user = request.messages
    assert system["role"] == "system"
    assert system["content"].startswith("newsletter-queue task: content-generation\n")
    assert json.loads(user["content"]) == {**CONTENT_DATA, "max_words": 400}
    assert request.body["max_tokens"] == 1600
    assert value["usage"] == {"promptTokens": 11, "completionTokens": 7, "totalTokens": 18}


async def test_online_content_generation_falls_back_to_raw_text(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake_openai.reply("Spring is here.\n\nStart your seeds <indoors> now.")
    value = await build_ai_processors(provider)["ai-job"](
        ai_job("content-generation", CONTENT_DATA))
    result = value["result"]
    assert result["format"] == "text"
    assert result["subject"] == "Spring gardening: what beginners should know"
    assert result["text"] == "Spring is here.\n\nStart your seeds <indoors> now."
    assert result["html"] == ("<p>Spring is here.</p>\n"
                              "<p>Start your seeds &lt;indoors&gt; now.</p>")


async def test_online_subject_optimization_scores_the_models_ideas(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake_openai.reply(json.dumps({"alternatives": [
        "{{ name }}, your 5-step spring garden plan", "FREE seeds!!! Act now",
        "Plan your spring garden in 5 steps 🌱", "A fourth one"]}))
    value = await build_ai_processors(provider)["ai-job"](
        ai_job("subject-optimization", {**SUBJECT_DATA, "topic": "gardening"}))
    result = value["result"]
    # The candidate repeated by the model is dropped; at most three are kept.
    assert [(s["subject"], s["score"]) for s in result["suggestions"]] == [
        ("{{ name }}, your 5-step spring garden plan", 98),
        ("Plan your spring garden in 5 steps 🌱", 95),
        ("A fourth one", 70),
    ]
    assert result["best"]["source"] == "suggestion"
    payload = json.loads(fake_openai.requests[0].messages[1]["content"])
    assert payload["topic"] == "gardening"
    assert [c["score"] for c in payload["candidates"]] == [93, 15]


async def test_online_subject_optimization_reads_plain_lines(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake_openai.reply('Here are three ideas:\n1. "Your garden, planned in 5 steps"\n'
                      "2. Spring planting made simple\n- Start seeds the easy way")
    value = await build_ai_processors(provider)["ai-job"](
        ai_job("subject-optimization", SUBJECT_DATA))
    assert [s["subject"] for s in value["result"]["suggestions"]] == [
        "Your garden, planned in 5 steps", "Spring planting made simple",
        "Start seeds the easy way"]


async def test_online_campaign_insights_adds_the_summary(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake_openai.reply("  Bounces are high; clean the list before the next send.  ")
    value = await build_ai_processors(provider)["ai-job"](
        ai_job("campaign-insights", {**STATS_DATA, "campaignId": "c-9"}))
    result = value["result"]
    assert result["summary"] == "Bounces are high; clean the list before the next send."
    assert result["campaignId"] == "c-9"
    assert result["recommendations"][0]["code"] == "list-hygiene"
    payload = json.loads(fake_openai.requests[0].messages[1]["content"])
    assert payload["metrics"]["sent"] == 1000
    assert payload["recommendations"][0]["code"] == "list-hygiene"


async def test_results_are_saved_through_the_hook(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    saved: list[dict[str, Any]] = []

    async def save(record: dict[str, Any]) -> None:
        saved.append(record)

    fake_openai.reply("Summary.")
    job = ai_job("campaign-insights", STATS_DATA)
    value = await build_ai_processors(provider, None, save)["ai-job"](job)
    [record] = saved
    assert record["input"] == STATS_DATA
    assert {k: v for k, v in record.items() if k != "input"} == value


async def test_results_are_saved_in_the_store_once_per_job(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider, tmp_path: Path
) -> None:
    async with Store(f"sqlite+aiosqlite:///{tmp_path / 'ai.sqlite3'}") as store:
        process = build_ai_processors(provider, None, store)["ai-job"]
        fake_openai.reply("First summary.")
        fake_openai.reply("Second summary.")
        await process(ai_job("campaign-insights", STATS_DATA))
        value = await process(ai_job("campaign-insights", STATS_DATA))  # a retry
        saved = await store.get_ai_result("job-1")
    assert saved is not None
    assert (saved.tenant_id, saved.type, saved.provider, saved.model) == (
        "tenant-1", "campaign-insights", "openai-compatible", MODEL)
    assert saved.input == STATS_DATA
    assert saved.output == value
    assert saved.output["result"]["summary"] == "Second summary."


# --- failures -------------------------------------------------------------------------
async def test_429_rate_limits_the_queue_for_retry_after(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake_openai.rate_limit("7")
    job = ai_job("subject-optimization", SUBJECT_DATA)
    with pytest.raises(RateLimited) as caught:
        await build_ai_processors(provider)["ai-job"](job)
    assert caught.value.ms == 7000
    assert "pausing the queue for 7000 ms" in job.logs[-1]


async def test_retry_after_is_capped(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake_openai.rate_limit("86400")
    with pytest.raises(RateLimited) as caught:
        await build_ai_processors(provider, max_rate_limit_ms=60_000)["ai-job"](
            ai_job("subject-optimization", SUBJECT_DATA))
    assert caught.value.ms == 60_000


async def test_client_error_fails_the_job_at_once(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake_openai.error(400, "max_tokens is too large")
    with pytest.raises(UnrecoverableError, match=r"HTTP 400.*max_tokens is too large"):
        await build_ai_processors(provider)["ai-job"](ai_job("content-generation",
                                                             CONTENT_DATA))


async def test_circuit_opens_on_repeated_5xx_and_a_probe_closes_it(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider,
    redis_client: aioredis.Redis, prefix: str,
) -> None:
    breaker = CircuitBreaker(redis_client, prefix, "ai", threshold=3, cooldown_ms=COOLDOWN_MS)
    process = build_ai_processors(provider, breaker)["ai-job"]
    for _ in range(3):
        fake_openai.error(500)
    for _ in range(3):  # transient: a plain exception, so the job retries with backoff
        with pytest.raises(ProviderUnavailable):
            await process(ai_job("campaign-insights", STATS_DATA))
    status = await breaker.status()
    assert (status.state, status.failures) == ("open", 3)

    # Open: the processor pauses the queue and never calls the provider.
    job = ai_job("campaign-insights", STATS_DATA)
    with pytest.raises(RateLimited) as caught:
        await process(job)
    assert 0 < caught.value.ms <= COOLDOWN_MS  # the rest of the cool-down
    assert len(fake_openai.requests) == 3
    assert "circuit 'ai' is open" in job.logs[0]

    # After the cool-down one half-open probe goes through; its success closes it.
    await wait_for(lambda: _cooled_down(breaker), timeout=COOLED_DOWN_WITHIN_S,
                   message="the cool-down to end")
    fake_openai.reply("Recovered.")
    value = await process(ai_job("campaign-insights", STATS_DATA))
    assert value["result"]["summary"] == "Recovered."
    assert len(fake_openai.requests) == 4
    status = await breaker.status()
    assert (status.state, status.failures, status.opened_count) == ("closed", 0, 1)


async def _cooled_down(breaker: CircuitBreaker) -> bool:
    """The cool-down is over (read from Redis without taking the half-open probe)."""
    return int(time.time() * 1000) >= (await breaker.status()).open_until_ms


async def test_failed_probe_reopens_the_circuit(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider,
    redis_client: aioredis.Redis, prefix: str,
) -> None:
    breaker = CircuitBreaker(redis_client, prefix, "ai", threshold=1, cooldown_ms=COOLDOWN_MS)
    process = build_ai_processors(provider, breaker)["ai-job"]
    fake_openai.hang()
    async with OpenAICompatibleProvider(fake_openai.base_url, None, MODEL,
                                        timeout_s=0.2) as impatient:
        with pytest.raises(ProviderUnavailable, match="no answer"):
            await build_ai_processors(impatient, breaker)["ai-job"](
                ai_job("campaign-insights", STATS_DATA))
    first = await breaker.status()
    assert first.state == "open"
    await wait_for(lambda: _cooled_down(breaker), timeout=COOLED_DOWN_WITHIN_S,
                   message="the cool-down to end")
    fake_openai.error(502)
    with pytest.raises(ProviderUnavailable):
        await process(ai_job("campaign-insights", STATS_DATA))
    status = await breaker.status()
    assert (status.state, status.opened_count) == ("open", 2)
    with pytest.raises(RateLimited):
        await process(ai_job("campaign-insights", STATS_DATA))
    assert len(fake_openai.requests) == 2


async def test_a_429_does_not_count_as_a_failure(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider,
    redis_client: aioredis.Redis, prefix: str,
) -> None:
    breaker = CircuitBreaker(redis_client, prefix, "ai", threshold=2, cooldown_ms=60_000)
    process = build_ai_processors(provider, breaker)["ai-job"]
    fake_openai.error(500)
    fake_openai.rate_limit("1")
    fake_openai.error(500)
    with pytest.raises(ProviderUnavailable):
        await process(ai_job("campaign-insights", STATS_DATA))
    with pytest.raises(RateLimited):
        await process(ai_job("campaign-insights", STATS_DATA))
    with pytest.raises(ProviderUnavailable):
        await process(ai_job("campaign-insights", STATS_DATA))
    assert (await breaker.status()).state == "closed"  # not two consecutive failures


@pytest.mark.parametrize(("data", "paths"), [
    ({"tenantId": "t1", "type": "translate", "data": {}}, ["type"]),
    ({"type": "content-generation", "data": {"topic": "x"}}, ["tenantId"]),
    ({"tenantId": "t:1", "type": "content-generation"}, ["tenantId", "data"]),
    ({"tenantId": "t1", "type": "content-generation", "data": {"outline": "x"}},
     ["data.topic", "data.outline"]),
    ({"tenantId": "t1", "type": "subject-optimization", "data": {"subjects": ["ok", " "]}},
     ["data.subjects"]),
    ({"tenantId": "t1", "type": "campaign-insights",
      "data": {"stats": {"sent": -1, "openRate": 1.5, "bestSendHour": 24}}},
     ["data.stats.sent", "data.stats.openRate", "data.stats.bestSendHour"]),
    ("not an object", ["(root)"]),
])
async def test_invalid_data_fails_at_once_naming_every_path(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider, data: Any, paths: list[str]
) -> None:
    with pytest.raises(UnrecoverableError) as caught:
        await build_ai_processors(provider)["ai-job"](RecordingJob(data))
    message = str(caught.value)
    assert message.startswith("invalid AIJobData: ")
    for path in paths:
        assert f"{path}: " in message, message
    assert fake_openai.requests == []  # never asked the provider
