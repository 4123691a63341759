"""The development SMTP sink: a real SMTP server (aiosmtpd) that accepts and keeps mail.

``nlq up`` starts it when ``SMTP_URL`` is unset, so campaigns are delivered end to end
over real SMTP without reaching anyone. It keeps:

- exact delivery counts per recipient (tests and ``bench/email.py`` count duplicates
  and missing recipients at the sink, not in the sender);
- the most recent messages in memory (with the bytes as received, which DKIM checks
  need), and, when given a Redis client, in a capped Redis list (``{prefix}:devmail``,
  without the bytes) so the dev API and dashboard in any process can show the captured
  mail;
- optional failure rules for tests: answer ``451`` (transient) for a while, or ``550``
  (permanent) for chosen recipients.

It offers PIPELINING, so senders (ours among them) group MAIL, RCPT and DATA.

Given a bounce domain and an ``inbound`` hook (``nlq up`` passes its own and the
``inbound-message`` job's enqueue), mail to ``…@<bounce domain>`` — a bounce or complaint
sent to a message's VERP address — is handed to the hook instead of being captured, as
the MTA of a real bounce domain hands it to ``POST /api/inbound``.

It runs on the caller's event loop (``asyncio`` server), or standalone with
``python -m newsletter_queue.services.sink --port 1025``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hmac
import json
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ..keyspace import devmail_key

log = logging.getLogger(__name__)

DEVMAIL_KEEP = 200
InboundHook = Callable[[bytes, str], Awaitable[object]]
"""Takes the raw message and its envelope recipient (a bounce address)."""
_PREVIEW_CHARS = 20_000


@dataclass
class CapturedMessage:
    """One message as the sink received it."""

    id: int
    received_at: float
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    message_id: str
    headers: dict[str, str]
    text: str
    html: str
    raw: bytes = field(default=b"", repr=False)  # as received (DKIM checks need it)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able fields (the raw bytes left out)."""
        fields = asdict(self)
        del fields["raw"]
        return fields


@dataclass
class FailureRules:
    """Failure injection for tests: transient 451 until a time, permanent 550 by address."""

    temp_fail_until: float = 0.0
    temp_fail_count: int = 0  # answer 451 to the next N recipients
    reject: set[str] = field(default_factory=set)
    reject_if: Callable[[str], bool] | None = None

    def verdict(self, address: str) -> str | None:
        lowered = address.lower()
        if lowered in self.reject or (self.reject_if is not None and self.reject_if(lowered)):
            return "550 5.1.1 Recipient address rejected: user unknown"
        if self.temp_fail_count > 0:
            self.temp_fail_count -= 1
            return "451 4.3.0 Temporary failure, try again later"
        if time.monotonic() < self.temp_fail_until:
            return "451 4.3.0 Temporary failure, try again later"
        return None


class SinkHandler:
    """aiosmtpd handler: applies the failure rules and records what is accepted."""

    def __init__(self, keep: int = 1000, redis: Any = None, redis_key: str | None = None,
                 *, bounce_domain: str | None = None,
                 inbound: InboundHook | None = None) -> None:
        self.rules = FailureRules()
        self.bounce_domain = bounce_domain.lower() if bounce_domain else None
        self.inbound = inbound
        self.inbound_handed = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self.message_ids: collections.Counter[str] = collections.Counter()
        self.recent: collections.deque[CapturedMessage] = collections.deque(maxlen=keep)
        self.accepted = 0
        self.refused_transient = 0
        self.refused_permanent = 0
        self._next_id = 0
        self._redis = redis
        self._redis_key = redis_key
        self._arrived = asyncio.Condition()
        # compat32 parsing is several times faster than the modern policy, and a sink
        # that counts tens of thousands of messages a minute must not be the bottleneck.
        self._parser = BytesParser(policy=compat32)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        """Offer PIPELINING (RFC 2920): aiosmtpd answers each command in order as it reads
        it, and refuses DATA without an accepted recipient, which is all the extension
        asks of a server."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.is_inbound(address):
            if self.inbound is None:
                return "451 4.3.0 Bounce processing is not ready yet, try again later"
            envelope.rcpt_tos.append(address)
            return "250 OK"
        verdict = self.rules.verdict(address)
        if verdict is not None:
            if verdict.startswith("4"):
                self.refused_transient += 1
            else:
                self.refused_permanent += 1
            return verdict
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        inbound = [str(r) for r in envelope.rcpt_tos if self.is_inbound(str(r))]
        if inbound:
            hook = self.inbound
            try:
                if hook is None:
                    raise RuntimeError("no inbound hook")
                for rcpt in inbound:
                    await hook(raw, rcpt)
            except Exception:  # the sender keeps the message and tries again
                log.warning("could not hand a bounce to the inbound job", exc_info=True)
                return "451 4.3.0 Bounce processing failed, try again later"
            self.inbound_handed += len(inbound)
            envelope.rcpt_tos = [r for r in envelope.rcpt_tos if not self.is_inbound(str(r))]
            if not envelope.rcpt_tos:
                return "250 Message accepted for bounce processing"
        message = self._parser.parsebytes(raw)
        self._next_id += 1
        text, html = _bodies(message)
        captured = CapturedMessage(
            id=self._next_id,
            received_at=time.time(),
            mail_from=str(envelope.mail_from or ""),
            rcpt_tos=[str(r).lower() for r in envelope.rcpt_tos],
            subject=_decoded(message.get("Subject", "")),
            message_id=str(message.get("Message-ID", "")),
            headers={k: _decoded(v) for k, v in message.items()},
            text=text[:_PREVIEW_CHARS],
            html=html[:_PREVIEW_CHARS],
            raw=raw,
        )
        for rcpt in captured.rcpt_tos:
            self.counts[rcpt] += 1
        if captured.message_id:
            self.message_ids[captured.message_id] += 1
        self.accepted += 1
        self.recent.append(captured)
        if self._redis is not None and self._redis_key:
            try:
                pipe = self._redis.pipeline(transaction=False)
                pipe.lpush(self._redis_key, json.dumps(captured.to_dict()))
                pipe.ltrim(self._redis_key, 0, DEVMAIL_KEEP - 1)
                await pipe.execute()
            except Exception:  # the mail is accepted either way; the preview is best effort
                log.warning("could not store captured mail preview in Redis", exc_info=True)
        async with self._arrived:
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def is_inbound(self, address: str) -> bool:
        """Whether ``address`` is on the bounce domain."""
        return (self.bounce_domain is not None
                and address.rpartition("@")[2].strip(">").lower() == self.bounce_domain)

    async def wait_for_total(self, total: int) -> None:
        """Wait until ``total`` recipients were accepted in all (wrap in a timeout)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: sum(self.counts.values()) >= total)

    def duplicates(self) -> int:
        """Messages received beyond the first per recipient."""
        return sum(n - 1 for n in self.counts.values() if n > 1)

    def missing(self, expected: Iterable[str]) -> list[str]:
        return [e for e in expected if self.counts.get(e.lower(), 0) == 0]


