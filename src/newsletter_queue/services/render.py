"""Rendering campaign content into one MIME message per recipient.

Templates are Jinja2 in a *sandboxed* environment (campaign content is written by
tenants, so templates must not reach Python internals), with HTML autoescaped and
undefined variables an error (``StrictUndefined``): a missing personalisation fails
that recipient with a clear message instead of sending "Hello ,".

The context of every template is ``name``, ``email``, ``personalizations`` and
``unsubscribe_url``. Templates are compiled once per campaign (``CompiledCampaign``),
not once per recipient.

Every message gets a deterministic ``Message-ID`` derived from (tenant, campaign,
recipient): should a message ever be sent twice (a crash in the instant between the
SMTP server accepting it and our ledger recording it), the copies carry the same id and
receivers that collapse duplicates will. ``List-Unsubscribe`` (with one-click POST,
RFC 8058) is set on every message: the recipient's signed link (``links.Links``).

The envelope sender (SMTP ``MAIL FROM``, the ``Return-Path`` the receiver records) is
the recipient's own bounce address when a bounce domain is configured (``verp``), so
that what comes back says whose message it was; otherwise the campaign's sender.

A campaign that tracks opens or clicks (``Content.track_opens``/``track_clicks``) has its
rendered HTML passed through ``tracking.Tracker`` per recipient: the open pixel and the
click redirects are added after the template ran, the text part is left alone.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import time
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr
from typing import Any

from jinja2 import DictLoader, StrictUndefined, Template, TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from ..errors import DeliveryError
from ..jobs import Recipient
from .links import Links
from .template_bounds import MAX_LOOP_NESTING, MAX_STRING, BoundedSandbox, deadline
from .tracking import Tracker
from .verp import BounceAddresses

_TAGS = re.compile(r"<[^>]+>")
# RFC 5322 field names: printable ASCII except ':' (and so no space).
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# Headers every message gets (or that would add or hide addressees): a campaign's custom
# headers may not repeat them.
_OWN_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version", "reply-to",
    "sender", "return-path", "list-unsubscribe", "list-unsubscribe-post", "x-campaign-id",
    "x-tenant-id", "content-type", "content-transfer-encoding", "content-disposition",
})
_SPACE = re.compile(r"[ \t]+")


class RenderError(DeliveryError):
    """Rendering failed for one recipient (undefined variable, unsafe access...)."""


class ContentError(DeliveryError):
    """The campaign content itself is unusable (template syntax error, no body).

    ``field`` (``subject``, ``html``, ``text``, ``from_addr``, ``reply_to``, ``headers``)
    and ``line`` (of a template) say where, when known.
    """

    def __init__(self, message: str, *, field: str | None = None,
                 line: int | None = None) -> None:
        self.field = field
        self.line = line
        super().__init__(message)


@dataclass(frozen=True)
class Content:
    """What a campaign (or a transactional job) says."""

    subject: str
    html: str | None = None
    text: str | None = None
    from_addr: str | None = None
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    track_opens: bool = False
    track_clicks: bool = False


# A loader with no templates: without one, {% include %}, {% import %} and {% extends %}
# raise TypeError ("no loader") instead of a TemplateError, and a job failed that way is
# retried as if the failure were transient.
_NO_TEMPLATES = DictLoader({})


# The rendered size of one part, and how long one render may take (the other bounds of
# tenant templates are in template_bounds).
MAX_OUTPUT_CHARS = MAX_STRING
RENDER_DEADLINE_S = 2.0


def _make_env(autoescape: bool) -> SandboxedEnvironment:
    return BoundedSandbox(autoescape=autoescape, undefined=StrictUndefined,
                          loader=_NO_TEMPLATES)


def _html_env() -> SandboxedEnvironment:
    return _make_env(autoescape=True)


def _plain_env() -> SandboxedEnvironment:
    return _make_env(autoescape=False)


def _compile(env: SandboxedEnvironment, source: str) -> Template:
    """Compile, refusing loops nested deeper than ``MAX_LOOP_NESTING`` (work grows as a
    power of the nesting)."""
    def depth(node: nodes.Node) -> int:
        inner = max((depth(child) for child in node.iter_child_nodes()), default=0)
        return inner + 1 if isinstance(node, nodes.For) else inner

    if depth(env.parse(source)) > MAX_LOOP_NESTING:
        raise TemplateError(f"loops nested more than {MAX_LOOP_NESTING} deep")
    template = env.from_string(source)
    # Jinja copies a template's globals into every render's context; as its usual
    # ChainMap (over the environment's globals) that copy is a Python-level walk, a
    # fifth of rendering a short template. Ours never change after compiling.
    template.globals = dict(template.globals)
    return template


def _render(template: Template, context: dict[str, Any]) -> str:
    """Render with an output cap and a deadline (checked as output is produced)."""
    parts: list[str] = []
    size = 0
    end = time.monotonic() + RENDER_DEADLINE_S
    token = deadline.set(end)  # the bounds' checks look at it too
    try:
        for chunk in template.generate(context):
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError(
                    f"rendered output larger than {MAX_OUTPUT_CHARS} characters")
            if time.monotonic() > end:
                raise SecurityError(f"rendering took longer than {RENDER_DEADLINE_S:.0f} s")
    finally:
        deadline.reset(token)
    return "".join(parts)


_HTML_ENV = _html_env()
_PLAIN_ENV = _plain_env()


def message_id(tenant_id: str, campaign_id: str, email: str, domain: str) -> str:
    """The deterministic Message-ID of one campaign message to one recipient."""
    digest = hashlib.sha256(f"{tenant_id}\0{campaign_id}\0{email.lower()}".encode())
    return f"<{digest.hexdigest()[:40]}.{campaign_id}@{domain}>"


def html_to_text(html: str) -> str:
    """A readable text part when the campaign has only HTML."""
    text = re.sub(r"(?i)<br\s*/?>|</p>|</h[1-6]>|</li>|</tr>", "\n", html)
    text = _TAGS.sub("", text)
    lines = [_SPACE.sub(" ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line) + "\n"


class CompiledCampaign:
    """A campaign's templates, compiled once, rendering one message per recipient.

    Args:
        tenant_id, campaign_id: identify the campaign (headers, Message-ID).
        content: subject, bodies and sender of the campaign.
        default_from: sender when the content has none.
        links: builds the recipient's signed links (unsubscribe, open pixel, clicks).
        bounces: makes each recipient's bounce address (``envelope_for``); without it,
            or without a bounce domain, every message's envelope sender is the sender's.

    Raises:
        ContentError: a template does not compile, or there is no body at all.
    """

    def __init__(self, tenant_id: str, campaign_id: str, content: Content, *,
                 default_from: str, links: Links,
                 bounces: BounceAddresses | None = None) -> None:
        if not content.html and not content.text:
            raise ContentError(f"campaign {campaign_id!r} of tenant {tenant_id!r} has "
                               "neither an HTML nor a text body")
        self.tenant_id = tenant_id
        self.campaign_id = campaign_id
        self.content = content
        self.sender_header = content.from_addr or default_from
        self.envelope_from = parseaddr(self.sender_header)[1]
        if "@" not in self.envelope_from:
            raise ContentError(f"campaign {campaign_id!r}: sender {self.sender_header!r} "
                               "has no address")
        self.domain = self.envelope_from.rpartition("@")[2] or "localhost"
        self.links = links
        self.bounces = bounces
        self._tracker = Tracker(links, tenant_id, campaign_id, opens=content.track_opens,
                                clicks=content.track_clicks) \
            if content.html and (content.track_opens or content.track_clicks) else None
        self._from_header = _address_header(self.sender_header)
        self._reply_to_header = _address_header(content.reply_to or "")
        for name, value in [("from", self.sender_header), ("reply-to", content.reply_to or ""),
                            *content.headers.items()]:
            if any(c in f"{name}{value}" for c in "\r\n\0") or ":" in name:
                raise ContentError(f"campaign {campaign_id!r}: header {name!r} contains a "
                                   "line break or ':' (header injection refused)")
        for name in content.headers:
            if not _FIELD_NAME.fullmatch(name) or name.lower() in _OWN_HEADERS:
                raise ContentError(
                    f"campaign {campaign_id!r}: custom header {name!r} refused: it must be "
                    "printable ASCII without spaces and not one the message already has "
                    "(From, To, Cc, Bcc, Subject, Reply-To, Content-* …) (header injection "
                    "refused)")
        self._extra_headers = [(k, _encode_header(v)) for k, v in content.headers.items()]
        try:
            self._subject: Template = _compile(_PLAIN_ENV, content.subject)
            self._html: Template | None = (
                _compile(_HTML_ENV, content.html) if content.html else None)
            self._text: Template | None = (
                _compile(_PLAIN_ENV, content.text) if content.text else None)
        except TemplateError as exc:
            raise ContentError(f"campaign {campaign_id!r} of tenant {tenant_id!r}: "
                               f"template error: {exc}") from None

    def envelope_for(self, email: str) -> str:
        """The SMTP ``MAIL FROM`` of the message to ``email``: its bounce address (VERP)
        when there is a bounce domain, else ``envelope_from``."""
        if self.bounces is not None:
            address = self.bounces.address(self.tenant_id, self.campaign_id, email)
            if address is not None:
                return address
        return self.envelope_from

    def unsubscribe_url(self, email: str) -> str:
        return self.links.unsubscribe_url(self.tenant_id, self.campaign_id, email)

    def render(self, recipient: Recipient) -> tuple[str, bytes]:
        """Return (Message-ID, the message as bytes) for ``recipient``.

        Raises:
            RenderError: this recipient's message cannot be rendered.
        """
        unsubscribe = self.unsubscribe_url(recipient.email)
        context: dict[str, Any] = {
            "name": recipient.name or "",
            "email": recipient.email,
            "personalizations": recipient.personalizations or {},
            "unsubscribe_url": unsubscribe,
        }
        try:
            subject = _render(self._subject, context)
            html = _render(self._html, context) if self._html else None
            text = _render(self._text, context) if self._text else html_to_text(html or "")
        except TemplateError as exc:
            raise RenderError(f"template error for {recipient.email}: {exc}") from None
        if html is not None and self._tracker is not None:
            html = self._tracker.apply(html, recipient.email)
        if "\r" in subject or "\n" in subject or "\0" in subject:
            raise RenderError(f"rendered subject for {recipient.email} contains a line "
                              "break or NUL (header injection refused)")
        for label, raw in (("name", recipient.name or ""), ("email", recipient.email)):
            if "\r" in raw or "\n" in raw:
                raise RenderError(f"recipient {label} contains a line break (header "
                                  "injection refused)")
        mid = message_id(self.tenant_id, self.campaign_id, recipient.email, self.domain)
        to = formataddr((recipient.name, recipient.email), charset="utf-8") \
            if recipient.name else recipient.email
        headers = [
            ("From", self._from_header),
            ("To", to),
            ("Subject", _encode_header(subject)),
            ("Date", _date_header()),
            ("Message-ID", mid),
            ("MIME-Version", "1.0"),
        ]
        if self.content.reply_to:
            headers.append(("Reply-To", self._reply_to_header))
        headers += [
            ("List-Unsubscribe", f"<{unsubscribe}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("X-Campaign-ID", self.campaign_id),
            ("X-Tenant-ID", self.tenant_id),
            *self._extra_headers,
        ]
        return mid, _assemble(headers, text, html, mid)


_date_cache: tuple[int, str] = (0, "")


def _date_header() -> str:
    """The ``Date`` header of a message sent now (formatted once a second)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, localtime=False, usegmt=True))
    return _date_cache[1]


