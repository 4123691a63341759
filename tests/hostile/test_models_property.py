"""Property-based tests (hypothesis) of the job models, ``validate_job``, the tracking
events and the job options.

- Arbitrary JSON — and JSON shaped almost like a job — never raises anything but
  ``JobValidationError``, whose every error has a field path and a message.
- Valid generated data round-trips: model → ``to_wire()`` → JSON → ``validate_job`` →
  the same model and the same wire dict.
- Wrong types, NaN/infinity, deep nesting, cycles, huge strings and 1 MB / 10 MB
  payloads give ``JobValidationError`` naming the field or the payload cap.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter_queue.config import JobLimits
from newsletter_queue.errors import JobValidationError
from newsletter_queue.jobs import (
    AIJobData,
    AnalyticsJobData,
    EmailJobData,
    TrackingEvent,
    WireModel,
    validate_job,
)
from newsletter_queue.manager import MAX_PRIORITY, QueueManager, to_bullmq_options
from tests.conftest import make_settings

MODELS: tuple[type[WireModel], ...] = (EmailJobData, AnalyticsJobData, AIJobData,
                                       TrackingEvent)
FIELDS: dict[type[WireModel], list[str]] = {
    EmailJobData: ["campaignId", "tenantId", "recipients", "batchSize", "content",
                   "campaign_id", "tenant_id"],
    AnalyticsJobData: ["campaignId", "tenantId", "eventType", "data", "event_type"],
    AIJobData: ["tenantId", "type", "data", "tenant_id"],
    TrackingEvent: ["tenantId", "campaignId", "recipient", "type", "occurredAt", "url"],
}
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def check(model: type[WireModel], data: Any) -> WireModel:
    """``validate_job`` for any of the models (``TrackingEvent`` included)."""
    return validate_job(model, data)  # type: ignore[type-var]


def assert_named(exc: JobValidationError, prefix: str = "") -> None:
    assert exc.errors
    for error in exc.errors:
        assert error.path.startswith(prefix)
        assert error.path
        assert error.message
    assert str(exc).startswith(f"invalid {exc.model}: ")


# --- strategies: arbitrary JSON ----------------------------------------------------------
scalars = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=25)
recipient_like = st.fixed_dictionaries({}, optional={
    "email": scalars, "name": scalars, "personalizations": json_values, "extra": scalars})


def shaped_like(model: type[WireModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with the model's own field names and arbitrary values (deeper coverage)."""
    values = json_values | st.lists(recipient_like, max_size=3) | st.fixed_dictionaries(
        {}, optional={"subject": scalars, "html": scalars, "text": scalars,
                      "from": scalars, "replyTo": scalars})
    return st.dictionaries(st.sampled_from(FIELDS[model]), values, max_size=6)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@PROPERTY
@given(data=st.data())
def test_arbitrary_json_only_ever_raises_job_validation_error(
    model: type[WireModel], data: st.DataObject
) -> None:
    value = data.draw(json_values | shaped_like(model))
    try:
        obj = check(model, value)
    except JobValidationError as exc:
        assert_named(exc)
    else:  # it was valid after all: then it serialises as strict JSON
        json.dumps(obj.to_wire(), allow_nan=False)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("events-state")


@PROPERTY
@given(rows=st.lists(json_values | shaped_like(TrackingEvent), min_size=1, max_size=5))
def test_record_events_rejects_arbitrary_json_with_job_validation_error(
    state_dir: Path, rows: list[Any],
) -> None:
    manager = QueueManager(make_settings(state_dir=state_dir, key_prefix="nlqt-events"))

    async def record() -> int:
        try:
            return await manager.record_events(rows)
        finally:
            await manager.close()

    try:
        stored = asyncio.run(record())
    except JobValidationError as exc:
        assert_named(exc)
    else:
        assert stored == len(rows)


# --- strategies: valid data ----------------------------------------------------------------
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,30}", fullmatch=True)
atoms = st.from_regex(r"[a-z0-9+_-]{1,8}", fullmatch=True)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
emails = st.builds(lambda local, domain, tld: f"{'.'.join(local)}@{'.'.join(domain)}.{tld}",
                   st.lists(atoms, min_size=1, max_size=3),
                   st.lists(labels, min_size=1, max_size=3),
                   st.from_regex(r"[a-z]{2,6}", fullmatch=True))
