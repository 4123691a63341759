"""Header injection: CR/LF (and friends) in subjects, names, addresses, custom headers and
personalisation values rendered into the subject.

Rejected where it enters — at enqueue with a ``JobValidationError`` naming the field, in
the worker (a raw producer skipped our validation: unrecoverable, naming the field), when
a stored campaign compiles (unrecoverable: "header injection refused"), or per recipient
when a personalisation value would break the subject line — and never a second header in
any message the SMTP sink captured.
"""

from __future__ import annotations

import asyncio
import json
from email.parser import BytesParser
from email.policy import compat32
from email.utils import getaddresses
from typing import Any

import pytest
import redis.asyncio as aioredis

from newsletter_queue.errors import JobValidationError
from newsletter_queue.jobs import Recipient
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.render import CompiledCampaign, Content, ContentError
from newsletter_queue.services.store import CampaignRecord
from tests.hostile.conftest import Engine
from tests.hostile.test_poison_jobs import _write_raw_job
from tests.support.helpers import TEST_LINKS

INJECTED = "x@example.com\r\nBcc: victim@example.com"
BREAKS = ["\r\nBcc: victim@example.com", "\nBcc: victim@example.com",
          "\rBcc: victim@example.com", "\x00Bcc: victim@example.com"]
BASE: dict[str, Any] = {"campaignId": "c-1", "tenantId": "t-1",
                        "recipients": [{"email": "ok@example.com", "name": "Ok"}],
                        "content": {"subject": "Hello", "text": "Hi"}}
# Header names that must never appear in a captured message.
FORBIDDEN = {"bcc", "x-injected", "cc"}


def _hostile(path: str, value: str) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    target = data
    *parents, last = path.replace("[0]", ".0").split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    return data


CASES = [(path, tail) for path in ("content.subject", "recipients[0].name", "content.from",
                                   "content.replyTo", "recipients[0].email")
         for tail in BREAKS]


def _value(path: str, tail: str) -> str:
    return ("news@example.com" if path in ("content.from", "content.replyTo",
                                           "recipients[0].email") else "Hello") + tail


@pytest.mark.parametrize(("path", "tail"), CASES)
async def test_line_breaks_are_rejected_at_enqueue_naming_the_field(
    manager: QueueManager, path: str, tail: str
) -> None:
    with pytest.raises(JobValidationError) as info:
        await manager.schedule_email_job("transactional", _hostile(path, _value(path, tail)))
    assert info.value.paths == [path]
    assert (await manager.get_queue_stats("email")).waiting == 0


async def test_line_breaks_in_batch_recipients_are_rejected_naming_the_row(
    manager: QueueManager,
) -> None:
    rows = [{"email": "a@example.com"}, {"email": "b@example.com", "name": "B\r\nBcc: v@x.io"},
            {"email": INJECTED}]
    with pytest.raises(JobValidationError) as info:
        await manager.schedule_batch_email_sending("c-1", "t-1", rows, 10)
    assert info.value.paths == ["recipients[1].name", "recipients[2].email"]


async def test_raw_producer_injection_is_refused_by_the_worker(
    engine: Engine, redis_client: aioredis.Redis, prefix: str
) -> None:
    """Another producer skipped our validation: the worker validates again."""
    cases = {f"raw-{i}": (path, _hostile(path, _value(path, "\r\nBcc: victim@example.com")))
             for i, path in enumerate(sorted({p for p, _ in CASES}))}
    for job_id, (_, data) in cases.items():
        await _write_raw_job(redis_client, prefix, "email", job_id,
                             {"name": "transactional", "data": json.dumps(data)})
    results = await asyncio.gather(*(engine.finished("email", j) for j in cases))
    for (job_id, (path, _)), info in zip(cases.items(), results, strict=True):
        assert info.state == "failed", job_id
        assert info.attempts_made == 1
        assert f"{path}: " in (info.failed_reason or "")
    assert sum(engine.sink.handler.counts.values()) == 0
    await engine.assert_alive()


