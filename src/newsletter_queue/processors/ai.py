"""The AI processor: content drafts, subject-line scoring and campaign insights.

Producers name AI jobs freely (``generate-content``, ``ai-job`` …); what a job does is
its ``data.type``. ``build_ai_processors`` therefore returns one processor under the
three type names and the generic ``ai-job`` name, for the worker registry.

Each job:

1. is validated (``AIJobData``, then the type's own ``data`` model); bad data fails at
   once as ``UnrecoverableError`` naming every field (``data.stats.open_rate``);
2. computes what needs no model — the template draft, the subject scores
   (``heuristics``), the rule-based recommendations (``insights``) — so results stay
   explainable and comparable whichever provider runs;
3. asks the provider once (``prompts``), behind the shared Redis circuit breaker:

   - breaker open (or a half-open probe already in flight) → ``RateLimited`` for the
     rest of the cool-down: the whole AI queue pauses and the job keeps its attempt;
   - 429 → ``RateLimited(Retry-After)``, same effect, and the breaker hears that the
     provider is up;
   - 5xx / timeout / connection error → counted by the breaker and re-raised, so the
     job retries with the queue's backoff (the breaker opens after ``threshold`` of them);
   - other 4xx → ``UnrecoverableError`` (repeating the request cannot help);

4. reads the reply leniently (JSON anywhere in it, else the raw text) and returns a
   JSON-able dict naming the provider and model; the same dict (plus the validated
   input) is saved through ``save_result`` — the records ``Store`` (upsert by job id, so
   a retried job leaves one row) or any ``async def save(record: dict)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from ..config import JobLimits
from ..engine import RateLimited, UnrecoverableError
from ..errors import FieldError, JobValidationError
from ..jobs import AIJobData, field_errors, validate_job
from ..services.ai.base import (
    AIProvider,
    ChatMessage,
    Completion,
    ProviderRateLimited,
    ProviderRequestError,
    ProviderUnavailable,
)
from ..services.ai.drafts import Draft, html_to_text, one_line, template_draft, text_to_html
from ..services.ai.heuristics import rank_subjects, score_subject
from ..services.ai.insights import analyse, summarize
from ..services.ai.models import ContentRequest, InsightsRequest, SubjectRequest
from ..services.ai.prompts import (
    CONTENT,
    INSIGHTS,
    SUBJECTS,
    build_messages,
    extract_json_object,
    extract_lines,
)
from ..services.circuit import CircuitBreaker

if TYPE_CHECKING:
    from ..services.store.records import AIResultRecord

log = logging.getLogger(__name__)

AI_JOB_TYPES: tuple[str, ...] = (CONTENT, SUBJECTS, INSIGHTS)
GENERIC_JOB_NAME = "ai-job"
DEFAULT_MAX_RATE_LIMIT_MS = 10 * 60 * 1000
MIN_RATE_LIMIT_MS = 100
_SUGGESTIONS = 3
_MAX_SUMMARY_CHARS = 2_000

M = TypeVar("M", bound=BaseModel)


class AIJob(Protocol):
    """What the processor uses of the engine's ``Job``."""

    @property
    def id(self) -> str: ...

    @property
    def data(self) -> Any: ...

    def update_progress(self, value: Any) -> Awaitable[None]: ...

    def log(self, text: str) -> Awaitable[object]: ...


class AIResultStore(Protocol):
    """The part of the records ``Store`` the processor needs."""

    async def save_ai_result(self, result: AIResultRecord) -> object: ...


SaveResult = Callable[[dict[str, Any]], Awaitable[object]]
AIProcessor = Callable[[AIJob], Awaitable[dict[str, Any]]]


def build_ai_processors(
    provider: AIProvider,
    breaker: CircuitBreaker | None = None,
    save_result: SaveResult | AIResultStore | None = None,
    *,
    limits: JobLimits | None = None,
    max_rate_limit_ms: int = DEFAULT_MAX_RATE_LIMIT_MS,
) -> dict[str, AIProcessor]:
    """Processors for the AI queue, by job name.

    Args:
        provider: answers the prompts (``provider_from_settings(settings)``).
        breaker: shared circuit breaker for the provider (``None``: no breaker).
        save_result: a ``Store`` (its ``save_ai_result``) or ``async def f(record)``.
        limits: payload caps for validation (the settings' ``job_limits``).
        max_rate_limit_ms: longest queue pause a provider's ``Retry-After`` may cause.

    Returns:
        ``{"content-generation": f, "subject-optimization": f, "campaign-insights": f,
        "ai-job": f}`` — the same processor, which dispatches on ``data.type``.
    """
    runner = AIJobRunner(provider, breaker, save_result, limits=limits,
                         max_rate_limit_ms=max_rate_limit_ms)
    return {name: runner.process for name in (*AI_JOB_TYPES, GENERIC_JOB_NAME)}


