"""OpenAICompatibleProvider against a real HTTP server (tests/support/fakeopenai.py), the
offline provider, and the choice between them."""

from __future__ import annotations

import logging
import pickle
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr

from newsletter_queue.services.ai import (
    AIProvider,
    ChatMessage,
    OfflineProvider,
    OpenAICompatibleProvider,
    ProviderRateLimited,
    ProviderRequestError,
    ProviderUnavailable,
    provider_from_settings,
)
from newsletter_queue.services.ai.openai import DEFAULT_RETRY_AFTER_MS
from newsletter_queue.services.ai.prompts import CONTENT, SUBJECTS, build_messages
from tests.conftest import make_settings
from tests.integration.ai.conftest import API_KEY, MODEL
from tests.support.fakeopenai import FakeOpenAI, Scripted

HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello")]


async def test_happy_path_sends_model_messages_and_key(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake_openai.reply("Hello!", model="served-model-7", prompt_tokens=12, completion_tokens=3)
    completion = await provider.complete(HELLO, max_tokens=64, temperature=0.2)

    assert completion.text == "Hello!"
    assert (completion.provider, completion.model) == ("openai-compatible", "served-model-7")
    assert completion.finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 3)
    assert completion.latency_ms >= 0
    [request] = fake_openai.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.authorization == f"Bearer {API_KEY}"
    assert request.body == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Say hello"}],
        "max_tokens": 64,
        "temperature": 0.2,
    }
    assert isinstance(provider, AIProvider)


async def test_no_key_sends_no_authorization_header(fake_openai: FakeOpenAI) -> None:
    # Ollama and vLLM run without a key.
    fake_openai.reply("hi")
    async with OpenAICompatibleProvider(fake_openai.base_url + "/", None, "llama3.2") as p:
        completion = await p.complete(HELLO)
    assert completion.model == "llama3.2"  # the server echoes the requested model
    assert fake_openai.requests[0].authorization is None
    assert fake_openai.requests[0].path == "/v1/chat/completions"  # trailing slash ignored