def _encode_header(value: str) -> str:
    """RFC 2047 encoded word(s) for non-ASCII header text."""
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(linesep="\r\n")


def _address_header(value: str) -> str:
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8") if name else address


# RFC 5322's limit on a line, CRLF excluded: a longer one needs an encoding.
_MAX_LINE = 998


def _part(subtype: str, body: str) -> bytes:
    """One text part. ASCII with lines of at most 998 characters (most templates) goes as
    it is (``7bit``, CRLF line ends); anything else is quoted-printable, which encoding
    took a tenth of the email path's time and makes the message larger."""
    raw = body.encode("utf-8")
    if (body.isascii() and "\r" not in body and "\0" not in body
            and max(map(len, raw.split(b"\n"))) <= _MAX_LINE):
        encoding, encoded = "7bit", raw.replace(b"\n", b"\r\n")
    else:
        encoding = "quoted-printable"
        encoded = binascii.b2a_qp(raw, istext=True).replace(b"\n", b"\r\n")
    return (f"Content-Type: text/{subtype}; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode() + encoded


def _assemble(headers: list[tuple[str, str]], text: str, html: str | None, mid: str
              ) -> bytes:
    """The MIME message as bytes, written directly.

    ``email.message.EmailMessage`` re-parses every header it is given and took two
    thirds of the time of sending a message; our headers are built and checked here,
    so a plain writer (7bit or quoted-printable bodies, RFC 2047 headers) does the job.
    """
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    if html is None:
        return head.encode() + _part("plain", text)
    boundary = "=_nlq_" + hashlib.sha1(mid.encode(), usedforsecurity=False).hexdigest()
    return b"".join([
        head.encode(),
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode(),
        f"--{boundary}\r\n".encode(), _part("plain", text), b"\r\n",
        f"--{boundary}\r\n".encode(), _part("html", html), b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ])