class AIJobRunner:
    """Runs AI jobs against one provider (see the module docstring)."""

    def __init__(
        self,
        provider: AIProvider,
        breaker: CircuitBreaker | None = None,
        save_result: SaveResult | AIResultStore | None = None,
        *,
        limits: JobLimits | None = None,
        max_rate_limit_ms: int = DEFAULT_MAX_RATE_LIMIT_MS,
    ) -> None:
        self.provider = provider
        self.breaker = breaker
        self.limits = limits or JobLimits()
        self.max_rate_limit_ms = max(max_rate_limit_ms, MIN_RATE_LIMIT_MS)
        self._save = _saver(save_result)
        self._handlers: dict[str, Callable[[AIJob, dict[str, Any]],
                                           Awaitable[tuple[dict[str, Any], Completion]]]] = {
            CONTENT: self._content,
            SUBJECTS: self._subjects,
            INSIGHTS: self._insights,
        }

    async def process(self, job: AIJob) -> dict[str, Any]:
        """The processor: validate, run the job's type, save and return the result."""
        try:
            request = validate_job(AIJobData, job.data, self.limits)
        except JobValidationError as exc:
            raise UnrecoverableError(str(exc)) from exc
        await job.update_progress(10)
        result, completion = await self._handlers[request.type](job, request.data)
        await job.update_progress(90)
        value: dict[str, Any] = {
            "jobId": job.id,
            "tenantId": request.tenant_id,
            "type": request.type,
            "provider": completion.provider,
            "model": completion.model,
            "result": result,
            "usage": completion.usage.to_dict(),
            "latencyMs": completion.latency_ms,
        }
        if self._save is not None:
            await self._save({**value, "input": request.data})
        await job.update_progress(100)
        return value

    # --- the three job types ---------------------------------------------------------
    async def _content(self, job: AIJob, data: dict[str, Any]
                       ) -> tuple[dict[str, Any], Completion]:
        request = _parse(ContentRequest, data)
        template = template_draft(request)
        completion = await self._ask(
            job, build_messages(CONTENT, request.model_dump(mode="json")),
            max_tokens=min(max(request.max_words * 4, 512), 4096), temperature=0.7)
        draft, fmt, notes = read_draft(completion.text, template)
        result: dict[str, Any] = {**draft, "format": fmt,
                                  "subjectScore": score_subject(draft["subject"]).to_dict()}
        if notes:
            result["notes"] = notes
        return result, completion

    async def _subjects(self, job: AIJob, data: dict[str, Any]
                        ) -> tuple[dict[str, Any], Completion]:
        request = _parse(SubjectRequest, data)
        ranked = rank_subjects(request.subjects)
        payload: dict[str, Any] = {
            "candidates": [{"subject": s.subject, "score": s.score, "reasons": list(s.reasons)}
                           for s in ranked],
        }
        if request.topic:
            payload["topic"] = request.topic
        if request.audience:
            payload["audience"] = request.audience
        completion = await self._ask(job, build_messages(SUBJECTS, payload),
                                     max_tokens=300, temperature=0.8)
        suggestions = rank_subjects(read_alternatives(completion.text, request.subjects))
        best = max([*ranked, *suggestions], key=lambda s: s.score)
        return {
            "candidates": [{**s.to_dict(), "rank": i} for i, s in enumerate(ranked, 1)],
            "suggestions": [{**s.to_dict(), "rank": i} for i, s in enumerate(suggestions, 1)],
            "best": {"subject": best.subject, "score": best.score,
                     "source": "candidate" if any(best is s for s in ranked)
                     else "suggestion"},
        }, completion

    async def _insights(self, job: AIJob, data: dict[str, Any]
                        ) -> tuple[dict[str, Any], Completion]:
        request = _parse(InsightsRequest, data)
        analysis = analyse(request.stats).to_dict()
        completion = await self._ask(job, build_messages(INSIGHTS, analysis),
                                     max_tokens=300, temperature=0.3)
        summary = read_summary(completion.text)
        if not summary:
            summary = summarize(analysis["metrics"], analysis["recommendations"])
        result = {**analysis, "summary": summary}
        if request.campaign_id:
            result["campaignId"] = request.campaign_id
        return result, completion

    # --- the provider call, behind the breaker ---------------------------------------
    async def _ask(self, job: AIJob, messages: Sequence[ChatMessage], *, max_tokens: int,
                   temperature: float) -> Completion:
        if self.breaker is not None:
            decision = await self.breaker.allow()
            if not decision.allowed:
                wait = self._clamp(decision.retry_after_ms)
                await job.log(f"circuit {self.breaker.name!r} is {decision.state}; "
                              f"pausing the queue for {wait} ms")
                raise RateLimited(wait)
        try:
            completion = await self.provider.complete(
                messages, max_tokens=max_tokens, temperature=temperature)
        except ProviderRateLimited as exc:
            await self._provider_answered()
            wait = self._clamp(exc.retry_after_ms)
            await job.log(f"{exc.provider} rate limited the request; pausing the queue "
                          f"for {wait} ms")
            raise RateLimited(wait) from exc
        except ProviderUnavailable as exc:
            if self.breaker is not None:
                opened_ms = await self.breaker.record_failure()
                if opened_ms:
                    log.warning("AI provider %s failing (%s): circuit %r open for %d ms",
                                exc.provider, exc.detail, self.breaker.name, opened_ms)
            raise
        except ProviderRequestError as exc:
            await self._provider_answered()
            raise UnrecoverableError(str(exc)) from exc
        await self._provider_answered()
        await job.log(f"{completion.provider} ({completion.model}) answered in "
                      f"{completion.latency_ms} ms")
        return completion

    async def _provider_answered(self) -> None:
        """The provider is reachable: close the breaker / reset its failure count."""
        if self.breaker is not None and await self.breaker.record_success():
            log.info("AI provider answered again: circuit %r closed", self.breaker.name)

    def _clamp(self, ms: int) -> int:
        return min(max(ms, MIN_RATE_LIMIT_MS), self.max_rate_limit_ms)