no_breaks = st.text(max_size=80).filter(lambda s: not ({"\r", "\n", "\0"} & set(s)))
finite = st.floats(allow_nan=False, allow_infinity=False)
safe_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | finite | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3), max_leaves=12)
json_objects = st.dictionaries(st.text(max_size=8), safe_json, max_size=4)
display = st.from_regex(r"[A-Za-z][A-Za-z .'-]{0,20}", fullmatch=True)
addresses = emails | st.builds(lambda n, e: f"{n.strip() or 'N'} <{e}>", display, emails)

recipients = st.builds(
    dict, email=emails,
    name=st.none() | no_breaks,
    personalizations=st.none() | json_objects)
contents = st.builds(
    dict, subject=no_breaks.filter(lambda s: 0 < len(s) <= 998),
    html=st.none() | st.text(max_size=200), text=st.none() | st.text(max_size=200),
    from_=st.none() | addresses, reply_to=st.none() | addresses)
VALID: dict[type[WireModel], st.SearchStrategy[dict[str, Any]]] = {
    EmailJobData: st.builds(dict, campaign_id=ids, tenant_id=ids,
                            recipients=st.lists(recipients, min_size=1, max_size=5),
                            batch_size=st.none() | st.integers(1, 1000),
                            content=st.none() | contents),
    AnalyticsJobData: st.builds(dict, campaign_id=ids, tenant_id=ids,
                                event_type=st.sampled_from(["campaign-complete",
                                                            "daily-aggregation"]),
                                data=st.none() | json_objects),
    AIJobData: st.builds(dict, tenant_id=ids,
                         type=st.sampled_from(["content-generation", "subject-optimization",
                                               "campaign-insights"]),
                         data=json_objects),
    TrackingEvent: st.builds(
        dict, tenant_id=ids, campaign_id=ids, recipient=emails,
        type=st.sampled_from(["sent", "delivered", "bounced", "opened", "clicked",
                              "unsubscribed", "complained"]),
        occurred_at=st.datetimes(timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])),
        url=st.none() | st.text(max_size=100)),
}


def _strip_none(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(out.get("content"), dict):
        out["content"] = _strip_none(out["content"])
    if "recipients" in out:
        out["recipients"] = [_strip_none(r) for r in out["recipients"]]
    return out


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@PROPERTY
@given(data=st.data())
def test_valid_data_round_trips_through_the_wire_format(
    model: type[WireModel], data: st.DataObject
) -> None:
    kwargs = _strip_none(data.draw(VALID[model]))
    obj = model.model_validate(kwargs)  # snake_case, as Python callers build them
    wire = obj.to_wire()
    text = json.dumps(wire, allow_nan=False)  # strict JSON, what Redis stores
    again = check(model, json.loads(text))  # what a worker reads back
    assert again == obj
    assert again.to_wire() == wire
    assert check(model, obj) == obj  # a model instance is accepted as it is
    assert all("_" not in key for key in wire)  # camelCase on the wire


# --- hostile values, one by one ------------------------------------------------------------
EMAIL = {"campaignId": "c-1", "tenantId": "t-1", "recipients": [{"email": "a@example.com"}]}
ANALYTICS = {"campaignId": "c-1", "tenantId": "t-1", "eventType": "campaign-complete"}
AI = {"tenantId": "t-1", "type": "subject-optimization", "data": {"subjects": ["Hi"]}}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


def cyclic() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(base)), **changes}


