"""AI providers: an OpenAI-compatible chat API over httpx, or offline heuristics.

``provider_from_settings`` picks the OpenAI-compatible provider when ``AI_BASE_URL`` is
set and the offline one otherwise, so nothing needs a network or an account by default.
The processors (``processors/ai.py``) depend only on the ``AIProvider`` protocol.
"""

from __future__ import annotations

from ...config import Settings
from .base import (
    AIProvider,
    AIProviderError,
    ChatMessage,
    Completion,
    ProviderRateLimited,
    ProviderRequestError,
    ProviderUnavailable,
    Usage,
)
from .offline import OfflineProvider
from .openai import OpenAICompatibleProvider

__all__ = [
    "AIProvider",
    "AIProviderError",
    "ChatMessage",
    "Completion",
    "OfflineProvider",
    "OpenAICompatibleProvider",
    "ProviderRateLimited",
    "ProviderRequestError",
    "ProviderUnavailable",
    "Usage",
    "provider_from_settings",
]


def provider_from_settings(settings: Settings) -> AIProvider:
    """``OpenAICompatibleProvider`` if ``settings.ai_base_url`` is set, else offline.

    The caller owns the returned provider; an ``OpenAICompatibleProvider`` should be
    closed with ``await provider.aclose()`` when the worker stops.
    """
    if settings.ai_base_url:
        return OpenAICompatibleProvider(
            settings.ai_base_url,
            settings.ai_api_key,
            settings.ai_model,
            settings.ai_timeout_s,
        )
    return OfflineProvider()
