"""What every AI provider offers, what it returns, and how it fails.

The processors talk to providers only through ``AIProvider`` (a ``typing.Protocol``), so
an OpenAI-compatible HTTP API, the built-in offline heuristics or a test's own provider
are interchangeable. The errors sort failures into the three cases the AI queue treats
differently::

    NewsletterQueueError
    └── AIProviderError                 any provider failure (carries ``provider``)
        ├── ProviderRateLimited         HTTP 429: pause the whole queue for ``retry_after_ms``
        ├── ProviderUnavailable         5xx, timeout, connection error, garbled reply: retry
        └── ProviderRequestError        any other 4xx: the request itself is wrong, don't retry

No message, repr or attribute of these errors ever contains an API key: providers build
them from status codes and (redacted) response text only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ...errors import NewsletterQueueError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat-completions conversation."""

    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Usage:
    """Token counts as the provider reported them (0 when it did not)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "totalTokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Completion:
    """A provider's answer: the text plus who produced it.

    Attributes:
        text: the assistant message's content.
        provider: the provider's ``name`` (``openai-compatible``, ``offline`` …).
        model: the model that answered (as the server reports it, else the requested one).
        finish_reason: ``stop``, ``length`` … when the provider says.
        usage: token counts.
        latency_ms: wall time of the call.
    """

    text: str
    provider: str
    model: str
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "finishReason": self.finish_reason,
            "usage": self.usage.to_dict(),
            "latencyMs": self.latency_ms,
        }


@runtime_checkable
class AIProvider(Protocol):
    """A chat-completions provider.

    ``name`` identifies the implementation in job results and logs; ``model`` is the
    model it asks for.
    """

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 512,
        temperature: float = 0.7,
    ) -> Completion:
        """Answer the conversation ``messages``.

        Raises:
            ProviderRateLimited: the provider asked us to slow down.
            ProviderUnavailable: a transient failure; the same call may succeed later.
            ProviderRequestError: the request was refused; repeating it will not help.
        """
        ...


class AIProviderError(NewsletterQueueError):
    """A call to an AI provider failed.

    Attributes:
        provider: the provider's ``name``.
        status_code: the HTTP status, when there was a response.
    """

    def __init__(self, provider: str, message: str, status_code: int | None = None) -> None:
        self.provider = provider
        self.status_code = status_code
        self.detail = message
        super().__init__(f"{provider}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable with its arguments (processors may run in a process pool).
        return (type(self), (self.provider, self.detail, self.status_code))


class ProviderRateLimited(AIProviderError):
    """The provider answered 429. ``retry_after_ms``: how long it asked us to wait."""

    def __init__(self, provider: str, retry_after_ms: int, message: str = "") -> None:
        self.retry_after_ms = retry_after_ms
        self.reason = message
        text = f"rate limited; retry after {retry_after_ms} ms"
        super().__init__(provider, f"{text} ({message})" if message else text, 429)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.provider, self.retry_after_ms, self.reason))


class ProviderUnavailable(AIProviderError):
    """A transient failure (5xx, timeout, connection error, garbled reply): retry later."""


class ProviderRequestError(AIProviderError):
    """The provider refused the request (4xx other than 408/429): do not retry it."""