MB = 1024 * 1024
HOSTILE: list[tuple[str, type[WireModel], Any, str]] = [
    # wrong types
    ("email/campaign-int", EmailJobData, with_(EMAIL, campaignId=7), "campaignId"),
    ("email/recipients-dict", EmailJobData, with_(EMAIL, recipients={"email": "a@b.co"}),
     "recipients"),
    ("email/batch-bool", EmailJobData, with_(EMAIL, batchSize=True), "batchSize"),
    ("email/batch-float", EmailJobData, with_(EMAIL, batchSize=10.5), "batchSize"),
    ("email/content-list", EmailJobData, with_(EMAIL, content=["x"]), "content"),
    ("email/email-int", EmailJobData, with_(EMAIL, recipients=[{"email": 5}]),
     "recipients[0].email"),
    ("analytics/event-unknown", AnalyticsJobData, with_(ANALYTICS, eventType="drop"),
     "eventType"),
    ("analytics/data-list", AnalyticsJobData, with_(ANALYTICS, data=[1]), "data"),
    ("ai/type-int", AIJobData, with_(AI, type=3), "type"),
    ("ai/data-str", AIJobData, with_(AI, data="x"), "data"),
    ("event/time-text", TrackingEvent, {"tenantId": "t", "campaignId": "c",
                                        "recipient": "a@example.com", "type": "opened",
                                        "occurredAt": "yesterday"}, "occurredAt"),
    # NaN and infinity
    ("email/nan", EmailJobData, with_(EMAIL, recipients=[
        {"email": "a@example.com", "personalizations": {"x": math.nan}}]),
     "recipients[0].personalizations"),
    ("email/inf-deep", EmailJobData, with_(EMAIL, recipients=[
        {"email": "a@example.com", "personalizations": {"x": [{"y": -math.inf}]}}]),
     "recipients[0].personalizations"),
    ("analytics/nan", AnalyticsJobData, with_(ANALYTICS, data={"rate": math.nan}), "data"),
    ("ai/inf", AIJobData, with_(AI, data={"t": math.inf}), "data"),
    ("email/batch-nan", EmailJobData, with_(EMAIL, batchSize=math.nan), "batchSize"),
    # nesting and cycles
    ("email/nested-50", EmailJobData, with_(EMAIL, recipients=[
        {"email": "a@example.com", "personalizations": nested(50)}]),
     "recipients[0].personalizations"),
    ("analytics/nested-50", AnalyticsJobData, with_(ANALYTICS, data=nested(50)), "data"),
    ("ai/nested-50", AIJobData, with_(AI, data=nested(50)), "data"),
    ("ai/nested-5000", AIJobData, {**AI, "data": nested(5000)}, "data"),
    ("ai/cycle", AIJobData, {**AI, "data": cyclic()}, "data"),
    ("email/root-nested-50", EmailJobData, nested(50), "k"),
    # huge strings
    ("email/name-1mb", EmailJobData, with_(EMAIL, recipients=[
        {"email": "a@example.com", "name": "n" * MB}]), "recipients[0].name"),
    ("email/subject-1mb", EmailJobData, with_(EMAIL, content={"subject": "s" * MB}),
     "content.subject"),
    ("email/id-1mb", EmailJobData, with_(EMAIL, tenantId="t" * MB), "tenantId"),
    ("email/email-1mb", EmailJobData, with_(EMAIL, recipients=[
        {"email": "a" * MB + "@example.com"}]), "recipients[0].email"),
    ("event/url-1mb", TrackingEvent, {"tenantId": "t", "campaignId": "c",
                                      "recipient": "a@example.com", "type": "clicked",
                                      "url": "https://x.io/" + "a" * MB}, "url"),
    # payload caps: 1 MB and 10 MB of otherwise valid data
    ("email/html-1mb", EmailJobData, with_(EMAIL, content={"subject": "s", "html": "h" * MB}),
     "(root)"),
    ("email/html-10mb", EmailJobData,
     with_(EMAIL, content={"subject": "s", "html": "h" * 10 * MB}), "(root)"),
    ("email/recipients-1001", EmailJobData,
     with_(EMAIL, recipients=[{"email": f"r{i}@example.com"} for i in range(1001)]),
     "recipients"),
    ("analytics/data-1mb", AnalyticsJobData, with_(ANALYTICS, data={"x": "d" * MB}),
     "(root)"),
    ("ai/data-10mb", AIJobData, with_(AI, data={"x": "d" * 10 * MB}), "(root)"),
]