# --- reading replies ------------------------------------------------------------------
def read_draft(text: str, template: Draft) -> tuple[Draft, str, str | None]:
    """``(draft, format, notes)`` from a model's reply; format is ``json`` when it gave
    the asked-for JSON, ``text`` when its prose became the body (subject and preheader
    from the template), ``template`` when it said nothing."""
    obj = extract_json_object(text)
    if obj is not None:
        subject = obj.get("subject")
        html, body = obj.get("html"), obj.get("text")
        html = html if isinstance(html, str) and html.strip() else None
        body = body if isinstance(body, str) and body.strip() else None
        if isinstance(subject, str) and subject.strip() and (html or body):
            preheader = obj.get("preheader")
            notes = obj.get("notes")
            return Draft(
                subject=one_line(subject, 200),
                preheader=one_line(preheader, 200) if isinstance(preheader, str) else "",
                html=html if html is not None else text_to_html(body or ""),
                text=body if body is not None else html_to_text(html or ""),
            ), "json", notes if isinstance(notes, str) else None
    raw = text.strip()
    if not raw:
        return template, "template", None
    return Draft(subject=template["subject"], preheader=template["preheader"],
                 html=text_to_html(raw), text=raw), "text", None


def read_alternatives(text: str, candidates: Sequence[str]) -> list[str]:
    """Up to three new subject lines from a reply (JSON, a JSON list, or lines)."""
    items: list[Any] = []
    obj = extract_json_object(text)
    if obj is not None:
        for key in ("alternatives", "subjects", "suggestions"):
            if isinstance(obj.get(key), list):
                items = obj[key]
                break
    if not items:
        try:
            parsed = json.loads(text.strip())
        except ValueError:
            parsed = None
        items = parsed if isinstance(parsed, list) else extract_lines(text, 10)
    seen = {" ".join(c.lower().split()) for c in candidates}
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            continue
        line = one_line(item, 200)
        key = line.lower()
        if line and key not in seen:
            seen.add(key)
            out.append(line)
        if len(out) == _SUGGESTIONS:
            break
    return out


def read_summary(text: str) -> str:
    """The summary text of a reply (its ``summary`` field if it sent JSON)."""
    obj = extract_json_object(text)
    if obj is not None and isinstance(obj.get("summary"), str):
        text = obj["summary"]
    text = text.strip()
    if len(text) > _MAX_SUMMARY_CHARS:
        text = text[: _MAX_SUMMARY_CHARS - 1].rstrip() + "…"
    return text


# --- helpers --------------------------------------------------------------------------
def _parse(model: type[M], data: dict[str, Any]) -> M:
    """Validate a type's ``data``; errors name ``data.<field>`` paths."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = JobValidationError("AIJobData", [
            FieldError(f"data.{e.path}" if e.path != "(root)" else "data", e.message)
            for e in field_errors(exc, model)])
        raise UnrecoverableError(str(error)) from error


def _saver(target: SaveResult | AIResultStore | None) -> SaveResult | None:
    """A ``save(record)`` function for either a ``Store`` or a plain callable."""
    if target is None:
        return None
    if callable(target):
        return target
    store = target

    async def save(record: dict[str, Any]) -> None:
        # Imported here: the records store pulls in SQLAlchemy, which a worker that
        # saves through a plain callable does not need.
        from ..services.store.records import AIResultRecord

        output = {k: v for k, v in record.items() if k != "input"}
        await store.save_ai_result(AIResultRecord(
            job_id=str(record["jobId"]), tenant_id=record["tenantId"], type=record["type"],
            input=record["input"], output=output, provider=record["provider"],
            model=record["model"]))

    return save
