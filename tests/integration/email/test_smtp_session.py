"""Our SMTP session against real servers on loopback: the dev sink (aiosmtpd, offering
PIPELINING), a plain aiosmtpd server without it, and Postfix's ``smtp-sink`` when
installed. What goes over the wire is read at a recording proxy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.smtp import SmtpPermanentError, SmtpPool, SmtpTransientError
from tests.integration.email.test_smtp_transport import MESSAGE, recording_proxy
from tests.support.helpers import wait_for


async def test_mail_rcpt_and_data_go_in_one_write_to_a_pipelining_server() -> None:
    async with SmtpSink() as sink, recording_proxy(sink.port) as (port, chunks):
        pool = SmtpPool(f"smtp://127.0.0.1:{port}", size=1, timeout=10)
        try:
            replies = [await pool.send("a@example.com", f"r{i}@example.com", MESSAGE)
                       for i in range(3)]
        finally:
            await pool.close()
    assert replies == ["Message accepted for delivery"] * 3
    assert sink.handler.accepted == 3
    envelopes = [c for c in chunks if c.startswith(b"MAIL FROM:")]
    assert envelopes == [f"MAIL FROM:<a@example.com>\r\nRCPT TO:<r{i}@example.com>\r\n"
                         f"DATA\r\n".encode() for i in range(3)]
    assert pool.sessions_opened == 1


async def test_refused_recipients_leave_the_session_usable() -> None:
    async with SmtpSink() as sink:
        sink.handler.rules.reject.add("gone@example.com")
        pool = SmtpPool(sink.url, size=1, timeout=10)
        try:
            with pytest.raises(SmtpPermanentError) as permanent:
                await pool.send("a@example.com", "gone@example.com", MESSAGE)
            assert permanent.value.code == 550
            sink.handler.rules.temp_fail_count = 1
            with pytest.raises(SmtpTransientError) as transient:
                await pool.send("a@example.com", "later@example.com", MESSAGE)
            assert transient.value.code == 451
            await pool.send("a@example.com", "here@example.com", MESSAGE)
        finally:
            await pool.close()
        assert dict(sink.handler.counts) == {"here@example.com": 1}
        assert pool.sessions_opened == 1  # RSET after each refusal, then on


async def test_dot_lines_and_bare_line_ends_arrive_as_written() -> None:
    body = (b"From: a@example.com\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\n"
            b"bare\nlf and bare\rcr\r\n.\r\nend")
    async with SmtpSink() as sink:
        pool = SmtpPool(sink.url, size=1, timeout=10)
        try:
            await pool.send("a@example.com", "b@example.com", body)
        finally:
            await pool.close()
        raw = sink.handler.recent[-1].raw
    assert raw == (b"From: a@example.com\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\n"
                   b"bare\r\nlf and bare\r\ncr\r\n.\r\nend\r\n")


async def test_an_injected_address_sends_nothing() -> None:
    async with SmtpSink() as sink, recording_proxy(sink.port) as (port, chunks):
        pool = SmtpPool(f"smtp://127.0.0.1:{port}", size=1, timeout=10)
        try:
            for evil in ("a@example.com>\r\nRCPT TO:<evil@example.com",
                         "a@example.com\0", "a@example.com>"):
                with pytest.raises(SmtpPermanentError, match="unsendable address"):
                    await pool.send("a@example.com", evil, MESSAGE)
            await pool.send("a@example.com", "fine@example.com", MESSAGE)
        finally:
            await pool.close()
    wire = b"".join(chunks)
    assert b"evil" not in wire
    assert wire.count(b"RCPT TO:") == 1
    assert dict(sink.handler.counts) == {"fine@example.com": 1}


async def test_utf8_addresses_need_smtputf8() -> None:
    async with SmtpSink() as sink:  # offers SMTPUTF8
        pool = SmtpPool(sink.url, size=1, timeout=10)
        try:
            await pool.send("a@example.com", "jürgen@example.com", MESSAGE)
        finally:
            await pool.close()
        assert sink.handler.counts["jürgen@example.com"] == 1
    async with plain_aiosmtpd() as (port, received):  # does not
        pool = SmtpPool(f"smtp://127.0.0.1:{port}", size=1, timeout=10)
        try:
            with pytest.raises(SmtpPermanentError, match="SMTPUTF8"):
                await pool.send("a@example.com", "jürgen@example.com", MESSAGE)
        finally:
            await pool.close()
        assert received == []


class Recorder:
    """A plain aiosmtpd handler: keeps (recipients, content) of each message."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.received.append((list(envelope.rcpt_tos), bytes(content)))
        return "250 OK kept"