@pytest.mark.parametrize(("model", "value", "path"), [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])
def test_hostile_values_name_the_field_or_the_cap(
    model: type[WireModel], value: Any, path: str
) -> None:
    with pytest.raises(JobValidationError) as info:
        check(model, value)
    assert_named(info.value)
    paths = info.value.paths
    assert any(p == path or p.startswith((f"{path}.", f"{path}[")) for p in paths), paths
    assert len(str(info.value)) < 4096  # a readable message, whatever the input
    if path == "(root)":
        assert f"at most {JobLimits().max_payload_bytes}" in str(info.value)


# --- job options ---------------------------------------------------------------------------
OPTION_VALUES = {
    "job_id": st.text(min_size=1, max_size=20).filter(
        lambda s: ":" not in s and not s.isdigit() and s.isprintable()),
    "delay": st.integers(0, 10**9),
    "priority": st.integers(0, MAX_PRIORITY),
    "attempts": st.integers(1, 100),
    "backoff": st.integers(0, 10**7) | st.fixed_dictionaries(
        {"type": st.sampled_from(["fixed", "exponential"]), "delay": st.integers(0, 10**7)},
        optional={"jitter": st.floats(0, 1)}),
    "lifo": st.booleans(),
    "remove_on_complete": st.booleans() | st.integers(0, 10**6) | st.fixed_dictionaries(
        {}, optional={"age": st.integers(0, 10**7), "count": st.integers(0, 10**6)}),
    "remove_on_fail": st.booleans() | st.integers(0, 10**6) | st.fixed_dictionaries(
        {"age": st.integers(0, 10**7)}),
}
CAMEL = {"job_id": "jobId", "remove_on_complete": "removeOnComplete",
         "remove_on_fail": "removeOnFail"}


@PROPERTY
@given(opts=st.fixed_dictionaries({}, optional=OPTION_VALUES))
def test_valid_job_options_translate_to_bullmq(opts: dict[str, Any]) -> None:
    out = to_bullmq_options(opts)
    assert out == {CAMEL.get(k, k): v for k, v in opts.items()}


@PROPERTY
@given(opts=st.dictionaries(st.sampled_from([*OPTION_VALUES, "jobID", "timeout", "repeat"])
                            | st.text(max_size=10), json_values, max_size=5))
def test_arbitrary_job_options_raise_only_job_validation_error(opts: dict[str, Any]) -> None:
    try:
        to_bullmq_options(opts)
    except JobValidationError as exc:
        assert_named(exc, prefix="opts.")


BAD_OPTIONS = [
    ("delay", True), ("delay", -1), ("delay", 1.5), ("delay", "10"), ("delay", None),
    ("priority", True), ("priority", MAX_PRIORITY + 1), ("priority", "1"),
    ("attempts", 0), ("attempts", False), ("attempts", 2.0), ("attempts", "3"),
    ("job_id", ""), ("job_id", "a:b"), ("job_id", "123"), ("job_id", 5), ("job_id", "x\n"),
    ("backoff", "soon"), ("backoff", -5), ("backoff", True), ("backoff", [1000]),
    ("backoff", {"type": "fixed", "delay": -1}), ("backoff", {"delay": "x"}),
    ("backoff", {"type": "exponential", "delay": 10, "jitter": 2}),
    ("backoff", {"type": "", "delay": 10}),
    ("lifo", "yes"), ("lifo", 1), ("lifo", None),
    ("remove_on_complete", "all"), ("remove_on_complete", -1),
    ("remove_on_complete", {"age": -1}), ("remove_on_complete", {"keep": 5}),
    ("remove_on_fail", 1.5), ("remove_on_fail", [True]), ("remove_on_fail", {"count": "9"}),
]


@pytest.mark.parametrize(("key", "value"), BAD_OPTIONS,
                         ids=[f"{k}={v!r}" for k, v in BAD_OPTIONS])
def test_wrong_job_options_are_rejected_naming_the_option(key: str, value: Any) -> None:
    with pytest.raises(JobValidationError) as info:
        to_bullmq_options({key: value})
    assert info.value.paths == [f"opts.{key}"]
