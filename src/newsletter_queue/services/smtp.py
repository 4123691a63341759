"""A bounded pool of SMTP sessions (``smtp_session``), reused across messages and jobs.

Opening an SMTP session (TCP, greeting, EHLO, STARTTLS, AUTH) costs several round trips;
a campaign of 100,000 recipients must not pay that per message. The pool keeps at most
``size`` sessions per worker process, hands one to each send, and drops a session after
any connection-level error so the next send reconnects. A kept session that the server
closed meanwhile (its idle timeout) is replaced without failing the send: nothing of the
message had been written.

Errors are sorted the way the email processor needs them:

- ``SmtpPermanentError`` — a 5xx answer: the recipient is bounced, never retried;
- ``SmtpTransientError`` — a 4xx answer, a timeout or a lost connection: try later;
  also our own credentials refused (``SmtpAuthError``) or not sent without TLS
  (``SmtpInsecureAuthError``): a sender's problem never bounces a recipient.

``SMTP_URL`` forms: ``smtp://[user:password@]host[:port][?starttls=auto|required|off]``
and ``smtps://…`` (implicit TLS, port 465 by default); ``?verify=false`` skips
certificate checks (development only).

Credentials only ever travel over TLS. A URL with a password and ``starttls=off`` is
refused when the pool is made; with ``starttls=auto``, a server that offers no STARTTLS
(or a network that strips it from the EHLO reply) gets no AUTH: the send fails with
``SmtpInsecureAuthError`` before a byte of the password is written. The one opt-in,
``?plaintext_auth=loopback``, allows plaintext AUTH to a relay on this machine
(``127.0.0.1``, ``::1``, ``localhost``) and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from ..config import mask_url
from ..errors import DeliveryError
from .smtp_session import SmtpReplyError, SmtpSession, SmtpSessionError

log = logging.getLogger(__name__)


class SmtpError(DeliveryError):
    """A message was not accepted. ``code`` is the SMTP reply code (0 if none)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code} {message}" if code else message)


class SmtpTransientError(SmtpError):
    """4xx, timeout or connection failure: the message may be sent later."""


class SmtpPermanentError(SmtpError):
    """5xx: the server refuses this message or recipient for good."""


class SmtpInsecureAuthError(SmtpTransientError):
    """Credentials are configured but the session is not encrypted: AUTH was not sent.

    A configuration problem, not the recipient's: transient (nobody is bounced), and
    every send fails the same way until ``SMTP_URL`` is fixed.
    """


