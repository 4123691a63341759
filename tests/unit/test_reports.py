"""``services.reports`` on the inbound fixtures: each DSN and ARF report is read as the
kind of report it imitates, with the diagnostic the delivery is to record, and the
bounce address is among the places it looks; what is no report is ``Unreadable``."""

from __future__ import annotations

import pytest

from newsletter_queue.services.reports import Report, Unreadable, read_report
from tests.support.inbound import NAMES, inbound_fixture

VERP = "bounces+" + "a" * 32 + "@bounces.example.com"
SENT = {
    "RETURN_PATH": VERP, "RECIPIENT": "ann@example.com", "FROM": "News <news@example.com>",
    "SUBJECT": "June news", "TENANT": "t1", "CAMPAIGN": "june",
    "MESSAGE_ID": "<" + "0" * 40 + ".june@example.com>",
    "UNSUBSCRIBE_URL": "https://news.example.com/unsubscribe?tenant=t1&campaign=june"
                       "&email=ann%40example.com&sig=abc",
}
EXPECTED = {  # fixture → (kind, recipients reported, status, diagnostic starts with)
    "postfix-550-user-unknown": ("permanent", ("ann@example.com",), "5.1.1",
                                 "550 5.1.1 <ann@example.com>: Recipient address rejected"),
    "postfix-451-delayed": ("temporary", ("ann@example.com",), "4.7.1",
                            "451 4.7.1 <ann@example.com>: Recipient address rejected: "
                            "Greylisted"),
    "exim-550-forwarded": ("permanent", ("jdoe@former-employer.example",), None,
                           "550 5.1.1 <jdoe@former-employer.example>"),
    "gmail-550-no-such-user": ("permanent", ("ann@example.com",), "5.1.1",
                               "550 5.1.1 <ann@example.com>: Recipient address rejected: "
                               "User unknown in local recipient table"),
    "arf-yahoo-abuse": ("complaint", ("ann@example.com",), "abuse",
                        "feedback report (abuse) from Yahoo!-Mail-Feedback/2.0"),
    "arf-outlook-abuse": ("complaint", ("ann@example.com",), "abuse",
                          "feedback report (abuse) from Hotmail FBL"),
}


def test_every_fixture_is_covered() -> None:
    assert set(NAMES) == {*EXPECTED, "vacation-autoreply"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_reads_as_what_it_imitates(name: str) -> None:
    report = read_report(inbound_fixture(name, **SENT))
    assert isinstance(report, Report), report
    kind, recipients, status, diagnostic = EXPECTED[name]
    assert (report.kind, report.recipients, report.status) == (kind, recipients, status)
    assert report.diagnostic is not None
    assert report.diagnostic.startswith(diagnostic)
    assert "\n" not in report.diagnostic  # a folded Diagnostic-Code is one line
    if kind != "complaint":
        assert report.smtp_code == int(diagnostic[:3])
    assert any(VERP in value for value in report.addresses)
    # The original's headers, for the signed fallback.
    assert report.original is not None
    assert (report.original["X-Tenant-ID"], report.original["X-Campaign-ID"]) == ("t1", "june")
    assert SENT["UNSUBSCRIBE_URL"] in report.original["List-Unsubscribe"]


def test_the_envelope_recipient_is_looked_at_first() -> None:
    report = read_report(inbound_fixture("arf-outlook-abuse", **SENT), rcpt="x@y.example")
    assert isinstance(report, Report)
    assert report.addresses[0] == "x@y.example"


def test_a_failure_given_up_after_4xx_retries_is_temporary() -> None:
    raw = inbound_fixture("postfix-550-user-unknown", **SENT).replace(
        b"Status: 5.1.1", b"Status: 4.4.1")
    report = read_report(raw)
    assert isinstance(report, Report)
    assert report.kind == "temporary"


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "empty"),
    (b"   \r\n ", "empty"),
    (b"\x00\xff garbage without any header", "no header fields"),
    (b"From: ann@example.com\r\nSubject: hello\r\n\r\nJust a note.\r\n", "not a bounce"),
    (b"Subject: no sender\r\n\r\nJust a note.\r\n", "not a bounce"),
])
def test_what_is_no_report_is_unreadable(raw: bytes, reason: str) -> None:
    report = read_report(raw)
    assert isinstance(report, Unreadable)
    assert reason in report.reason


def test_an_auto_reply_and_feedback_that_is_no_complaint_are_unreadable() -> None:
    reply = read_report(inbound_fixture("vacation-autoreply", **SENT))
    assert isinstance(reply, Unreadable)
    assert "not a bounce" in reply.reason
    arf = inbound_fixture("arf-yahoo-abuse", **SENT)
    for kind in (b"not-spam", b"auth-failure", b"virus"):
        report = read_report(arf.replace(b"Feedback-Type: abuse", b"Feedback-Type: " + kind))
        assert isinstance(report, Unreadable)
        assert "not a complaint" in report.reason
    report = read_report(arf.replace(b"Feedback-Type: abuse\r\n", b""))
    assert isinstance(report, Unreadable)
    assert "without a Feedback-Type" in report.reason