def _decoded(value: Any) -> str:
    """A header as text (RFC 2047 encoded words decoded)."""
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError):
        return str(value)


def _bodies(message: Any) -> tuple[str, str]:
    """The text and HTML parts of a (compat32) message."""
    text = html = ""
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        if kind not in ("text/plain", "text/html"):
            continue
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        try:
            decoded = payload.decode(charset, errors="replace")
        except LookupError:
            decoded = payload.decode("utf-8", errors="replace")
        if kind == "text/plain" and not text:
            text = decoded
        elif kind == "text/html" and not html:
            html = decoded
    return text, html


class SmtpSink:
    """A running sink on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, keep: int = 1000,
                 redis: Any = None, key_prefix: str | None = None,
                 tls_context: ssl.SSLContext | None = None,
                 credentials: tuple[str, str] | None = None,
                 bounce_domain: str | None = None,
                 inbound: InboundHook | None = None) -> None:
        """Args:
            tls_context: offer STARTTLS (and require it before AUTH and mail).
            credentials: require AUTH with this user name and password.
            bounce_domain, inbound: mail to the bounce domain goes to ``inbound``
                (settable later as ``handler.inbound``; until then such mail gets 451).
        """
        self.host = host
        self.port = port
        self.tls_context = tls_context
        self.credentials = credentials
        redis_key = devmail_key(key_prefix) if key_prefix else None
        self.handler = SinkHandler(keep=keep, redis=redis, redis_key=redis_key,
                                   bounce_domain=bounce_domain, inbound=inbound)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        handler = self.handler
        credentials = self.credentials

        def authenticate(server: SMTP, session: Session, envelope: Envelope,
                         mechanism: str, auth_data: Any) -> AuthResult:
            ok = (isinstance(auth_data, LoginPassword) and credentials is not None
                  and hmac.compare_digest(auth_data.login, credentials[0].encode())
                  and hmac.compare_digest(auth_data.password, credentials[1].encode()))
            return AuthResult(success=ok, handled=False)

        def factory() -> SMTP:
            return SMTP(handler, hostname="nlq-dev-sink", data_size_limit=10 * 1024 * 1024,
                        ident="newsletter-queue dev sink", enable_SMTPUTF8=True,
                        tls_context=self.tls_context,
                        require_starttls=self.tls_context is not None,
                        auth_required=credentials is not None,
                        auth_require_tls=self.tls_context is not None,
                        authenticator=authenticate if credentials is not None else None)

        self._server = await loop.create_server(factory, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("dev SMTP sink listening on %s", self.url)
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def __aenter__(self) -> SmtpSink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(host: str, port: int) -> dict[str, Any]:
    sink = await SmtpSink(host, port).start()
    print(json.dumps({"port": sink.port}), flush=True)  # noqa: T201 - the protocol line
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sink.stop()
    h = sink.handler
    return {"counts": dict(h.counts), "accepted": h.accepted,
            "message_ids": len(h.message_ids), "refused_transient": h.refused_transient,
            "refused_permanent": h.refused_permanent}


def main() -> None:
    parser = argparse.ArgumentParser(description="newsletter-queue dev SMTP sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--stats-file", help="write per-recipient counts here on exit")
    args = parser.parse_args()
    stats = asyncio.run(_serve(args.host, args.port))
    if args.stats_file:
        Path(args.stats_file).write_text(json.dumps(stats), encoding="utf-8")


if __name__ == "__main__":
    main()