class SmtpAuthError(SmtpTransientError):
    """The server refused our credentials (535 and the like).

    Also the sender's problem, not the recipient's: transient, so nobody is recorded
    bounced (or, later, suppressed) because ``SMTP_URL`` holds a wrong password; the
    batch retries and the circuit breaker opens until it is fixed.
    """


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: str  # auto | required | off
    verify: bool
    plaintext_auth: bool = False  # ?plaintext_auth=loopback: AUTH without TLS, loopback only

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"SMTP_URL must start with smtp:// or smtps:// "
                             f"(got {mask_url(url)})")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        starttls = query.get("starttls", "auto")
        if starttls not in ("auto", "required", "off"):
            raise ValueError("starttls must be auto, required or off")
        implicit = parts.scheme == "smtps"
        host = parts.hostname or "localhost"
        plaintext = query.get("plaintext_auth")
        if plaintext not in (None, "loopback"):
            raise ValueError("plaintext_auth accepts only 'loopback'")
        if plaintext and host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"plaintext_auth=loopback is for a relay on this machine; "
                             f"{host!r} is not a loopback address")
        target = cls(
            host=host,
            port=parts.port or (465 if implicit else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit,
            starttls="off" if implicit else starttls,
            verify=query.get("verify", "true").lower() not in ("false", "0", "no"),
            plaintext_auth=plaintext is not None,
        )
        if (target.username is not None and not implicit and starttls == "off"
                and not target.plaintext_auth):
            raise ValueError(
                f"SMTP credentials would be sent in clear text to {mask_url(url)}: use "
                "smtps:// or STARTTLS (starttls=auto or required), or "
                "?plaintext_auth=loopback for a relay on this machine")
        return target


class SmtpPool:
    """At most ``size`` SMTP sessions to one server.

    Args:
        url: the SMTP URL (may carry credentials; it is never logged unmasked).
        size: maximum concurrent sessions.
        timeout: seconds for connecting and for each SMTP command.
    """

    def __init__(self, url: str, size: int = 4, timeout: float = 30.0,
                 local_hostname: str | None = None) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.target = SmtpTarget.parse(url)
        self.masked_url = mask_url(url)
        self.size = size
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._idle: list[SmtpSession] = []
        self._tls: ssl.SSLContext | None = None
        self._slots = asyncio.Semaphore(size)
        self._closed = False
        self.sessions_opened = 0

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:  # loading the CA store costs ~40 ms: once per pool
            context = ssl.create_default_context()
            if not self.target.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls = context
        return self._tls

    async def _open(self) -> SmtpSession:
        t = self.target
        try:
            session = await SmtpSession.connect(
                t.host, t.port, command_timeout_s=self.timeout, implicit_tls=t.implicit_tls,
                starttls=t.starttls,
                tls_context=self._tls_context() if (t.implicit_tls or t.starttls != "off")
                else None,
                local_hostname=self.local_hostname)
        except (SmtpReplyError, SmtpSessionError) as exc:
            code = exc.reply.code if isinstance(exc, SmtpReplyError) else 0
            raise SmtpTransientError(code, f"cannot connect to {self.masked_url}: {exc}"
                                     ) from None
        if t.username is not None:
            if not session.encrypted and not t.plaintext_auth:
                session.close()
                raise SmtpInsecureAuthError(0, (
                    f"refusing to send SMTP credentials in clear text to "
                    f"{self.masked_url}: the server offered no STARTTLS. Use smtps://, "
                    "a server with STARTTLS, or ?plaintext_auth=loopback for a relay "
                    "on this machine"))
            try:
                await session.login(t.username, t.password or "")
            except SmtpReplyError as exc:
                session.close()
                raise SmtpAuthError(exc.reply.code, f"authentication failed at "
                                    f"{self.masked_url}: {exc.reply.text}") from None
            except SmtpSessionError as exc:
                session.close()
                raise SmtpTransientError(0, f"cannot connect to {self.masked_url}: {exc}"
                                         ) from None
        self.sessions_opened += 1
        return session

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Send one message to one recipient. Returns the server's acceptance reply.

        Raises:
            SmtpPermanentError: 5xx for this recipient or message.
            SmtpTransientError: 4xx, timeout or connection failure.
        """
        if self._closed:
            raise SmtpTransientError(0, "SMTP pool is closed")
        async with self._slots:
            session = self._take_idle()
            fresh = session is None
            if session is None:
                session = await self._open()
            try:
                try:
                    return await session.send(sender, recipient, message)
                except SmtpSessionError as exc:
                    if fresh or not exc.before_data:
                        raise
                    # A kept session the server had closed (an idle timeout; some say
                    # 421 first): nothing was sent, so once more on a new session.
                    log.debug("SMTP session to %s closed by the server; reconnecting",
                              self.masked_url)
                    session = await self._open()
                    return await session.send(sender, recipient, message)
            except ValueError as exc:  # an address this session cannot send to safely
                raise SmtpPermanentError(0, f"unsendable address: {exc}") from None
            except SmtpReplyError as exc:
                raise _classify(exc.reply.code, exc.reply.text) from None
            except SmtpSessionError as exc:
                raise SmtpTransientError(0, f"connection to {self.masked_url} failed: "
                                         f"{exc}") from None
            finally:
                # A refusal leaves the session clean (RSET); a broken one is closed.
                if session.usable and not self._closed:
                    self._idle.append(session)
                else:
                    session.close()

    def _take_idle(self) -> SmtpSession | None:
        """A kept session that still looks open (the others are closed and dropped)."""
        while self._idle:
            session = self._idle.pop()
            if session.usable:
                return session
            session.close()
        return None

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for session in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.quit(), 2)
            session.close()


def _classify(code: int, text: str) -> SmtpError:
    if 500 <= code < 600:
        return SmtpPermanentError(code, text)
    return SmtpTransientError(code, text)
