"""``OpenAICompatibleProvider``: the chat-completions API over httpx.

One small client instead of the ``openai`` SDK because the same ``POST
{base_url}/chat/completions`` JSON is spoken by OpenAI, Azure-style gateways, vLLM,
Ollama (``http://localhost:11434/v1``), LM Studio and most proxies, and because the AI
queue needs to classify failures precisely — which the SDK's built-in retries would hide:

- 429 → ``ProviderRateLimited`` with the wait the server asked for (``retry-after-ms``,
  else ``Retry-After`` in seconds or as an HTTP date, else ``default_retry_after_ms``),
  so the worker can pause the whole queue instead of burning attempts;
- 5xx, 408, timeouts, connection errors and unparseable replies → ``ProviderUnavailable``
  (transient: the job retries with backoff and the circuit breaker counts it);
- any other 4xx → ``ProviderRequestError`` (permanent: the job fails at once).

The API key stays a ``SecretStr`` until the moment the ``Authorization`` header is
built. Error messages are made from status codes and response text passed through
``_redact`` (the key and anything shaped like an ``sk-`` key are replaced), transport
exceptions are not chained (their context could carry the request), and the base URL is
shown through ``mask_url``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from ...config import mask_url
from .base import (
    ChatMessage,
    Completion,
    ProviderRateLimited,
    ProviderRequestError,
    ProviderUnavailable,
    Usage,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_MS = 5_000
_USER_AGENT = "newsletter-queue/0.1"
_KEY_SHAPE = re.compile(r"\b(sk|pk|key)-[A-Za-z0-9_\-]{8,}")
_EXCERPT_CHARS = 300


def parse_retry_after(
    headers: Mapping[str, str], default_ms: int, *, now: datetime | None = None
) -> int:
    """Milliseconds to wait according to a 429's headers (never negative).

    ``retry-after-ms`` (sent by OpenAI and Azure) wins over ``Retry-After``, which may be
    seconds (possibly fractional) or an HTTP date. Unparseable or absent → ``default_ms``.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms)
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return max(math.ceil(value), 0)
    raw = headers.get("retry-after")
    if not raw:
        return default_ms
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return default_ms
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delta = when - (now or datetime.now(UTC))
        return max(math.ceil(delta.total_seconds() * 1000), 0)
    if not math.isfinite(seconds):
        return default_ms
    return max(math.ceil(seconds * 1000), 0)


