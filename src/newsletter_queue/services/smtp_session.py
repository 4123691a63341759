"""One SMTP client session, made for sending many single-recipient messages fast.

Written here rather than taken from a library: the maintained asyncio client,
aiosmtplib, waits for each reply before the next command and cannot pipeline (its
protocol object parses one reply per command written). A campaign message is MAIL FROM,
RCPT TO, DATA and the body: four round trips there. With PIPELINING (RFC 2920), which
Postfix, Exim, Gmail, Amazon SES and most relays advertise, MAIL FROM, RCPT TO and DATA
go in one write and the body in a second: two round trips, and a few small reads and
writes of Python per message. ``python bench/email.py`` measures both clients side by
side (``ceiling`` and ``ceiling_aiosmtplib``).

Only what a bulk sender needs is here: EHLO, STARTTLS (RFC 3207), AUTH PLAIN and LOGIN
(RFC 4954), one recipient per message, SMTPUTF8 (RFC 6531) when an address needs it,
RSET, QUIT. A server without PIPELINING gets the same commands one reply at a time.
When to use TLS and whether credentials may be sent is decided by the caller
(``services.smtp.SmtpPool``): this module only does what it is told and reports
``encrypted``.

Errors: a reply to a command is ``SmtpReplyError`` (its code decides permanent or
transient); anything that leaves the session in an unknown state (timeout, lost
connection, a malformed reply) is ``SmtpSessionError`` and the session is closed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import re
import socket
import ssl
from dataclasses import dataclass

_MAX_REPLY_LINE = 4096  # RFC 5321 4.5.3.1.5 allows 512; be generous, stay bounded
_MAX_REPLY_LINES = 100
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_DOT_LINES = re.compile(rb"^\.", re.MULTILINE)
_UNSAFE = re.compile(r"[\r\n\0<>]")


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str


class SmtpReplyError(Exception):
    """The server answered a command with a failure (4xx or 5xx)."""

    def __init__(self, command: str, reply: Reply) -> None:
        self.command = command
        self.reply = reply
        super().__init__(f"{reply.code} {reply.text}")


class SmtpSessionError(Exception):
    """The session cannot go on: timeout, lost connection, malformed reply, TLS failure.

    ``before_data``: it broke before any of the message was written, so nothing can have
    been delivered (a send may be tried again at once on another session).
    """

    def __init__(self, message: str, *, before_data: bool = False) -> None:
        super().__init__(message)
        self.before_data = before_data


class SmtpSession:
    """A connected SMTP session (make it with ``connect``; close it with ``quit``/``close``).

    One message at a time: callers (the pool) hand a session to one send at once.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float, local_hostname: str) -> None:
        self._reader = reader
        self._writer = writer
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.extensions: dict[str, str] = {}
        self.encrypted = writer.get_extra_info("ssl_object") is not None
        self.closed = False

    # --- setting up --------------------------------------------------------------------
    @classmethod
    async def connect(cls, host: str, port: int, *, command_timeout_s: float,
                      implicit_tls: bool = False, starttls: str = "auto",
                      tls_context: ssl.SSLContext | None = None,
                      local_hostname: str | None = None) -> SmtpSession:
        """Connect, read the greeting, EHLO and, as ``starttls`` says (``auto``: when
        offered; ``required``; ``off``), STARTTLS and EHLO again. ``command_timeout_s``
        bounds the connection, the handshake and the wait for each reply.

        Raises:
            SmtpReplyError: the greeting, EHLO or STARTTLS was refused.
            SmtpSessionError: no connection, a TLS failure, a timeout, STARTTLS required
                but not offered.
        """
        timeout = command_timeout_s
        context = tls_context if (implicit_tls or starttls != "off") else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context if implicit_tls else None,
                    server_hostname=host if implicit_tls else None, limit=_MAX_REPLY_LINE)
        except (OSError, TimeoutError) as exc:
            raise SmtpSessionError(f"{type(exc).__name__}: {exc}") from None
        session = cls(reader, writer, timeout, local_hostname or _local_name())
        try:
            await session._expect("greeting", await session._read_reply(), 220)
            await session._ehlo()
            offered = "starttls" in session.extensions
            if not session.encrypted and context is not None and (
                    starttls == "required" or (starttls == "auto" and offered)):
                if not offered:
                    raise SmtpSessionError("the server does not offer STARTTLS, and "
                                           "starttls=required")
                await session._command("STARTTLS", 220)
                try:
                    async with asyncio.timeout(timeout):
                        await writer.start_tls(context, server_hostname=host)
                except (OSError, TimeoutError) as exc:
                    raise SmtpSessionError(f"TLS failed: {type(exc).__name__}: {exc}"
                                           ) from None
                session.encrypted = True
                await session._ehlo()
        except BaseException:
            session.close()
            raise
        return session

    async def _ehlo(self) -> None:
        reply = await self._command(f"EHLO {self.local_hostname}", 250)
        extensions: dict[str, str] = {}
        for line in reply.text.split("\n")[1:]:
            keyword, _, params = line.strip().partition(" ")
            if keyword:
                extensions[keyword.lower()] = params
        self.extensions = extensions

    async def login(self, username: str, password: str) -> None:
        """AUTH PLAIN (or LOGIN when that is all the server offers).

        Raises:
            SmtpReplyError: the credentials were refused (the reply says why).
        """
        methods = self.extensions.get("auth", "").upper().split()
        if "PLAIN" in methods or "LOGIN" not in methods:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            await self._command(f"AUTH PLAIN {token}", 235, echo="AUTH PLAIN")
            return
        await self._command("AUTH LOGIN", 334)
        await self._command(base64.b64encode(username.encode()).decode(), 334,
                            echo="AUTH LOGIN")
        await self._command(base64.b64encode(password.encode()).decode(), 235,
                            echo="AUTH LOGIN")

    # --- sending -------------------------------------------------------------------------
    @property
    def pipelining(self) -> bool:
        return "pipelining" in self.extensions

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Send ``message`` to one recipient; returns the server's acceptance reply.

        Raises:
            ValueError: an address with a line break, NUL or angle bracket, or one that
                needs SMTPUTF8 from a server without it (nothing was sent).
            SmtpReplyError: MAIL, RCPT, DATA or the message was refused; the session is
                usable again (an envelope refusal is followed by RSET).
            SmtpSessionError: the session broke; it is closed (``before_data``: before any
                of the message was written).
        """
        for address in (sender, recipient):
            if _UNSAFE.search(address):
                raise ValueError(f"address {address!r} contains a line break, NUL or "
                                 "angle bracket")
        utf8 = not (sender.isascii() and recipient.isascii())
        if utf8 and "smtputf8" not in self.extensions:
            raise ValueError("the address is not ASCII and the server does not offer "
                             "SMTPUTF8 (RFC 6531)")
        mail = f"MAIL FROM:<{sender}>{' SMTPUTF8' if utf8 else ''}"
        rcpt = f"RCPT TO:<{recipient}>"
        writing = False
        try:
            if self.pipelining:
                replies = await self._pipelined((mail, rcpt, "DATA"))
            else:
                replies = []
                for command in (mail, rcpt, "DATA"):
                    replies.append(reply := await self._exchange(command))
                    if reply.code >= 400:
                        break
            await self._check_envelope((mail, rcpt, "DATA"), replies)
            writing = True
            reply = await self._exchange_data(message)
        except SmtpReplyError:
            raise
        except (TimeoutError, SmtpSessionError) as exc:
            self.close()
            raise SmtpSessionError(str(exc) or "timed out waiting for the server",
                                   before_data=not writing) from None
        except BaseException:
            self.close()
            raise
        if reply.code != 250:
            raise SmtpReplyError("end of data", reply)
        return reply.text

    async def _check_envelope(self, commands: tuple[str, ...], replies: list[Reply]) -> None:
        """Raise for the first refused command (after putting the session back in order:
        RSET, or a lone "." if the server took DATA after all — RFC 2920 3.1)."""
        failed = next(((c, r) for c, r in zip(commands, replies, strict=False)
                       if r.code >= 400), None)
        if failed is None:
            if replies[-1].code != 354:
                raise SmtpReplyError("DATA", replies[-1])
            return
        if replies[-1].code == 354:  # DATA accepted with a refused envelope: send nothing
            await self._exchange_raw(b".\r\n")
        await self._exchange("RSET")
        raise SmtpReplyError(failed[0].split(":", 1)[0], failed[1])

    async def _exchange_data(self, message: bytes) -> Reply:
        return await self._exchange_raw(_data(message))

    # --- the wire ------------------------------------------------------------------------
    async def _pipelined(self, commands: tuple[str, ...]) -> list[Reply]:
        self._write("".join(f"{c}\r\n" for c in commands).encode())
        async with asyncio.timeout(self.timeout):
            await self._drain()
            return [await self._read_reply_now() for _ in commands]

    async def _exchange(self, command: str) -> Reply:
        return await self._exchange_raw(f"{command}\r\n".encode())

    async def _exchange_raw(self, data: bytes) -> Reply:
        self._write(data)
        async with asyncio.timeout(self.timeout):
            await self._drain()
            return await self._read_reply_now()

    async def _command(self, command: str, expected: int, *, echo: str | None = None
                       ) -> Reply:
        """One command whose success code is ``expected``; ``echo`` names it in errors
        (so that credentials never appear in one)."""
        try:
            reply = await self._exchange(command)
        except TimeoutError:
            raise SmtpSessionError(f"timed out waiting for the reply to "
                                   f"{echo or command.split(' ', 1)[0]}") from None
        return await self._expect(echo or command.split(" ", 1)[0], reply, expected)

    async def _expect(self, what: str, reply: Reply, expected: int) -> Reply:
        if reply.code != expected:
            raise SmtpReplyError(what, reply)
        return reply

    async def _read_reply(self) -> Reply:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._read_reply_now()
        except TimeoutError:
            raise SmtpSessionError("timed out waiting for the server") from None

    async def _read_reply_now(self) -> Reply:
        lines: list[str] = []
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                raise SmtpSessionError("the server closed the connection") from None
            except asyncio.LimitOverrunError:
                raise SmtpSessionError("reply line too long") from None
            except OSError as exc:
                raise SmtpSessionError(f"connection lost: {exc}") from None
            code = line[:3]
            if len(line) < 4 or not code.isdigit() or line[3:4] not in (b" ", b"-", b"\r",
                                                                          b"\n"):
                raise SmtpSessionError(f"malformed reply line {line[:80]!r}")
            lines.append(line[4:].strip().decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return Reply(int(code), "\n".join(lines))
            if len(lines) >= _MAX_REPLY_LINES:
                raise SmtpSessionError("reply with too many lines")

    def _write(self, data: bytes) -> None:
        if self.closed or self._writer.is_closing():
            raise SmtpSessionError("the connection is closed")
        try:
            self._writer.write(data)
        except OSError as exc:
            raise SmtpSessionError(f"connection lost: {exc}") from None

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except OSError as exc:  # ConnectionResetError and the like
            raise SmtpSessionError(f"connection lost: {exc}") from None

    # --- ending --------------------------------------------------------------------------
    async def quit(self) -> None:
        """QUIT politely (errors ignored), then close."""
        with contextlib.suppress(Exception):
            if not self.closed:
                await self._exchange("QUIT")
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._writer.close()

    @property
    def usable(self) -> bool:
        """Open on both sides as far as this end knows (a server that closed an idle
        session has left an end of file to read)."""
        return not (self.closed or self._writer.is_closing() or self._reader.at_eof())


def _data(message: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, dot-stuffed, ending in CRLF . CRLF.
    (The rendered messages have CRLF throughout and rarely a line starting with a dot:
    counting is cheaper than rewriting.)"""
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = _LINE_ENDS.sub(b"\r\n", message)
    if message.startswith(b".") or b"\n." in message:
        message = _DOT_LINES.sub(b"..", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


@functools.cache
def _local_name() -> str:
    """This host's name for EHLO, looked up once per process."""
    name = socket.getfqdn()
    return name if name.isascii() and "." in name and " " not in name else "localhost"
