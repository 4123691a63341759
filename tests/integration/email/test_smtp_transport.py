"""The SMTP pool against real servers: STARTTLS + AUTH, SMTPS, reuse, wrong password."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest

from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.services.smtp import SmtpPermanentError, SmtpPool, SmtpTransientError
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


async def test_wrong_password_is_permanent_and_masked(server_tls: ssl.SSLContext) -> None:
    async with SmtpSink(tls_context=server_tls, credentials=("mailer", "s3cret")) as sink:
        pool = SmtpPool(f"smtp://mailer:wrong-pw@localhost:{sink.port}"
                        "?starttls=required&verify=false", size=1)
        try:
            with pytest.raises(SmtpPermanentError) as info:
                await pool.send("a@example.com", "b@example.com", MESSAGE)
        finally:
            await pool.close()
        assert "authentication failed" in str(info.value)
        assert "wrong-pw" not in str(info.value)
        assert sink.handler.accepted == 0


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
