"""DKIM end to end: batches through the real email processor, the SMTP pool and the
aiosmtpd sink, then ``dkim.verify`` on the bytes the sink received, with a DNS lookup
that serves only the TXT records the test publishes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dkim
import pytest
from dkim.util import parse_tag_value
from pydantic import SecretStr

from newsletter_queue.config import DkimKey
from newsletter_queue.services.dkim import DkimKeyError
from newsletter_queue.services.sink import CapturedMessage, SmtpSink
from tests.integration.email.conftest import StandInJob
from tests.support.dkimkeys import FakeDns, pem, rsa_key

SUBJECT = "Grüße, {{ name }} — café ☕"
CONTENT = {"subject": SUBJECT, "html": "<p>Hi {{ name }}, plan {{ personalizations.plan }}</p>",
           "text": "Hi {{ name }}, plan {{ personalizations.plan }}",
           "from": "Zoë Café <news@example.com>", "replyTo": "Antwort <reply@example.com>"}
GLOBAL = {"dkim_domain": "example.com", "dkim_selector": "nl2025",
          "dkim_private_key": SecretStr(pem(rsa_key("global")))}


def batch(tenant: str, emails: dict[str, str]) -> dict[str, Any]:
    return {"campaignId": "c1", "tenantId": tenant, "content": CONTENT,
            "recipients": [{"email": e, "name": n, "personalizations": {"plan": "pro"}}
                           for e, n in emails.items()]}


def received(sink: SmtpSink) -> dict[str, CapturedMessage]:
    return {m.rcpt_tos[0]: m for m in sink.handler.recent}


def signature_tags(raw: bytes) -> dict[bytes, bytes]:
    signer = dkim.DKIM(raw)
    headers = [v for k, v in signer.headers if k.lower() == b"dkim-signature"]
    assert len(headers) == 1
    return dict(parse_tag_value(headers[0]))


def dns() -> FakeDns:
    published = FakeDns()
    published.publish("nl2025", "example.com", rsa_key("global"))
    published.publish("acme1", "mail.acme.example", rsa_key("acme"))
    return published


async def test_sent_messages_verify_with_utf8_headers_and_cover_one_click(
        make_pipeline: Any, sink: SmtpSink) -> None:
    p = make_pipeline(**GLOBAL)
    result = await p.processor(StandInJob("b1", batch("t1", {
        "renee@example.org": "Renée Müller", "bob@example.org": "Bob"})))
    assert result["sent"] == 2
    lookups = dns()
    for rcpt, message in received(sink).items():
        raw = message.raw
        assert raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
                              b"d=example.com;")
        assert dkim.verify(raw, dnsfunc=lookups), rcpt
        tags = signature_tags(raw)
        assert (tags[b"d"], tags[b"s"], tags[b"a"]) == (b"example.com", b"nl2025",
                                                        b"rsa-sha256")
        signed = {h.strip() for h in tags[b"h"].replace(b"\r\n", b"").split(b":")}
        assert {b"list-unsubscribe", b"list-unsubscribe-post", b"from", b"to", b"subject",
                b"date", b"message-id", b"mime-version", b"content-type",
                b"reply-to"} <= signed
    assert lookups.asked == ["nl2025._domainkey.example.com"] * 2
    renee = received(sink)["renee@example.org"]
    assert renee.subject == "Grüße, Renée Müller — café ☕"
    assert renee.headers["From"] == "Zoë Café <news@example.com>"
    assert renee.headers["To"] == "Renée Müller <renee@example.org>"
    head = renee.raw.split(b"\r\n\r\n", 1)[0]
    assert head.count(b"=?utf-8?") >= 3  # Subject, From and To as encoded words
    assert head.isascii()


async def test_a_tampered_message_fails_verification(make_pipeline: Any,
                                                     sink: SmtpSink) -> None:
    p = make_pipeline(**GLOBAL)
    await p.processor(StandInJob("b1", batch("t1", {"ann@example.org": "Ann"})))
    raw = received(sink)["ann@example.org"].raw
    lookups = dns()
    assert dkim.verify(raw, dnsfunc=lookups)
    assert raw.count(b"plan pro") == 2  # the text and the HTML part
    body_changed = raw.replace(b"plan pro", b"plan max", 1)
    assert not dkim.verify(body_changed, dnsfunc=lookups)
    head, _, _ = raw.partition(b"\r\n\r\n")
    unsubscribe = next(line for line in head.split(b"\r\n")
                       if line.startswith(b"List-Unsubscribe:"))
    link_changed = raw.replace(unsubscribe, b"List-Unsubscribe: <https://evil.example/u>")
    assert not dkim.verify(link_changed, dnsfunc=lookups)
    post_removed = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b"")
    assert post_removed != raw
    assert not dkim.verify(post_removed, dnsfunc=lookups)


async def test_a_tenant_with_its_own_key_signs_with_it_others_with_the_global_key(
        make_pipeline: Any, sink: SmtpSink, tmp_path: Path) -> None:
    key_file = tmp_path / "acme.pem"
    key_file.write_text(pem(rsa_key("acme"), pkcs8=True))
    acme = DkimKey(domain="mail.acme.example", selector="acme1", private_key_file=key_file)
    p = make_pipeline(**GLOBAL, dkim_tenants={"acme": acme})
    await p.processor(StandInJob("b1", batch("acme", {"ann@example.org": "Ann"})))
    await p.processor(StandInJob("b2", batch("t1", {"bob@example.org": "Bob"})))
    by_rcpt = received(sink)
    lookups = dns()
    ann, bob = by_rcpt["ann@example.org"].raw, by_rcpt["bob@example.org"].raw
    assert (signature_tags(ann)[b"d"], signature_tags(ann)[b"s"]) == (b"mail.acme.example",
                                                                      b"acme1")
    assert (signature_tags(bob)[b"d"], signature_tags(bob)[b"s"]) == (b"example.com",
                                                                      b"nl2025")
    assert dkim.verify(ann, dnsfunc=lookups)
    assert dkim.verify(bob, dnsfunc=lookups)
    # Signed by acme's key indeed: the global key published under acme's name fails it.
    swapped = FakeDns({"acme1._domainkey.mail.acme.example":
                       lookups.records["nl2025._domainkey.example.com"]})
    assert not dkim.verify(ann, dnsfunc=swapped)


async def test_without_any_key_mail_goes_out_unsigned(make_pipeline: Any,
                                                      sink: SmtpSink) -> None:
    p = make_pipeline()
    assert p.processor.signer is None
    await p.processor(StandInJob("b1", batch("t1", {"ann@example.org": "Ann"})))
    raw = received(sink)["ann@example.org"].raw
    assert raw.startswith(b"From: ")
    assert b"DKIM-Signature" not in raw


async def test_a_bad_key_stops_the_processor_from_being_built(make_pipeline: Any) -> None:
    bad = "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END RSA PRIVATE KEY-----"
    with pytest.raises(DkimKeyError) as caught:
        make_pipeline(**{**GLOBAL, "dkim_private_key": SecretStr(bad)})
    assert "c2VjcmV0" not in str(caught.value)


def test_the_worker_command_refuses_to_start_with_a_bad_key(
        redis_url: str, prefix: str, tmp_path: Path, redis_client: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NLQ_")}
    env.update(REDIS_URL=redis_url, NLQ_KEY_PREFIX=prefix, NLQ_STATE_DIR=str(tmp_path),
               COLUMNS="200", SMTP_URL="smtp://127.0.0.1:1", NLQ_DKIM_DOMAIN="example.com",
               NLQ_DKIM_SELECTOR="nl2025", NLQ_DKIM_PRIVATE_KEY_FILE=str(tmp_path / "k.pem"))
    (tmp_path / "k.pem").write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n")
    nlq = Path(sys.executable).parent / "nlq"
    done = subprocess.run([str(nlq), "worker"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert "DKIM key of NLQ_DKIM_PRIVATE_KEY_FILE" in done.stderr
    assert "is not a PEM private key" in done.stderr
    assert "c2VjcmV0" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
