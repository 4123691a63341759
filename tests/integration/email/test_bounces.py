"""Bounces and complaints that arrive after sending, end to end: real workers, the SMTP
sink, Redis and the records store (each test on SQLite and on PostgreSQL).

A campaign is sent with VERP bounce addresses; DSNs and ARF reports written after what
Postfix, Exim, Gmail, Yahoo and Outlook send (tests/fixtures/inbound) are filled in with
the real messages and come back through ``POST /api/inbound`` — with the token, as an
MTA's pipe sends them — or through the dev sink's bounce domain. Permanent failures and
complaints suppress the address, and the next campaign skips it; a delay warning, an
auto-reply, forged or unknown bounce addresses and unsigned headers record nothing.
"""

from __future__ import annotations

import base64
from typing import Any

import aiosmtplib
import httpx
import pytest
from pydantic import SecretStr

from newsletter_queue.api import create_app
from newsletter_queue.config import Settings
from newsletter_queue.launch import WorkerServices, inbound_hook
from newsletter_queue.manager import QueueManager
from newsletter_queue.queues import Backoff
from newsletter_queue.services.signing import Signer
from newsletter_queue.services.sink import CapturedMessage, SmtpSink
from newsletter_queue.services.store import Store
from newsletter_queue.services.verp import BounceAddresses
from tests.integration.email.test_campaigns_managed import _finished, services
from tests.support.helpers import wait_for
from tests.support.inbound import inbound_fixture, sent_values
from tests.support.postgres import BOTH_STORES

__all__ = ["services"]  # the fixture, shared with the managed-campaign tests
pytestmark = BOTH_STORES  # each test on SQLite and on PostgreSQL

DOMAIN = "bounces.example.com"
TOKEN = "tok-inbound-7c6b5a4d3e2f1a0b"
FBL = "fbl@bounces.example.com"
ANN, BOB, CY, DEE, EVE, FAY = (f"{n}@example.com" for n in ("ann", "bob", "cy", "dee",
                                                             "eve", "fay"))
READERS = [ANN, BOB, CY, DEE, EVE, FAY]


@pytest.fixture
def bounce_domain() -> str | None:
    return DOMAIN


@pytest.fixture
def settings(settings: Settings, bounce_domain: str | None) -> Settings:
    """A bounce domain, and retries of the analytics queue that do not hold a test back
    (a bounce address whose delivery is not recorded is tried again before giving up)."""
    analytics = settings.queues["analytics"].model_copy(
        update={"backoff": Backoff(type="fixed", delay_ms=20)})
    return settings.model_copy(update={
        "bounce_domain": bounce_domain, "queues": {**settings.queues, "analytics": analytics}})


def _api(settings: Settings) -> httpx.AsyncClient:
    """The API bound publicly with a token, called as an MTA's pipe calls it."""
    app = create_app(settings.model_copy(update={"api_token": SecretStr(TOKEN)}),
                     host="0.0.0.0")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="https://nlq.example.com",
                             headers={"Authorization": f"Bearer {TOKEN}",
                                      "Content-Type": "message/rfc822"})


async def _send(manager: QueueManager, campaign: str, readers: list[str]) -> Any:
    await manager.campaigns.save("t1", campaign, subject=f"{campaign.title()} news",
                                 text="Hello {{ email }}", from_addr="News <news@example.com>")
    await manager.campaigns.send("t1", campaign, [{"email": e} for e in readers])
    return await _finished(manager, campaign)


def _captured(sink: SmtpSink, email: str, campaign: str) -> CapturedMessage:
    return next(m for m in reversed(sink.handler.recent)
                if m.rcpt_tos == [email] and m.headers.get("X-Campaign-ID") == campaign)


async def _post(api: httpx.AsyncClient, raw: bytes, rcpt: str | None = None) -> str:
    answer = await api.post("/api/inbound", content=raw,
                            params={"rcpt": rcpt} if rcpt else None)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["queue"], body["name"]) == ("analytics", "inbound-message")
    return str(body["id"])