class OpenAICompatibleProvider:
    """An OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: the API root including its version, e.g. ``https://api.openai.com/v1``
            or ``http://localhost:11434/v1``; ``/chat/completions`` is appended.
        api_key: sent as ``Authorization: Bearer …`` when set (Ollama and vLLM need none).
        model: the model to ask for.
        timeout_s: deadline of one whole call (connect, send, wait, read).
        client: an ``httpx.AsyncClient`` to share; the provider then never closes it.
        name: how results and errors name this provider.
        default_retry_after_ms: the pause after a 429 that says nothing about when.
    """

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | str | None = None,
        model: str = "gpt-4o-mini",
        timeout_s: float = 30.0,
        client: httpx.AsyncClient | None = None,
        *,
        name: str = "openai-compatible",
        default_retry_after_ms: int = DEFAULT_RETRY_AFTER_MS,
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"AI base URL must be http(s)://…, got {mask_url(base_url)!r}")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if not model:
            raise ValueError("model must not be empty")
        self._base_url = base_url.rstrip("/")
        self._endpoint = f"{self._base_url}/chat/completions"
        self._api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        if self._api_key is not None and not self._api_key.get_secret_value():
            self._api_key = None
        self._model = model
        self._name = name
        self.timeout_s = timeout_s
        self.default_retry_after_ms = default_retry_after_ms
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return self._model

    @property
    def base_url(self) -> str:
        """The base URL with any password masked (safe to show)."""
        return mask_url(self._base_url)

    def __repr__(self) -> str:
        key = "None" if self._api_key is None else "'**********'"
        return (f"{type(self).__name__}(base_url={self.base_url!r}, model={self._model!r}, "
                f"api_key={key}, timeout_s={self.timeout_s})")

    async def aclose(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> OpenAICompatibleProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 512,
        temperature: float = 0.7,
    ) -> Completion:
        """POST the conversation to ``{base_url}/chat/completions`` and return the reply."""
        if not messages:
            raise ValueError("messages must not be empty")
        body = {
            "model": self._model,
            "messages": [m.to_dict() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.post(self._endpoint, json=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            raise ProviderUnavailable(
                self._name, f"no answer from {self.base_url} within {self.timeout_s:g} s"
            ) from None
        except httpx.RequestError as exc:  # transport, decoding, redirect loops
            detail = self._redact(str(exc)) or type(exc).__name__
            what = "cannot reach" if isinstance(exc, httpx.ConnectError) else "failed call to"
            raise ProviderUnavailable(
                self._name, f"{what} {self.base_url}: {type(exc).__name__}: {detail}"
            ) from None
        latency_ms = round((time.monotonic() - started) * 1000)
        log.debug("AI call %s model=%s status=%d latency=%dms",
                  self.base_url, self._model, response.status_code, latency_ms)
        if response.status_code >= 300:
            self._raise_for_status(response)
        return self._parse(response, latency_ms)

    # --- internals -------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        if self._api_key is not None:
            secret = self._api_key.get_secret_value()
            text = text.replace(secret, "***")
        return _KEY_SHAPE.sub(lambda m: f"{m.group(1)}-***", text)

    def _excerpt(self, response: httpx.Response) -> str:
        """The error message of a failed response, shortened and redacted."""
        message: str | None = None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            err = payload.get("error")
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                message = err["message"]
            elif isinstance(err, str):
                message = err
            elif isinstance(payload.get("message"), str):
                message = payload["message"]
        if message is None:
            message = response.text
        message = " ".join(message.split())
        if len(message) > _EXCERPT_CHARS:
            message = message[: _EXCERPT_CHARS - 1] + "…"
        return self._redact(message)

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        excerpt = self._excerpt(response)
        what = f"HTTP {status} from {self.base_url}" + (f": {excerpt}" if excerpt else "")
        if status == 429:
            retry_ms = parse_retry_after(response.headers, self.default_retry_after_ms)
            raise ProviderRateLimited(self._name, retry_ms, excerpt)
        if status >= 500 or status == 408:
            raise ProviderUnavailable(self._name, what, status)
        raise ProviderRequestError(self._name, what, status)

    def _parse(self, response: httpx.Response, latency_ms: int) -> Completion:
        try:
            payload: Any = response.json()
            choice = payload["choices"][0]
            message = choice["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ProviderUnavailable(
                self._name,
                f"unexpected reply from {self.base_url} (not a chat completion): "
                f"{self._excerpt(response)}",
                response.status_code,
            ) from None
        if content is None:
            refusal = message.get("refusal")
            if isinstance(refusal, str) and refusal:
                raise ProviderRequestError(
                    self._name, f"the model refused: {self._redact(refusal)[:_EXCERPT_CHARS]}",
                    response.status_code)
            content = ""
        usage_raw = payload.get("usage") if isinstance(payload, dict) else None
        usage = Usage()
        if isinstance(usage_raw, dict):
            usage = Usage(
                prompt_tokens=_int_or_zero(usage_raw.get("prompt_tokens")),
                completion_tokens=_int_or_zero(usage_raw.get("completion_tokens")),
            )
        model = payload.get("model")
        finish = choice.get("finish_reason")
        return Completion(
            text=str(content),
            provider=self._name,
            model=model if isinstance(model, str) and model else self._model,
            finish_reason=finish if isinstance(finish, str) else None,
            usage=usage,
            latency_ms=latency_ms,
        )


def _int_or_zero(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