@contextlib.asynccontextmanager
async def plain_aiosmtpd() -> AsyncIterator[tuple[int, list[tuple[list[str], bytes]]]]:
    """aiosmtpd as it comes: no PIPELINING, no SMTPUTF8."""
    recorder = Recorder()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(recorder, hostname="plain"), "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1]), recorder.received
    finally:
        server.close()


async def test_a_server_without_pipelining_gets_one_command_at_a_time() -> None:
    async with plain_aiosmtpd() as (server_port, received), \
            recording_proxy(server_port) as (port, chunks):
        pool = SmtpPool(f"smtp://127.0.0.1:{port}", size=1, timeout=10)
        try:
            reply = await pool.send("a@example.com", "b@example.com", MESSAGE)
        finally:
            await pool.close()
    assert reply == "OK kept"
    assert [rcpts for rcpts, _ in received] == [["b@example.com"]]
    commands = [c for c in chunks if c[:4] in (b"MAIL", b"RCPT", b"DATA")]
    assert commands == [b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n",
                        b"DATA\r\n"]


class ClosingServer(SMTP):
    """aiosmtpd with a short idle timeout, saying ``421`` first when ``say_421`` (as
    Postfix does) and setting ``closed`` when it has hung up."""

    def __init__(self, *args: Any, say_421: bool, closed: asyncio.Event,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.say_421 = say_421
        self.closed = closed

    def _timeout_cb(self) -> None:
        if self.say_421 and self.transport is not None:
            self.transport.write(b"421 4.4.2 nlq-test Error: timeout exceeded\r\n")
        super()._timeout_cb()

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.closed.set()


@pytest.mark.parametrize("say_421", [False, True], ids=["silent", "421-first"])
async def test_a_session_the_server_closed_while_idle_is_replaced(say_421: bool) -> None:
    recorder = Recorder()
    closed = asyncio.Event()
    server = await asyncio.get_running_loop().create_server(
        lambda: ClosingServer(recorder, hostname="idle", timeout=0.5, say_421=say_421,
                              closed=closed), "127.0.0.1", 0)
    pool = SmtpPool(f"smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}", size=1,
                    timeout=10)
    try:
        await pool.send("a@example.com", "first@example.com", MESSAGE)
        await asyncio.wait_for(closed.wait(), 30)  # the server hung up on the idle session
        reply = await pool.send("a@example.com", "second@example.com", MESSAGE)
    finally:
        await pool.close()
        server.close()
    assert reply == "OK kept"
    assert [rcpts for rcpts, _ in recorder.received] == [["first@example.com"],
                                                         ["second@example.com"]]
    assert pool.sessions_opened == 2


# --- Postfix's smtp-sink: another server's PIPELINING ------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postfix_sink() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    binary = shutil.which("smtp-sink") or shutil.which("smtp-sink", path="/usr/sbin")
    if binary is None:
        pytest.skip("Postfix's smtp-sink is not installed (Debian package postfix)")
    port = _free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([binary, "-c", *user, f"127.0.0.1:{port}", "64"],
                            stdout=subprocess.PIPE)
    yield port, proc
    if proc.poll() is None:
        proc.terminate()
    proc.wait(10)


async def test_postfix_smtp_sink_takes_pipelined_mail(
        postfix_sink: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, proc = postfix_sink

    async def listening() -> bool:
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return True
        return False

    await wait_for(listening, timeout=10, message="smtp-sink listening")
    pool = SmtpPool(f"smtp://127.0.0.1:{port}", size=4, timeout=10)
    try:
        await asyncio.gather(*(pool.send("a@example.com", f"r{i}@example.com", MESSAGE)
                               for i in range(40)))
    finally:
        await pool.close()  # QUIT: smtp-sink has counted every message by then
    assert pool.sessions_opened <= 4
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    counted = re.findall(rb"mesg=(\d+)", out)
    assert counted
    assert int(counted[-1]) == 40