@pytest.mark.parametrize("record", [
    {"from_addr": "News <news@example.com>\r\nBcc: victim@example.com"},
    {"reply_to": "reply@example.com\nX-Injected: 1"},
    {"headers": {"X-Note": "fine\r\nBcc: victim@example.com"}},
    {"headers": {"X-Note\r\nBcc": "victim@example.com"}},
    {"headers": {"X-Note: 1\r\nBcc": "victim@example.com"}},
], ids=["from", "reply-to", "header-value", "header-name-crlf", "header-name-colon"])
async def test_stored_campaign_with_injected_headers_fails_unrecoverable(
    engine: Engine, record: dict[str, Any]
) -> None:
    assert engine.services.store is not None
    await engine.services.store.upsert_campaign(CampaignRecord(
        tenant_id="t-hdr", campaign_id="hdr", subject="Hello", text="Hi", **record))
    [job] = await engine.manager.schedule_batch_email_sending(
        "hdr", "t-hdr", [{"email": "r@example.com"}])
    info = await engine.finished("email", job.id)
    assert info.state == "failed"
    assert info.attempts_made == 1
    assert "header injection refused" in (info.failed_reason or "")
    assert sum(engine.sink.handler.counts.values()) == 0
    await engine.assert_alive()


@pytest.mark.parametrize("name", ["Bcc", "From", "To", "Subject", "Message-ID",
                                  "Content-Type", "Reply-To", "List-Unsubscribe",
                                  "X Spaced", "X-Ünicode", ""])
def test_custom_headers_cannot_duplicate_ours_or_be_malformed(name: str) -> None:
    content = Content(subject="Hi", text="Hello", headers={name: "attacker@example.com"})
    with pytest.raises(ContentError, match="header"):
        CompiledCampaign("t", "c", content, default_from="News <news@example.com>",
                         links=TEST_LINKS)


def test_custom_header_allowed_and_written_once() -> None:
    content = Content(subject="Hi", text="Hello", headers={"X-Mailer-Campaign": "spring"})
    campaign = CompiledCampaign("t", "c", content, default_from="News <news@example.com>",
                                links=TEST_LINKS)
    _, raw = campaign.render(Recipient(email="r@example.com"))
    message = BytesParser(policy=compat32).parsebytes(raw)
    assert message.get_all("X-Mailer-Campaign") == ["spring"]


SEPARATORS = {"crlf": "\r\n", "lf": "\n", "cr": "\r", "nul": "\x00", "vt": "\x0b",
              "ff": "\x0c", "nel": "\x85", "line-sep": "\u2028", "para-sep": "\u2029",
              "tab-fold": "\r\n\t"}


async def test_personalisation_values_cannot_break_the_subject_line(engine: Engine) -> None:
    """Line breaks in a value rendered into the subject fail that recipient only; other
    separators are encoded; the sink never sees a second header."""
    recipients = [{"email": f"{label}@example.com",
                   "personalizations": {"nick": f"Bob{sep}Bcc: victim@example.com"}}
                  for label, sep in SEPARATORS.items()]
    recipients.append({"email": "plain@example.com", "personalizations": {"nick": "Bob"}})
    recipients.append({"email": "quoted@example.com",
                       "name": 'Eve", <attacker@example.com>, "x',
                       "personalizations": {"nick": "Eve"}})
    job = await engine.manager.schedule_email_job("transactional", {
        "campaignId": "pers", "tenantId": "t-hdr", "recipients": recipients,
        "content": {"subject": "Hello {{ personalizations.nick }}", "text": "Hi"}})
    info = await engine.finished("email", job.id)
    assert info.state == "completed"
    refused = {e.split(":")[0] for e in info.return_value["errors"]}
    # CR or LF anywhere in the rendered subject: refused (a NUL is kept out too).
    assert refused == {f"{label}@example.com" for label in ("crlf", "lf", "cr", "tab-fold",
                                                            "nul")}
    for error in info.return_value["errors"]:
        assert "header injection refused" in error or "line break" in error
    delivered = {r for m in engine.sink.handler.recent for r in m.rcpt_tos}
    assert delivered == {r["email"] for r in recipients} - refused
    assert "victim@example.com" not in engine.sink.handler.counts
    for message in engine.sink.handler.recent:
        names = {h.lower() for h in message.headers}
        assert not names & FORBIDDEN, (message.rcpt_tos, message.headers)
        assert message.subject.startswith("Hello ")
        to = getaddresses([message.headers["To"]])
        assert [addr for _, addr in to] == message.rcpt_tos  # exactly one addressee
    await engine.assert_alive()