async def _result(manager: QueueManager, job_id: str) -> dict[str, Any]:
    async def probe() -> Any:
        info = await manager.get_job("analytics", job_id)
        assert info is None or info.state != "failed", info.failed_reason
        # (the hash and the state are two reads: a job may read as completed just before
        # its return value is there)
        done = info is not None and info.state == "completed" and info.return_value
        return info if done else None

    info = await wait_for(probe, timeout=60, message=f"inbound job {job_id}")
    return dict(info.return_value)


async def _store(settings: Settings) -> Store:
    store = Store.from_settings(settings)
    await store.init()
    return store


@pytest.mark.timeout(240)
async def test_bounces_and_complaints_suppress_and_the_next_campaign_skips_them(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink,
        settings: Settings) -> None:
    await _send(manager, "june", READERS)
    sent = {email: _captured(sink, email, "june") for email in READERS}
    for message in sent.values():  # each message's envelope sender is its bounce address
        local, _, domain = message.mail_from.rpartition("@")
        assert (domain, local[:8]) == (DOMAIN, "bounces+")
        assert len(local.encode()) <= 64
        assert "Return-Path" not in message.headers
    assert len({m.mail_from for m in sent.values()}) == len(READERS)
    values = {email: sent_values(message) for email, message in sent.items()}
    # The dev sink hands mail to the bounce domain to the same job (as `up` wires it).
    sink.handler.bounce_domain, sink.handler.inbound = DOMAIN, inbound_hook(manager)

    async with _api(settings) as api:
        refused = await api.post("/api/inbound", content=b"x",
                                 headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401  # the API's access rules
        assert (await api.post("/api/inbound", content=b"")).status_code == 400
        ann_dsn = inbound_fixture("postfix-550-user-unknown", **values[ANN])
        jobs = {
            ANN: await _post(api, ann_dsn, values[ANN]["RETURN_PATH"]),
            EVE: await _post(api, inbound_fixture("exim-550-forwarded", **values[EVE]),
                             values[EVE]["RETURN_PATH"]),
            CY: await _post(api, inbound_fixture("postfix-451-delayed", **values[CY]),
                            values[CY]["RETURN_PATH"]),
            DEE: await _post(api, inbound_fixture("arf-yahoo-abuse", **values[DEE]), FBL),
        }
        # The same message piped twice (an MTA retrying) is one job.
        again = await api.post("/api/inbound", content=ann_dsn,
                               params={"rcpt": values[ANN]["RETURN_PATH"]})
        assert again.status_code == 202
        assert (again.json()["id"], again.json()["created"]) == (jobs[ANN], False)
        # Gmail's bounce of Bob's message arrives over SMTP at the dev sink.
        async with aiosmtplib.SMTP(hostname=sink.host, port=sink.port) as smtp:
            await smtp.sendmail("", [values[BOB]["RETURN_PATH"]],  # MAIL FROM:<>
                                inbound_fixture("gmail-550-no-such-user", **values[BOB]))
        assert sink.handler.inbound_handed == 1
        assert sink.handler.counts[values[BOB]["RETURN_PATH"]] == 0  # not captured

        results = {email: await _result(manager, job) for email, job in jobs.items()}
        for email, kind, event in ((ANN, "permanent", "bounced"),
                                   (EVE, "permanent", "bounced"),
                                   (CY, "temporary", "deferred"),
                                   (DEE, "complaint", "complained")):
            result = results[email]
            assert (result["recorded"], result["kind"], result["recipient"],
                    result["event"], result["via"]) == (
                True, kind, email, event, "bounce address"), result
            assert result["suppressed"] is (kind != "temporary")
        # Eve's mail was forwarded to an old address: the report names that address,
        # the bounce address names Eve's message.
        assert results[EVE]["reported"] == ["jdoe@former-employer.example"]

        store = await _store(settings)
        try:
            await wait_for(lambda: store.get_suppression("t1", BOB), timeout=60,
                           message="Bob's bounce through the dev sink")
            for email in (ANN, BOB, EVE):
                entry = await store.get_suppression("t1", email)
                assert entry is not None
                assert (entry.reason, entry.campaign_id) == ("hard-bounce", "june")
                delivery = await store.get_delivery("t1", "june", email)
                assert delivery is not None
                assert (delivery.status, delivery.smtp_code) == ("bounced", 550)
                assert (delivery.smtp_response or "").startswith("550 5.1.1 <")
            complaint = await store.get_suppression("t1", DEE)
            assert complaint is not None
            assert (complaint.reason, complaint.campaign_id) == ("complaint", "june")
            for email in (CY, FAY):  # a delay warning suppresses nothing
                assert await store.get_suppression("t1", email) is None
                delivery = await store.get_delivery("t1", "june", email)
                assert delivery is not None
                assert delivery.status == "sent"
            counts = {kind: await store.count_events("t1", "june", kind)
                      for kind in ("bounced", "deferred", "complained")}
            assert counts == {"bounced": 3, "deferred": 1, "complained": 1}

            # The same bounce delivered once more (another copy, another job): nothing new.
            copy = ann_dsn.replace(b"Message-Id: <2025", b"Message-Id: <copy-2025")
            repeat = await _result(manager, await _post(api, copy))
            assert (repeat["recorded"], repeat["suppressed"], repeat["delivery_bounced"],
                    repeat["event"]) == (True, False, False, None)
            assert await store.count_events("t1", "june", "bounced") == 3

            stats = await store.refresh_campaign_stats("t1", "june")
            assert (stats.bounced, stats.complaints) == (3, 1)
            assert await store.suppression_counts("t1", "june") == {
                "hard-bounce": 3, "complaint": 1}
        finally:
            await store.close()

    july = await _send(manager, "july", READERS)
    assert (july.sent, july.suppressed) == (2, 4)
    assert july.stats is not None
    assert july.stats.suppressed == 4
    for email in (ANN, BOB, DEE, EVE):
        assert sink.handler.counts[email] == 1  # June's message only
    assert sink.handler.counts[CY] == sink.handler.counts[FAY] == 2


def _forged(token: str) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return alphabet[(alphabet.index(token[5]) + 1) % 32].join((token[:5], token[6:]))


@pytest.mark.timeout(240)
async def test_forged_unknown_and_unsigned_reports_record_nothing(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink,
        settings: Settings) -> None:
    await _send(manager, "june", [ANN, BOB])
    ann = sent_values(_captured(sink, ANN, "june"))
    token = ann["RETURN_PATH"].partition("+")[2].partition("@")[0]
    raw = base64.b32decode(token.upper())
    ours = BounceAddresses.from_settings(settings)
    t2_token = ours.token("t2", "june", ANN)
    spliced = base64.b32encode(raw[:10] + base64.b32decode(t2_token.upper())[10:])
    elsewhere = BounceAddresses(Signer(b"another-installation-secret"), DOMAIN)
    # The original's signed unsubscribe link would identify Ann's message on its own:
    # every forgery below comes with it altered too.
    unsigned = ann["UNSUBSCRIBE_URL"].rpartition("&sig=")[0]
    cases: dict[str, tuple[bytes, str]] = {
        "a tampered bounce address": (inbound_fixture("postfix-550-user-unknown", **{
            **ann, "RETURN_PATH": f"bounces+{_forged(token)}@{DOMAIN}",
            "UNSUBSCRIBE_URL": unsigned}), "does not verify"),
        "Ann's reference with tenant t2's MAC": (inbound_fixture("arf-yahoo-abuse", **{
            **ann, "RETURN_PATH": f"bounces+{spliced.decode().lower()}@{DOMAIN}",
            "UNSUBSCRIBE_URL": unsigned}), "does not verify"),
        "another installation's address": (inbound_fixture("gmail-550-no-such-user", **{
            **ann, "RETURN_PATH": str(elsewhere.address("t1", "june", ANN)),
            "UNSUBSCRIBE_URL": unsigned}), "does not verify"),
        "a signed address of tenant t2, which never sent": (inbound_fixture(
            "postfix-550-user-unknown", **{
                **ann, "RETURN_PATH": str(ours.address("t2", "june", ANN)), "TENANT": "t2",
                "UNSUBSCRIBE_URL": unsigned}), "names no recorded delivery"),
        "an address never sent to": (inbound_fixture("postfix-550-user-unknown", **{
            **ann, "RETURN_PATH": str(ours.address("t1", "june", "stranger@example.com")),
            "RECIPIENT": "stranger@example.com", "UNSUBSCRIBE_URL": unsigned}),
            "names no recorded delivery"),
        "unsigned original headers": (inbound_fixture("exim-550-forwarded", **{
            **ann, "RETURN_PATH": "news@example.com", "UNSUBSCRIBE_URL": unsigned}),
            "no bounce address of ours and no signed original headers"),
        "a signed link under another tenant's X-Tenant-ID": (inbound_fixture(
            "arf-outlook-abuse", **{**ann, "RETURN_PATH": "news@example.com",
                                    "TENANT": "t2"}),
            "x-tenant-id does not match"),
        "an out-of-office reply": (inbound_fixture("vacation-autoreply", **ann),
                                   "not a bounce"),
        "no message at all": (b"\x00\x01 this is not a message", "no header fields"),
    }
    async with _api(settings) as api:
        for case, (message, reason) in cases.items():
            result = await _result(manager, await _post(api, message))
            assert result["recorded"] is False, (case, result)
            assert reason in result["reason"], (case, result)
    store = await _store(settings)
    try:
        for tenant in ("t1", "t2"):
            assert await store.count_suppressions(tenant) == 0
            assert await store.count_events(tenant) == 0
        delivery = await store.get_delivery("t1", "june", ANN)
        assert delivery is not None
        assert delivery.status == "sent"
    finally:
        await store.close()


@pytest.mark.parametrize("bounce_domain", [None])
@pytest.mark.timeout(240)
async def test_without_a_bounce_domain_signed_original_headers_identify_the_message(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink,
        settings: Settings) -> None:
    await _send(manager, "june", [ANN, BOB, CY])
    sent = {email: sent_values(_captured(sink, email, "june")) for email in (ANN, BOB, CY)}
    assert {v["RETURN_PATH"] for v in sent.values()} == {"news@example.com"}  # as before
    unsigned = sent[CY]["UNSUBSCRIBE_URL"].rpartition("&sig=")[0]
    async with _api(settings) as api:
        complaint = await _result(manager, await _post(
            api, inbound_fixture("arf-outlook-abuse", **sent[ANN]), FBL))
        bounce = await _result(manager, await _post(
            api, inbound_fixture("gmail-550-no-such-user", **sent[BOB])))
        forged = await _result(manager, await _post(api, inbound_fixture(
            "postfix-550-user-unknown", **{**sent[CY], "UNSUBSCRIBE_URL": unsigned})))
    assert (complaint["recorded"], complaint["kind"], complaint["recipient"],
            complaint["via"]) == (True, "complaint", ANN, "signed original headers")
    assert (bounce["recorded"], bounce["kind"], bounce["recipient"], bounce["via"]) == (
        True, "permanent", BOB, "signed original headers")
    # X-Tenant-ID, X-Campaign-ID and the Message-ID are right, but nothing is signed.
    assert forged["recorded"] is False
    store = await _store(settings)
    try:
        assert await store.suppression_counts("t1", "june") == {
            "complaint": 1, "hard-bounce": 1}
        assert await store.get_suppression("t1", CY) is None
    finally:
        await store.close()
