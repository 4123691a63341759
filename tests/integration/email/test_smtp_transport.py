"""The SMTP pool against real servers: STARTTLS + AUTH, SMTPS, reuse, wrong password."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from newsletter_queue.config import Settings
from newsletter_queue.engine.errors import RateLimited
from newsletter_queue.processors.email import EmailProcessor, TransientSendError
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.smtp import (
    SmtpAuthError,
    SmtpInsecureAuthError,
    SmtpPermanentError,
    SmtpPool,
    SmtpTransientError,
)
from tests.integration.email.conftest import Campaigns, Recorded, StandInJob
from tests.integration.test_connection import _make_tls_files

MESSAGE = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n"
           b"Message-ID: <x@example.com>\r\n\r\nhello\r\n")


@pytest.fixture
def server_tls(tmp_path: Path) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed: cannot make a test certificate")
    files = _make_tls_files(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files["server.crt"], files["server.key"])
    return context


async def test_starttls_and_auth_with_a_reused_session(server_tls: ssl.SSLContext) -> None:
    async with SmtpSink(tls_context=server_tls, credentials=("mailer", "s3cret")) as sink:
        pool = SmtpPool(f"smtp://mailer:s3cret@localhost:{sink.port}"
                        "?starttls=required&verify=false", size=2)
        try:
            for i in range(5):
                await pool.send("a@example.com", f"r{i}@example.com", MESSAGE)
        finally:
            await pool.close()
        assert sum(sink.handler.counts.values()) == 5
        assert pool.sessions_opened == 1  # one session, reused for every message


async def test_wrong_password_is_transient_and_masked(server_tls: ssl.SSLContext) -> None:
    # Transient: a wrong password is ours to fix; no recipient may be bounced for it.
    async with SmtpSink(tls_context=server_tls, credentials=("mailer", "s3cret")) as sink:
        pool = SmtpPool(f"smtp://mailer:wrong-pw@localhost:{sink.port}"
                        "?starttls=required&verify=false", size=1)
        try:
            with pytest.raises(SmtpAuthError) as info:
                await pool.send("a@example.com", "b@example.com", MESSAGE)
        finally:
            await pool.close()
        assert isinstance(info.value, SmtpTransientError)
        assert not isinstance(info.value, SmtpPermanentError)
        assert info.value.code == 535
        assert "authentication failed" in str(info.value)
        assert "wrong-pw" not in str(info.value)
        assert sink.handler.accepted == 0


async def test_a_wrong_password_bounces_nobody_in_a_campaign_batch(
        server_tls: ssl.SSLContext, settings: Settings, redis_client: aioredis.Redis) -> None:
    async with SmtpSink(tls_context=server_tls, credentials=("mailer", "s3cret")) as sink:
        pool = SmtpPool(f"smtp://mailer:wrong-pw@localhost:{sink.port}"
                        "?starttls=required&verify=false", size=1)
        recorded = Recorded()
        processor = EmailProcessor(settings, redis_client, pool, Campaigns(),
                                   deliveries=recorded)
        job = StandInJob("b1", {"campaignId": "c1", "tenantId": "t1",
                                "content": {"subject": "S", "text": "Hi"},
                                "recipients": [{"email": f"r{i}@example.com"}
                                               for i in range(3)]})
        try:
            with pytest.raises((TransientSendError, RateLimited)):
                await processor(job)
        finally:
            await processor.close()
            await pool.close()
        assert sink.handler.accepted == 0
        assert [d.status for d in recorded.rows if d.status == "bounced"] == []


async def test_unverified_certificate_is_refused_by_default(
    server_tls: ssl.SSLContext,
) -> None:
    async with SmtpSink(tls_context=server_tls) as sink:
        pool = SmtpPool(f"smtp://localhost:{sink.port}?starttls=required", size=1)
        try:
            with pytest.raises(SmtpTransientError, match="cannot connect"):
                await pool.send("a@example.com", "b@example.com", MESSAGE)
        finally:
            await pool.close()


async def test_connection_refused_is_transient() -> None:
    async with SmtpSink() as sink:
        port = sink.port
    pool = SmtpPool(f"smtp://127.0.0.1:{port}", size=1, timeout=2)
    with pytest.raises(SmtpTransientError):
        await pool.send("a@example.com", "b@example.com", MESSAGE)
    await pool.close()


def test_bad_smtp_urls() -> None:
    with pytest.raises(ValueError, match="smtp:// or smtps://"):
        SmtpPool("http://mailer:pw@host")
    with pytest.raises(ValueError, match="starttls"):
        SmtpPool("smtp://host?starttls=maybe")


@contextlib.asynccontextmanager
async def recording_proxy(port: int) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TCP proxy on loopback in front of ``port`` that keeps every byte the client
    sent, in the chunks it arrived in; yields its own port and that list."""
    chunks: list[bytes] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   keep: list[bytes] | None) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if keep is not None:
                    keep.append(data)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(client_r, server_w, chunks), pipe(server_r, client_w, None))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(proxy.sockets[0].getsockname()[1]), chunks
    finally:
        proxy.close()


def _secret_forms(user: str, password: str) -> list[bytes]:
    plain = base64.b64encode(f"\0{user}\0{password}".encode())
    return [password.encode(), base64.b64encode(password.encode()), plain]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_credentials_never_go_out_in_clear_text() -> None:
    """The attack: a server (or a network that strips STARTTLS) offering AUTH without
    TLS. Nothing of the password reaches the wire, and the error says why."""
    async with SmtpSink(credentials=("mailer", "s3cret-pw")) as sink, \
            recording_proxy(sink.port) as (port, chunks):
        pool = SmtpPool(f"smtp://mailer:s3cret-pw@127.0.0.1:{port}", size=1, timeout=10)
        try:
            with pytest.raises(SmtpInsecureAuthError, match="in clear text") as info:
                await pool.send("a@example.com", "b@example.com", MESSAGE)
        finally:
            await pool.close()
        assert isinstance(info.value, SmtpTransientError)  # a setup problem: no bounce
        assert "s3cret-pw" not in str(info.value)
        wire = b"".join(chunks)
        assert b"EHLO" in wire  # the session really happened …
        assert b"AUTH" not in wire  # … and stopped before AUTH
        assert not any(form in wire for form in _secret_forms("mailer", "s3cret-pw"))
        assert sink.handler.accepted == 0
    # starttls=off with a password is refused when the pool is made
    with pytest.raises(ValueError, match="clear text"):
        SmtpPool("smtp://mailer:pw@mail.example.com:587?starttls=off")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_plaintext_auth_only_to_a_loopback_relay_that_opts_in() -> None:
    async with SmtpSink(credentials=("mailer", "s3cret-pw")) as sink:
        pool = SmtpPool(f"smtp://mailer:s3cret-pw@127.0.0.1:{sink.port}"
                        "?plaintext_auth=loopback", size=1, timeout=10)
        try:
            await pool.send("a@example.com", "b@example.com", MESSAGE)
        finally:
            await pool.close()
        assert sink.handler.accepted == 1
    for url in ("smtp://mailer:pw@mail.example.com?plaintext_auth=loopback",
                "smtp://mailer:pw@10.0.0.5?plaintext_auth=loopback"):
        with pytest.raises(ValueError, match="not a loopback address"):
            SmtpPool(url)
    with pytest.raises(ValueError, match="only 'loopback'"):
        SmtpPool("smtp://mailer:pw@127.0.0.1?plaintext_auth=yes")
