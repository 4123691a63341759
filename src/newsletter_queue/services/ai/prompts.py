"""The conversations the AI jobs send, and how their replies are read.

Every task is one system message (the instructions, first line ``TASK_HEADER + task``)
and one user message holding the task's input as JSON. That fixed shape lets the offline
provider answer the very same conversation with heuristics (``decode_task``), so online
and offline runs go through one code path in the processor.

Models wrap JSON in prose or code fences and sometimes add a trailing comment;
``extract_json_object`` finds the first JSON object wherever it is, and callers fall
back to the raw text when there is none.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .base import ChatMessage

TASK_HEADER = "newsletter-queue task: "
CONTENT = "content-generation"
SUBJECTS = "subject-optimization"
INSIGHTS = "campaign-insights"

_CONTENT_SYSTEM = """\
You are an expert email newsletter copywriter. Write one newsletter issue from the JSON \
input: topic, outline (sections, in order), tone, audience and an approximate length in \
words (max_words). Use {{ name }} where the reader's first name belongs. Do not invent \
statistics, quotes, prices or dates.
Reply with ONLY a JSON object, no prose and no code fences:
{"subject": "30-50 characters, no spam trigger words, no ALL CAPS",
 "preheader": "at most 100 characters",
 "html": "the body as simple HTML (h1, h2, p, ul, a); no <html>, <head>, <style> or \
<script>",
 "text": "the same body as plain text"}"""

_SUBJECTS_SYSTEM = """\
You write email subject lines. The JSON input holds candidate subject lines with their \
scores and the reasons for them, and optionally the topic and audience. Suggest exactly \
3 new subject lines that would score higher: 30-50 characters, no spam trigger words \
(free, act now, guarantee, $$$ ...), at most one exclamation mark, no ALL CAPS words, at \
most one emoji; a {{ name }} merge tag or a concrete number helps.
Reply with ONLY a JSON object: {"alternatives": ["...", "...", "..."]}"""

_INSIGHTS_SYSTEM = """\
You are an email marketing analyst. The JSON input holds one campaign's metrics (rates \
are fractions) and rule-based recommendations. In 2-4 plain sentences, summarise how the \
campaign performed and the single most important next step. Plain text only, no lists, \
no markdown."""

_SYSTEMS = {CONTENT: _CONTENT_SYSTEM, SUBJECTS: _SUBJECTS_SYSTEM, INSIGHTS: _INSIGHTS_SYSTEM}


def build_messages(task: str, payload: dict[str, Any]) -> list[ChatMessage]:
    """The conversation for ``task`` with ``payload`` as its JSON input."""
    return [
        ChatMessage("system", f"{TASK_HEADER}{task}\n{_SYSTEMS[task]}"),
        ChatMessage("user", json.dumps(payload, ensure_ascii=False, sort_keys=True)),
    ]


def decode_task(messages: list[ChatMessage]) -> tuple[str, dict[str, Any]] | None:
    """``(task, payload)`` if ``messages`` were made by ``build_messages``, else None."""
    if len(messages) != 2 or messages[0].role != "system" or messages[1].role != "user":
        return None
    first_line = messages[0].content.split("\n", 1)[0]
    if not first_line.startswith(TASK_HEADER):
        return None
    task = first_line.removeprefix(TASK_HEADER).strip()
    if task not in _SYSTEMS:
        return None
    try:
        payload = json.loads(messages[1].content)
    except ValueError:
        return None
    return (task, payload) if isinstance(payload, dict) else None


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (bare, fenced or inside prose), else None."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        stripped = candidate.strip()
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        start = stripped.find("{")
        while start >= 0:
            try:
                value, _ = decoder.raw_decode(stripped, start)
            except ValueError:
                value = None
            if isinstance(value, dict):
                return value
            start = stripped.find("{", start + 1)
    return None


_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def extract_lines(text: str, limit: int) -> list[str]:
    """Non-empty lines of a prose reply, without bullets, numbering or quotes."""
    out: list[str] = []
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip().strip('"“”\'').strip()
        if line and not line.endswith(":"):
            out.append(line)
        if len(out) >= limit:
            break
    return out
