"""The email processor against a real SMTP sink and real Redis (ledger, limits, breaker)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from newsletter_queue.engine.errors import DelayedError, RateLimited, UnrecoverableError
from newsletter_queue.manager import QueueManager
from newsletter_queue.processors.email import TransientSendError
from newsletter_queue.services.render import Content, message_id
from newsletter_queue.services.send_ledger import CampaignLedger
from newsletter_queue.services.sink import SmtpSink
from tests.integration.email.conftest import StandInJob

CONTENT = {"subject": "Hello {{ name }}", "html": "<p>Hi {{ name }}, plan {{ "
           "personalizations.plan }}</p>", "text": "Hi {{ name }} ({{ email }})",
           "from": "News <news@example.com>"}


def batch(campaign: str, emails: list[str], content: dict[str, Any] | None = None,
          tenant: str = "t1") -> dict[str, Any]:
    data: dict[str, Any] = {
        "campaignId": campaign, "tenantId": tenant,
        "recipients": [{"email": e, "name": e.split("@")[0].title(),
                        "personalizations": {"plan": "pro"}} for e in emails]}
    if content is not None:
        data["content"] = content
    return data


async def test_sends_one_personalised_message_per_recipient(make_pipeline: Any,
                                                            sink: SmtpSink) -> None:
    p = make_pipeline()
    emails = ["ann@example.com", "bob@example.com", "cy@example.com"]
    job = StandInJob("b1", batch("c1", emails, CONTENT))
    result = await p.processor(job)
    assert (result["sent"], result["skipped"], result["bounced"]) == (3, 0, 0)
    assert dict(sink.handler.counts) == dict.fromkeys(emails, 1)
    by_rcpt = {m.rcpt_tos[0]: m for m in sink.handler.recent}
    ann = by_rcpt["ann@example.com"]
    assert ann.subject == "Hello Ann"
    assert "Hi Ann, plan pro" in ann.html
    assert "Hi Ann (ann@example.com)" in ann.text
    assert ann.message_id == message_id("t1", "c1", "ann@example.com", "example.com")
    assert "unsubscribe" in ann.headers["List-Unsubscribe"]
    assert ann.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [d.status for d in p.recorded.rows] == ["sent"] * 3
    assert job.progress[-1] == {"done": 3, "total": 3, "sent": 3}


async def test_a_chunk_is_no_larger_than_a_second_of_either_send_rate(
        make_pipeline: Any, sink: SmtpSink) -> None:
    # A chunk takes its tokens at once: at 14 emails a second (a provider's quota) a
    # chunk of 50 would send a burst of three and a half seconds' worth.
    p = make_pipeline(emails_per_second=14, emails_per_second_per_tenant=500)
    assert p.processor.chunk_size == 14
    assert make_pipeline(emails_per_second=2000,
                         emails_per_second_per_tenant=8).processor.chunk_size == 8
    job = StandInJob("b1", batch("c1", [f"r{i}@example.com" for i in range(20)], CONTENT))
    # The second chunk waits for its tokens — or, on a slow machine, parks the job.
    with contextlib.suppress(DelayedError):
        await p.processor(job)
    assert job.progress[0]["done"] == 14
    assert sink.handler.accepted >= 14


async def test_a_rerun_batch_skips_recipients_already_sent(make_pipeline: Any,
                                                           sink: SmtpSink) -> None:
    p = make_pipeline()
    emails = [f"u{i}@example.com" for i in range(30)]
    await p.processor(StandInJob("b1", batch("c1", emails, CONTENT)))
    again = await p.processor(StandInJob("b1", batch("c1", emails, CONTENT),
                                         attempts_made=1))
    assert (again["sent"], again["skipped"]) == (0, 30)
    assert sink.handler.duplicates() == 0
    assert sum(sink.handler.counts.values()) == 30


async def test_stored_campaign_content_and_missing_content(make_pipeline: Any,
                                                           sink: SmtpSink) -> None:
    p = make_pipeline()
    p.campaigns.content[("t1", "stored")] = Content(subject="Stored {{ name }}",
                                                    html="<b>{{ name }}</b>")
    result = await p.processor(StandInJob("b1", batch("stored", ["ann@example.com"])))
    assert result["sent"] == 1
    message = sink.handler.recent[-1]
    assert message.subject == "Stored Ann"
    assert "Ann" in message.text  # text part derived from the HTML
    with pytest.raises(UnrecoverableError, match="campaign 'nope' of tenant 't1' has no "
                                                 "content"):
        await p.processor(StandInJob("b2", batch("nope", ["ann@example.com"])))


async def test_invalid_job_data_is_unrecoverable(make_pipeline: Any) -> None:
    p = make_pipeline()
    with pytest.raises(UnrecoverableError, match=r"recipients\[0\].email"):
        await p.processor(StandInJob("b1", {"campaignId": "c", "tenantId": "t",
                                            "recipients": [{"email": "nope"}]}))


async def test_undefined_variable_fails_only_that_recipient(make_pipeline: Any,
                                                            sink: SmtpSink) -> None:
    p = make_pipeline()
    data = batch("c1", ["ann@example.com", "bob@example.com"], CONTENT)
    del data["recipients"][1]["personalizations"]
    result = await p.processor(StandInJob("b1", data))
    assert (result["sent"], result["failed"]) == (1, 1)
    assert "bob@example.com" in result["errors"][0]
    assert "plan" in result["errors"][0]
    assert dict(sink.handler.counts) == {"ann@example.com": 1}
    ledger = CampaignLedger(p.processor.redis, p.processor.settings.key_prefix, "t1", "c1")
    assert await ledger.status("bob@example.com") == "bounced"  # not retried


async def test_template_and_header_injection_are_refused(make_pipeline: Any,
                                                         sink: SmtpSink) -> None:
    p = make_pipeline()
    hostile = {**CONTENT, "html": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}
    result = await p.processor(StandInJob("b1", batch("c1", ["ann@example.com"], hostile)))
    assert result["failed"] == 1
    assert sink.handler.accepted == 0
    injected = {**CONTENT, "subject": "{{ personalizations.s }}"}
    data = batch("c2", ["ann@example.com"], injected)
    data["recipients"][0]["personalizations"] = {"s": "Hi\r\nBcc: everyone@example.com",
                                                 "plan": "pro"}
    result = await p.processor(StandInJob("b2", data))
    assert result["failed"] == 1
    assert "header injection" in result["errors"][0]
    assert sink.handler.accepted == 0


async def test_permanent_5xx_is_bounced_others_delivered(make_pipeline: Any,
                                                         sink: SmtpSink) -> None:
    p = make_pipeline()
    sink.handler.rules.reject = {"gone@example.com"}
    emails = ["ann@example.com", "gone@example.com", "bob@example.com"]
    result = await p.processor(StandInJob("b1", batch("c1", emails, CONTENT)))
    assert (result["sent"], result["bounced"]) == (2, 1)
    bounced = [d for d in p.recorded.rows if d.status == "bounced"]
    assert [(d.email, d.smtp_code) for d in bounced] == [("gone@example.com", 550)]
    assert "gone@example.com" not in sink.handler.counts
    # Retrying the batch does not try the bounced address again.
    again = await p.processor(StandInJob("b1", batch("c1", emails, CONTENT), 1))
    assert again["skipped"] == 3
    assert sink.handler.refused_permanent == 1


async def test_transient_4xx_retries_only_the_unsent(make_pipeline: Any,
                                                     sink: SmtpSink) -> None:
    p = make_pipeline()
    emails = [f"u{i}@example.com" for i in range(6)]
    sink.handler.rules.temp_fail_count = 2  # the next two recipients get 451
    with pytest.raises(TransientSendError, match="2 of 6 recipients deferred"):
        await p.processor(StandInJob("b1", batch("c1", emails, CONTENT)))
    assert sum(sink.handler.counts.values()) == 4
    result = await p.processor(StandInJob("b1", batch("c1", emails, CONTENT), 1))
    assert (result["sent"], result["skipped"]) == (2, 4)
    assert dict(sink.handler.counts) == dict.fromkeys(emails, 1)


# Long enough that the checks of the open state run inside it even on a slow, busy
# machine (the test waits it out once).
BREAKER_COOLDOWN_MS = 2000


async def test_breaker_opens_then_recovers(make_pipeline: Any, sink: SmtpSink) -> None:
    p = make_pipeline(smtp_breaker_threshold=3, smtp_breaker_cooldown_ms=BREAKER_COOLDOWN_MS)
    emails = [f"u{i}@example.com" for i in range(5)]
    sink.handler.rules.temp_fail_count = 1000
    with pytest.raises(RateLimited) as info:
        await p.processor(StandInJob("b1", batch("c1", emails, CONTENT)))
    assert info.value.ms == BREAKER_COOLDOWN_MS
    assert (await p.processor.breaker.status()).state == "open"
    tried = sink.handler.refused_transient
    # While open, jobs are rate limited without touching the SMTP server.
    with pytest.raises(RateLimited):
        await p.processor(StandInJob("b1", batch("c1", emails, CONTENT), 0))
    assert sink.handler.refused_transient == tried
    sink.handler.rules.temp_fail_count = 0
    deadline = time.monotonic() + BREAKER_COOLDOWN_MS / 1000 + 30
    while True:  # after the cool-down a half-open probe is let through and succeeds
        try:
            result = await p.processor(StandInJob("b1", batch("c1", emails, CONTENT)))
            break
        except RateLimited as exc:
            assert time.monotonic() < deadline, "the breaker never let a probe through"
            await asyncio.sleep(min(exc.ms or 10, 200) / 1000)
    assert result["sent"] == 5
    assert (await p.processor.breaker.status()).state == "closed"
    assert dict(sink.handler.counts) == dict.fromkeys(emails, 1)


async def test_campaign_complete_is_triggered_exactly_once(
    make_pipeline: Any, manager: QueueManager, sink: SmtpSink
) -> None:
    p = make_pipeline()
    p.campaigns.content[("t1", "camp")] = Content(subject="S", text="Hi {{ name }}")
    recipients = [{"email": f"r{i}@example.com"} for i in range(25)]
    jobs = await manager.schedule_batch_email_sending("camp", "t1", recipients, 10)
    assert len(jobs) == 3
    await p.processor(StandInJob(jobs[0].id, jobs[0].data))
    await p.processor(StandInJob(jobs[1].id, jobs[1].data))
    assert p.completed == []
    # The last batch fails for good (after its attempts): the campaign still completes.
    await p.processor.lifecycle.batch_failed_for_good(StandInJob(jobs[2].id, jobs[2].data))
    assert p.completed == [("t1", "camp")]
    # Re-running any batch (a retry, a recovered stall) does not complete it again.
    await p.processor(StandInJob(jobs[2].id, jobs[2].data, 1))
    await p.processor(StandInJob(jobs[0].id, jobs[0].data, 1))
    assert p.completed == [("t1", "camp")]
    assert sum(sink.handler.counts.values()) == 25


async def test_tenant_over_its_rate_waits_others_keep_sending(make_pipeline: Any,
                                                              sink: SmtpSink) -> None:
    p = make_pipeline(emails_per_second_per_tenant=2, emails_per_second=1000)
    slow = StandInJob("a1", batch("ca", [f"a{i}@example.com" for i in range(8)], CONTENT,
                                  tenant="busy"))
    # Within its own per-second allowance (2), whatever the busy tenant does.
    fast = StandInJob("b1", batch("cb", [f"b{i}@example.com" for i in range(2)], CONTENT,
                                  tenant="quiet"))
    outcomes = await asyncio.gather(p.processor(slow), p.processor(fast),
                                    return_exceptions=True)
    # The quiet tenant is not held back by the busy one.
    assert isinstance(outcomes[1], dict)
    assert outcomes[1]["sent"] == 2
    assert fast.delayed_until is None
    # The busy tenant sent at its rate, then parked itself in delayed (DelayedError)
    # instead of holding a worker slot.
    assert type(outcomes[0]).__name__ == "DelayedError"
    assert slow.delayed_until is not None
    sent_a = sum(1 for k in sink.handler.counts if k.startswith("a"))
    assert 2 <= sent_a < 8
    # When it comes back it sends the rest, and only the rest.
    again = StandInJob("a1", slow.data)
    while True:
        # A parked job comes back when its delay is due (as the engine promotes it).
        due = (again.delayed_until or 0) / 1000 - time.time()
        await asyncio.sleep(max(due, 0))
        again = StandInJob("a1", slow.data)
        try:
            result = await p.processor(again)
            break
        except DelayedError:
            continue
    assert result["skipped"] >= sent_a
    assert all(sink.handler.counts[f"a{i}@example.com"] == 1 for i in range(8))