async def test_shared_client_is_not_closed(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("one")
    async with httpx.AsyncClient() as client:
        p = OpenAICompatibleProvider(fake_openai.base_url, None, "m", 5, client)
        await p.complete(HELLO)
        await p.aclose()
        assert not client.is_closed


@pytest.mark.parametrize(("headers", "expected_ms"), [
    ({"Retry-After": "3"}, 3000),
    ({"Retry-After": "0.25"}, 250),
    ({"Retry-After": "2", "retry-after-ms": "1500"}, 1500),
    ({}, DEFAULT_RETRY_AFTER_MS),
    ({"Retry-After": "soon"}, DEFAULT_RETRY_AFTER_MS),
])
async def test_429_is_rate_limited_with_the_servers_wait(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider,
    headers: dict[str, str], expected_ms: int,
) -> None:
    fake_openai.rate_limit(None, headers=headers)
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.complete(HELLO)
    assert caught.value.retry_after_ms == expected_ms
    assert caught.value.status_code == 429
    assert "Rate limit reached" in str(caught.value)


async def test_429_with_an_http_date(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    fake_openai.rate_limit(format_datetime(when, usegmt=True))
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.complete(HELLO)
    # HTTP dates have whole seconds: 29–30 s from now, minus the call's own time (a few
    # seconds at most on a slow, busy machine; well above what a missed date would give,
    # the default 5 s or 0).
    assert 25_000 <= caught.value.retry_after_ms <= 30_000


@pytest.mark.parametrize("status", [500, 502, 503, 529, 408])
async def test_server_errors_are_transient(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider, status: int
) -> None:
    fake_openai.error(status, "upstream overloaded")
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.complete(HELLO)
    assert caught.value.status_code == status
    assert f"HTTP {status}" in str(caught.value)
    assert "upstream overloaded" in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_client_errors_are_permanent(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider, status: int
) -> None:
    fake_openai.error(status, "model 'x' does not exist")
    with pytest.raises(ProviderRequestError) as caught:
        await provider.complete(HELLO)
    assert caught.value.status_code == status
    assert "model 'x' does not exist" in str(caught.value)


async def test_timeout_is_transient(fake_openai: FakeOpenAI) -> None:
    fake_openai.hang()
    async with OpenAICompatibleProvider(fake_openai.base_url, SecretStr(API_KEY), MODEL,
                                        timeout_s=0.3) as p:
        with pytest.raises(ProviderUnavailable, match=r"no answer .* within 0\.3 s"):
            await p.complete(HELLO)
    assert len(fake_openai.requests) == 1


async def test_connection_refused_is_transient() -> None:
    fake = FakeOpenAI()
    await fake.start()
    url = fake.base_url
    await fake.stop()  # nothing listens on that port any more
    async with OpenAICompatibleProvider(url, SecretStr(API_KEY), MODEL, timeout_s=2) as p:
        with pytest.raises(ProviderUnavailable, match="cannot reach"):
            await p.complete(HELLO)


@pytest.mark.parametrize("raw", ["not json at all", '{"choices": []}', '{"object": "list"}'])
async def test_garbled_reply_is_transient(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider, raw: str
) -> None:
    fake_openai.respond(Scripted(200, raw=raw))
    with pytest.raises(ProviderUnavailable, match="not a chat completion"):
        await provider.complete(HELLO)


async def test_undecodable_body_is_transient(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake_openai.respond(Scripted(200, raw="not gzip", headers={"Content-Encoding": "gzip"}))
    with pytest.raises(ProviderUnavailable, match="DecodingError"):
        await provider.complete(HELLO)


async def test_refusal_is_permanent(
    fake_openai: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake_openai.respond(Scripted(200, {"model": MODEL, "choices": [{"message": {
        "role": "assistant", "content": None, "refusal": "I can't help with that."}}]}))
    with pytest.raises(ProviderRequestError, match="the model refused"):
        await provider.complete(HELLO)


async def test_api_key_never_leaks(
    fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    # A generous timeout for the calls that must be answered (a slow machine must not
    # turn them into timeouts); a short one only for the call the server never answers.
    p = OpenAICompatibleProvider(fake_openai.base_url, SecretStr(API_KEY), MODEL, timeout_s=30)
    impatient = OpenAICompatibleProvider(fake_openai.base_url, SecretStr(API_KEY), MODEL,
                                         timeout_s=0.3)
    errors: list[Exception] = []
    # The server echoes the key back, as some gateways do in their 401 messages.
    fake_openai.error(401, f"Incorrect API key provided: {API_KEY}")
    fake_openai.error(500, f"backend rejected token {API_KEY}")
    fake_openai.respond(Scripted(429, {"error": {"message": f"slow down {API_KEY}"}}))
    fake_openai.respond(Scripted(200, raw=f"garbage {API_KEY}"))
    fake_openai.hang()
    fake_openai.reply("fine")
    for provider in (p, p, p, p, impatient):
        try:
            await provider.complete(HELLO)
        except Exception as exc:
            errors.append(exc)
    await p.complete(HELLO)
    await p.aclose()
    await impatient.aclose()

    assert [type(e) for e in errors] == [ProviderRequestError, ProviderUnavailable,
                                         ProviderRateLimited, ProviderUnavailable,
                                         ProviderUnavailable]
    assert all(r.authorization == f"Bearer {API_KEY}" for r in fake_openai.requests)
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(p), repr(impatient)]
    texts += [str(e.args) for e in errors] + [caplog.text]
    texts += [str(pickle.loads(pickle.dumps(e))) for e in errors]  # noqa: S301 (our own bytes)
    assert caplog.records  # something was logged, and it is clean
    for text in texts:
        assert API_KEY not in text, text
    assert "***" in str(errors[0])
    assert repr(p).endswith("api_key='**********', timeout_s=30)")
    assert repr(impatient).endswith("api_key='**********', timeout_s=0.3)")


async def test_base_url_password_is_masked(fake_openai: FakeOpenAI) -> None:
    url = fake_openai.base_url.replace("http://", "http://user:hunter2@")
    async with OpenAICompatibleProvider(url, None, MODEL) as p:
        fake_openai.error(503)
        with pytest.raises(ProviderUnavailable) as caught:
            await p.complete(HELLO)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(p)
    assert "user:***@" in str(caught.value)


def test_rejects_a_non_http_base_url() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAICompatibleProvider("ftp://example.com", None, MODEL)


async def test_offline_provider_is_deterministic() -> None:
    messages = build_messages(CONTENT, {"topic": "spring gardening", "outline": ["Seeds"],
                                        "tone": "casual"})
    first = await OfflineProvider().complete(messages)
    second = await OfflineProvider().complete(messages)
    assert first == second
    assert (first.provider, first.model) == ("offline", "heuristics-v1")
    assert '"subject": "Spring gardening: what you need to know"' in first.text

    subjects = build_messages(SUBJECTS, {"candidates": ["FREE stuff!!!"]})
    answers = {(await OfflineProvider().complete(subjects)).text for _ in range(3)}
    assert len(answers) == 1

    other = await OfflineProvider().complete([ChatMessage("user", "What is the time?")])
    assert "AI_BASE_URL is unset" in other.text
    assert "What is the time?" in other.text


async def test_provider_from_settings() -> None:
    offline = provider_from_settings(make_settings())
    assert isinstance(offline, OfflineProvider)
    online = provider_from_settings(make_settings(
        ai_base_url="http://127.0.0.1:9/v1", ai_api_key="k-123456789", ai_model="m1",
        ai_timeout_s=3))
    assert isinstance(online, OpenAICompatibleProvider)
    assert (online.model, online.timeout_s, online.name) == ("m1", 3, "openai-compatible")
    assert "k-123456789" not in repr(online)
    await online.aclose()
