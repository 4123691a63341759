"""Job data models: the seed's shapes, camelCase on the wire, every bad path named."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from newsletter_queue.config import JobLimits
from newsletter_queue.errors import JobValidationError
from newsletter_queue.jobs import (
    AIJobData,
    AnalyticsJobData,
    EmailJobData,
    Recipient,
    check_email,
    validate_job,
)

SEED_EMAIL = {
    "campaignId": "campaign-123",
    "tenantId": "tenant-456",
    "recipients": [
        {"email": "user@example.com", "name": "John Doe",
         "personalizations": {"plan": "pro", "seats": 3, "tags": ["a", "b"], "vip": True}},
    ],
    "batchSize": 100,
}


def test_seed_camelcase_json_validates_unchanged() -> None:
    job = validate_job(EmailJobData, SEED_EMAIL)
    assert job.campaign_id == "campaign-123"
    assert job.recipients[0].personalizations == {"plan": "pro", "seats": 3,
                                                  "tags": ["a", "b"], "vip": True}
    assert job.to_wire() == SEED_EMAIL


def test_snake_case_construction_serialises_to_camelcase() -> None:
    job = EmailJobData(campaign_id="c1", tenant_id="t1",
                       recipients=[Recipient(email="a@example.com")])
    assert job.to_wire() == {"campaignId": "c1", "tenantId": "t1",
                             "recipients": [{"email": "a@example.com"}]}


def test_every_bad_field_path_is_named() -> None:
    bad = {
        "campaignId": "",
        "tenantId": "t:1",
        "recipients": [{"email": "ok@example.com"}, {"email": "not-an-email"},
                       {"email": "x@example.com", "name": "Eve\r\nBcc: all@example.com"}],
        "batchSize": 0,
        "unexpected": 1,
    }
    with pytest.raises(JobValidationError) as info:
        validate_job(EmailJobData, bad)
    paths = set(info.value.paths)
    assert {"campaignId", "tenantId", "recipients[1].email", "recipients[2].name",
            "batchSize", "unexpected"} <= paths
    assert "recipients[1].email" in str(info.value)


def test_missing_fields_are_named() -> None:
    with pytest.raises(JobValidationError) as info:
        validate_job(EmailJobData, {"recipients": []})
    assert {"campaignId", "tenantId", "recipients"} <= set(info.value.paths)


@pytest.mark.parametrize("address", ["a@b", "a b@example.com", "a@example..com",
                                     "a@example.com\r\nBcc: x@y.com", "@example.com", ""])
def test_invalid_emails(address: str) -> None:
    with pytest.raises(ValueError, match="email"):
        check_email(address)


@pytest.mark.parametrize("address", ["a@example.com", "first.last+tag@sub.example.co.uk",
                                     "ünïcode@exämple.de"])
def test_valid_emails(address: str) -> None:
    assert "@" in check_email(address)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_personalizations_must_be_json_safe(value: float) -> None:
    data: dict[str, Any] = {**SEED_EMAIL, "recipients": [
        {"email": "a@example.com", "personalizations": {"score": value}}]}
    with pytest.raises(JobValidationError) as info:
        validate_job(EmailJobData, data)
    assert info.value.paths == ["recipients[0].personalizations"]


def test_personalizations_reject_non_json_types() -> None:
    data: dict[str, Any] = {**SEED_EMAIL, "recipients": [
        {"email": "a@example.com", "personalizations": {"when": object()}}]}
    with pytest.raises(JobValidationError) as info:
        validate_job(EmailJobData, data)
    assert info.value.paths[0].startswith("recipients[0].personalizations")


def test_deep_nesting_is_rejected() -> None:
    nested: Any = "leaf"
    for _ in range(50):
        nested = {"n": nested}
    data: dict[str, Any] = {**SEED_EMAIL, "recipients": [
        {"email": "a@example.com", "personalizations": nested}]}
    with pytest.raises(JobValidationError, match="nested deeper"):
        validate_job(EmailJobData, data)


def test_recipient_cap_is_configurable() -> None:
    data = {**SEED_EMAIL, "recipients": [{"email": f"u{i}@example.com"} for i in range(11)]}
    with pytest.raises(JobValidationError) as info:
        validate_job(EmailJobData, data, JobLimits(max_recipients_per_job=10))
    assert info.value.paths == ["recipients"]
    assert validate_job(EmailJobData, data, JobLimits(max_recipients_per_job=11))


def test_default_recipient_cap_is_1000() -> None:
    data = {**SEED_EMAIL, "recipients": [{"email": f"u{i}@example.com"} for i in range(1001)]}
    with pytest.raises(JobValidationError, match="at most 1000"):
        validate_job(EmailJobData, data)


def test_payload_cap_counts_stored_bytes() -> None:
    big = "x" * 2000
    data = {**SEED_EMAIL, "recipients": [{"email": "a@example.com",
                                          "personalizations": {"blob": big}}]}
    size = len(json.dumps(validate_job(EmailJobData, data).to_wire(),
                          separators=(",", ":")).encode())
    with pytest.raises(JobValidationError, match=f"payload is {size} bytes"):
        validate_job(EmailJobData, data, JobLimits(max_payload_bytes=size - 1))
    assert validate_job(EmailJobData, data, JobLimits(max_payload_bytes=size))


def test_payload_cap_takes_the_stored_size_when_the_caller_knows_it() -> None:
    # A worker passes the bytes of the job hash's JSON (another producer may have stored
    # it with more whitespace than our own serialisation would count).
    with pytest.raises(JobValidationError, match="payload is 5000 bytes; at most 4999"):
        validate_job(EmailJobData, SEED_EMAIL, JobLimits(max_payload_bytes=4999), size=5000)
    assert validate_job(EmailJobData, SEED_EMAIL, JobLimits(max_payload_bytes=5000),
                        size=5000)


def test_default_payload_cap_is_512_kib() -> None:
    assert JobLimits().max_payload_bytes == 512 * 1024


def test_inline_content_for_transactional_mail() -> None:
    data = {**SEED_EMAIL, "content": {"subject": "Welcome!", "html": "<p>Hi {{ name }}</p>",
                                      "text": "Hi", "from": "Team <team@example.com>",
                                      "replyTo": "help@example.com"}}
    job = validate_job(EmailJobData, data)
    assert job.content is not None
    assert job.content.from_ == "Team <team@example.com>"
    assert job.to_wire()["content"]["replyTo"] == "help@example.com"
    assert job.to_wire()["content"]["from"] == "Team <team@example.com>"


@pytest.mark.parametrize(("field", "value"), [
    ("subject", "Hi\r\nBcc: victim@example.com"),
    ("from", "Team <team@example.com>\r\nBcc: x@example.com"),
    ("replyTo", "not an address"),
])
def test_header_injection_in_content_is_rejected(field: str, value: str) -> None:
    content = {"subject": "ok", field: value}
    with pytest.raises(JobValidationError) as info:
        validate_job(EmailJobData, {**SEED_EMAIL, "content": content})
    assert info.value.paths == [f"content.{field}"]


def test_analytics_and_ai_models() -> None:
    a = validate_job(AnalyticsJobData, {"campaignId": "c", "tenantId": "t",
                                        "eventType": "campaign-complete"})
    assert a.event_type == "campaign-complete"
    with pytest.raises(JobValidationError) as info:
        validate_job(AnalyticsJobData, {"campaignId": "c", "tenantId": "t",
                                        "eventType": "hourly"})
    assert info.value.paths == ["eventType"]
    ai = validate_job(AIJobData, {"tenantId": "t", "type": "subject-optimization",
                                  "data": {"subjects": ["A", "B"]}})
    assert ai.to_wire()["type"] == "subject-optimization"
    with pytest.raises(JobValidationError) as info:
        validate_job(AIJobData, {"tenantId": "t", "type": "poem"})
    assert set(info.value.paths) == {"type", "data"}


def test_model_instance_is_revalidated_against_caps() -> None:
    job = EmailJobData(campaign_id="c", tenant_id="t",
                       recipients=[Recipient(email=f"u{i}@example.com") for i in range(3)])
    with pytest.raises(JobValidationError):
        validate_job(EmailJobData, job, JobLimits(max_recipients_per_job=2))
