"""Reading what comes back to a bounce address: bounces and complaints, as ``Report``.

- **Complaints** (RFC 5965 ARF, what mailbox providers' feedback loops send when a user
  presses "This is spam"): a ``multipart/report; report-type=feedback-report`` with a
  ``message/feedback-report`` part, read with the standard library's ``email`` package.
  ``Feedback-Type: abuse`` or ``fraud`` is a complaint; ``not-spam``, ``virus``,
  ``auth-failure`` and ``other`` are not, and nothing is recorded for them.
- **Bounces**: ``flufl.bounce`` (``all_failures``) tells the temporary failures from the
  permanent ones — RFC 3464 DSNs first (``Action: failed`` or ``delayed``), then the
  heuristics GNU Mailman has gathered for what MTAs send instead (Exim's
  ``X-Failed-Recipients``, Postfix, qmail, Exchange, Gmail …). A failure whose DSN
  ``Status`` is 4.x.x (an MTA gave up retrying a temporary error: the mailbox may well
  exist) counts as temporary. The DSN's ``Diagnostic-Code`` — else its ``Status``, else
  the first SMTP reply line of the text — is what the delivery records as the response.
- **Where a bounce address may be**: the envelope recipient the MTA handed the message
  to, the report's own ``To``/``Delivered-To``/``X-Original-To``/``Envelope-To``, ARF's
  ``Original-Mail-From``, and the headers of the original message the report returns or
  attaches (its ``Return-Path`` once delivered). Those headers are kept as
  ``Report.original`` too: the inbound processor's fallback (``X-Tenant-ID``,
  ``X-Campaign-ID`` and the signed ``List-Unsubscribe`` link) reads them.

Anything else — an auto-reply, a message naming no failure, bytes that are no message —
is ``Unreadable``, with the reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from typing import Literal

from flufl.bounce import all_failures

# flufl.bounce logs each of its detectors at INFO, 17 lines a message.
logging.getLogger("flufl.bounce").setLevel(logging.WARNING)

ReportKind = Literal["permanent", "temporary", "complaint"]
COMPLAINT_TYPES = frozenset({"abuse", "fraud"})
_ENVELOPE_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
_ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers")
# Where a text bounce (no MIME parts) starts its copy of the message.
_COPY_MARKER = re.compile(
    r"^[ \t]*-+[ \t]*(?:this is a copy of the message|original message|returned message|"
    r"below this line is a copy of the message)[^\n]*\n", re.IGNORECASE | re.MULTILINE)
_SMTP_LINE = re.compile(r"^[ \t]*([45]\d\d)[ -](?:[245]\.\d{1,3}\.\d{1,3}[ \t])?[^\n]*",
                        re.MULTILINE)
_CODE = re.compile(r"^\s*([245]\d\d)\b")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Report:
    """A bounce or a complaint, as read from the message.

    Attributes:
        kind: permanent (a hard bounce), temporary (a delay, a soft bounce) or complaint.
        recipients: the addresses the report names (failed ones; ARF's Original-Rcpt-To).
        addresses: every header value and envelope address a bounce address may be in,
            most direct first.
        original: the headers of the original message, when the report carries them.
        status: the DSN's Status (``5.1.1``), or ARF's Feedback-Type.
        diagnostic: what the receiving server said (``550 5.1.1 … user unknown``).
        smtp_code: the SMTP reply code of ``diagnostic``, when it has one.
    """

    kind: ReportKind
    recipients: tuple[str, ...]
    addresses: tuple[str, ...]
    original: Message | None
    status: str | None = None
    diagnostic: str | None = None
    smtp_code: int | None = None


@dataclass(frozen=True)
class Unreadable:
    """Not a bounce or complaint we act on; ``reason`` says why."""

    reason: str


def read_report(raw: bytes, rcpt: str | None = None) -> Report | Unreadable:
    """Read one inbound message (``rcpt``: its envelope recipient, when known)."""
    if not raw.strip():
        return Unreadable("the message is empty")
    message = message_from_bytes(raw, policy=compat32)
    if not message.keys():
        return Unreadable("not an email message: no header fields")
    outer = [rcpt] if rcpt else []
    for name in _ENVELOPE_HEADERS:
        outer.extend(str(v) for v in message.get_all(name, []))
    feedback = _feedback_part(message)
    if feedback is not None:
        return _complaint(message, feedback, outer)
    return _bounce(message, outer)


def _complaint(message: Message, feedback: Message, outer: list[str]) -> Report | Unreadable:
    kind = _clean(feedback.get("feedback-type", "")).lower()
    if not kind:
        return Unreadable("a feedback report without a Feedback-Type")
    if kind not in COMPLAINT_TYPES:
        return Unreadable(f"a feedback report of type {kind!r}, not a complaint")
    original = _original(message)
    addresses = [*outer, *(str(v) for v in feedback.get_all("original-mail-from", []))]
    recipients = [_clean(str(v)).strip("<>") for v in feedback.get_all("original-rcpt-to", [])]
    if original is not None:
        addresses.extend(_values(original))
        if not recipients:
            recipients = [_clean(str(v)) for v in original.get_all("to", [])]
    return Report("complaint", tuple(r for r in recipients if r), tuple(addresses),
                  original, status=kind,
                  diagnostic=f"feedback report ({kind}) from "
                             f"{_clean(feedback.get('user-agent', '')) or 'a mailbox provider'}")


def _bounce(message: Message, outer: list[str]) -> Report | Unreadable:
    if not message.get("from", "").strip():
        # flufl.bounce's Yale detector indexes the From's first address and raises on a
        # message with none; an empty address is what a missing From means anyway.
        del message["from"]
        message["From"] = "<>"
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # a detector that chokes on odd input must not fail the job
        return Unreadable(f"the bounce detectors could not read it: {exc}"[:300])
    if not temporary and not permanent:
        return Unreadable("no failed recipient found: not a bounce (an auto-reply, or a "
                          "format that is not recognised)")
    kind: ReportKind = "permanent" if permanent else "temporary"
    blocks = _status_blocks(message, "fail" if permanent else "delayed")
    statuses = [_clean(b.get("status", "")) for b in blocks]
    if kind == "permanent" and statuses and all(s.startswith("4") for s in statuses):
        kind = "temporary"  # given up after retrying a temporary error: a soft bounce
    status = statuses[0] if statuses and statuses[0] else None
    diagnostic, code = _diagnostic(message, blocks)
    original = _original(message)
    addresses = [*outer, *(_values(original) if original is not None else [])]
    recipients = sorted(a.decode("ascii", "replace") for a in (permanent or temporary))
    return Report(kind, tuple(recipients), tuple(addresses), original, status=status,
                  diagnostic=diagnostic or (f"Status {status}" if status else None),
                  smtp_code=code)


def _feedback_part(message: Message) -> Message | None:
    """The fields of the ``message/feedback-report`` part (the parser makes them the
    headers of a sub-message)."""
    for part in message.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
            if isinstance(payload, str):
                return HeaderParser(policy=compat32).parsestr(payload)
    return None


def _status_blocks(message: Message, action: str) -> list[Message]:
    """The per-recipient blocks of the DSN's ``message/delivery-status`` parts whose
    ``Action`` starts with ``action``."""
    blocks: list[Message] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            blocks.extend(b for b in payload if isinstance(b, Message)
                          and _clean(b.get("action", "")).lower().startswith(action))
    return blocks


def _diagnostic(message: Message, blocks: list[Message]) -> tuple[str | None, int | None]:
    """The receiving server's reply: the DSN's Diagnostic-Code, else the first SMTP
    reply line in the report's text (before any copy of the original)."""
    for block in blocks:
        value = _clean(block.get("diagnostic-code", ""))
        if value:
            _type, separator, text = value.partition(";")  # "smtp; 550 5.1.1 …"
            text = text.strip() if separator else value
            found = _CODE.match(text)
            return text[:500], int(found.group(1)) if found else None
    for part in message.walk():
        if part.get_content_type() != "text/plain":
            continue
        text = _text(part)
        marker = _COPY_MARKER.search(text)
        found = _SMTP_LINE.search(text[:marker.start()] if marker else text)
        if found:
            return _clean(found.group(0))[:500], int(found.group(1))
        break  # only the report's own text, not a returned message's
    return None, None


def _original(message: Message) -> Message | None:
    """The original message's headers: an attached ``message/rfc822`` or
    ``text/rfc822-headers`` part, else the copy a text bounce quotes after its marker."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind not in _ORIGINAL_TYPES or part is message:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        if isinstance(payload, str):
            return HeaderParser(policy=compat32).parsestr(_text(part))
    if not message.is_multipart():
        text = _text(message)
        marker = _COPY_MARKER.search(text)
        if marker:
            headers = HeaderParser(policy=compat32).parsestr(text[marker.end():].lstrip())
            return headers if headers.keys() else None
    return None


def _values(headers: Message) -> list[str]:
    """Every header value, Return-Path first."""
    first = [str(v) for v in headers.get_all("return-path", [])]
    return first + [str(v) for k, v in headers.items() if k.lower() != "return-path"]


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _clean(value: object) -> str:
    """A header value on one line (folding and runs of space made one space)."""
    return _SPACE.sub(" ", str(value)).strip()
