"""``OfflineProvider``: answers the AI jobs' conversations with heuristics, no network.

It is the default when ``AI_BASE_URL`` is unset, so a fresh install, CI and the test
suite run every AI job end to end without an account or a model. It recognises the
conversations built by ``prompts.build_messages`` and answers them the way a model is
asked to — a JSON draft from the template, JSON subject rewrites, a prose summary — so
the processor parses offline answers with the same code as online ones. Same input,
same output, always.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from .base import ChatMessage, Completion, Usage
from .drafts import template_draft
from .heuristics import offline_alternatives
from .insights import summarize
from .models import ContentRequest, SubjectRequest
from .prompts import CONTENT, INSIGHTS, SUBJECTS, decode_task

OFFLINE_MODEL = "heuristics-v1"
_ECHO_CHARS = 200


class OfflineProvider:
    """Deterministic answers for the AI jobs; a fixed note for anything else."""

    def __init__(self, model: str = OFFLINE_MODEL) -> None:
        self._model = model

    @property
    def name(self) -> str:
        return "offline"

    @property
    def model(self) -> str:
        return self._model

    def __repr__(self) -> str:
        return f"OfflineProvider(model={self._model!r})"

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 512,
        temperature: float = 0.7,
    ) -> Completion:
        if not messages:
            raise ValueError("messages must not be empty")
        text = self._answer(list(messages))
        prompt_words = sum(len(m.content.split()) for m in messages)
        return Completion(
            text=text, provider=self.name, model=self._model, finish_reason="stop",
            usage=Usage(prompt_tokens=prompt_words, completion_tokens=len(text.split())),
        )

    def _answer(self, messages: list[ChatMessage]) -> str:
        decoded = decode_task(messages)
        if decoded is not None:
            task, payload = decoded
            try:
                return _TASKS[task](payload)
            except (ValidationError, KeyError, TypeError, ValueError):
                pass  # not a payload we built: answer like any other conversation
        last = " ".join(messages[-1].content.split())[:_ECHO_CHARS]
        return ("No AI model is configured (AI_BASE_URL is unset), so this answer comes "
                f"from the offline heuristics. You asked: {last}")


def _content(payload: dict[str, Any]) -> str:
    draft = template_draft(ContentRequest.model_validate(payload))
    return json.dumps({**draft, "notes": "template draft: replace the bracketed "
                       "placeholders"}, ensure_ascii=False)


def _subjects(payload: dict[str, Any]) -> str:
    candidates = payload["candidates"]
    subjects = [c["subject"] if isinstance(c, dict) else c for c in candidates]
    request = SubjectRequest.model_validate({"subjects": subjects})
    return json.dumps({"alternatives": offline_alternatives(request.subjects)},
                      ensure_ascii=False)


def _insights(payload: dict[str, Any]) -> str:
    metrics = payload["metrics"]
    recommendations = payload["recommendations"]
    if not isinstance(metrics, dict) or not isinstance(recommendations, list):
        raise TypeError("metrics must be an object and recommendations a list")
    return summarize(metrics, [r for r in recommendations if isinstance(r, dict)])


_TASKS = {CONTENT: _content, SUBJECTS: _subjects, INSIGHTS: _insights}
