"""Settings: URLs, prefixes and secrets that never show."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from newsletter_queue.config import mask_url
from newsletter_queue.errors import NewsletterQueueError
from tests.conftest import make_settings

SECRETS = {
    "REDIS_URL": "redis://app:r3dis-s3cret@redis.internal:6380/2",
    "SMTP_URL": "smtp://mailer:smtp-s3cret@smtp.internal:587",
    "DATABASE_URL": "postgresql+asyncpg://db:pg-s3cret@db.internal/nl",
    "AI_API_KEY": "sk-ai-s3cret",
    "NLQ_API_TOKEN": "api-s3cret-token",
}


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def _leaks(text: str) -> list[str]:
    return [s for s in ("r3dis-s3cret", "smtp-s3cret", "pg-s3cret", "sk-ai-s3cret",
                        "api-s3cret-token") if s in text]


@pytest.mark.usefixtures("secret_env")
def test_twelve_factor_names_are_read() -> None:
    settings = make_settings()
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == SECRETS["REDIS_URL"]
    assert settings.smtp_url is not None
    assert settings.ai_api_key is not None
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == SECRETS["NLQ_API_TOKEN"]


def test_log_level_and_event_loop_take_any_case_and_refuse_the_unknown(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLQ_LOG_LEVEL", " warning")
    monkeypatch.setenv("NLQ_EVENT_LOOP", "AsyncIO")
    settings = make_settings()
    assert (settings.log_level, settings.event_loop) == ("WARNING", "asyncio")
    monkeypatch.setenv("NLQ_LOG_LEVEL", "loud")
    with pytest.raises((ValidationError, NewsletterQueueError), match="log_level"):
        make_settings()


@pytest.mark.usefixtures("secret_env")
def test_no_secret_in_repr_str_json_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings()
    assert _leaks(repr(settings)) == []
    assert _leaks(str(settings)) == []
    assert _leaks(settings.model_dump_json()) == []
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s / %r", settings, settings)
    assert _leaks(caplog.text) == []
    assert settings.masked_redis_url == "redis://app:***@redis.internal:6380/2"


def test_mask_url_variants() -> None:
    assert mask_url("redis://:pw@host:1/0") == "redis://:***@host:1/0"
    assert mask_url("rediss://user:pw@host") == "rediss://user:***@host"
    assert mask_url("redis://host:6379") == "redis://host:6379"
    assert mask_url("unix:///tmp/redis.sock") == "unix:///tmp/redis.sock"
    assert mask_url("postgresql://u:p@h:notaport/db") == "postgresql://u:***@h:notaport/db"
    assert mask_url("redis://u:p@[::1]:6379") == "redis://u:***@[::1]:6379"


@pytest.mark.parametrize(("url", "secrets"), [
    ("redis://h:1/0?password=s3cret-q", ["s3cret-q"]),
    ("redis://h:1/0?db=2&username=alice-q&password=s3cret-q", ["alice-q", "s3cret-q"]),
    ("rediss://h:1/0?ssl_password=keypw-q&ssl_cert_reqs=required", ["keypw-q"]),
    ("redis://:pw-netloc@h:1/0?password=pw-query", ["pw-netloc", "pw-query"]),
    ("postgresql+asyncpg://h/db?user=bob-q&password=pgpw-q&sslpassword=ssl-q",
     ["bob-q", "pgpw-q", "ssl-q"]),
    ("unix:///tmp/redis.sock?password=sockpw-q", ["sockpw-q"]),
    ("redis://h:1/0?PassWord=upper-q&auth_token=tok-q", ["upper-q", "tok-q"]),
    ("redis://h:1/0?pass%77ord=encoded-q", ["encoded-q"]),
])
def test_mask_url_masks_credentials_in_the_query(url: str, secrets: list[str]) -> None:
    masked = mask_url(url)
    for secret in secrets:
        assert secret not in masked, masked
    assert "***" in masked
    # what is not a credential is kept, so the URL still says where it points
    assert masked.split("?")[0].rpartition("@")[2] == url.split("?")[0].rpartition("@")[2]
    assert mask_url("redis://h:1/0?db=2&socket_timeout=5") == "redis://h:1/0?db=2&socket_timeout=5"


def test_a_query_password_reaches_redis_py_and_is_never_shown() -> None:
    """redis-py really takes ``?password=`` (so it is a secret worth masking)."""
    import redis

    kwargs = redis.connection.parse_url("redis://h:1/0?password=s3cret-q")
    assert kwargs["password"] == "s3cret-q"
    settings = make_settings(redis_url="redis://h:1/0?password=s3cret-q")
    assert "s3cret-q" not in str(settings.masked_redis_url)


@pytest.mark.parametrize("url", ["redis://h:1/0", "rediss://h:1", "unix:///tmp/r.sock",
                                 "redis://user:pw@h:1"])
def test_supported_redis_schemes(url: str) -> None:
    settings = make_settings(redis_url=url)
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == url


def test_unsupported_scheme_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="unsupported scheme 'http'"):
        make_settings(redis_url="http://localhost:6379")


@pytest.mark.parametrize("prefix", ["nlq", "{nlq}", "tenant-a.jobs", "{t1}-q"])
def test_valid_prefixes(prefix: str) -> None:
    assert make_settings(key_prefix=prefix).key_prefix == prefix


@pytest.mark.parametrize("prefix", ["nl:q", "a b", "{nlq", "{a}{b}", ""])
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(ValidationError):
        make_settings(key_prefix=prefix)


def test_cluster_mode_needs_a_hash_tagged_prefix() -> None:
    with pytest.raises(ValidationError, match="hash tag"):
        make_settings(redis_cluster=True, key_prefix="nlq")
    assert make_settings(redis_cluster=True, key_prefix="{nlq}").redis_cluster


def test_tls_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    settings = make_settings(redis_url="rediss://h:6380", redis_tls={"ca_file": ca,
                                                                    "check_hostname": False})
    assert settings.redis_tls.ca_file == ca
    assert settings.redis_tls.check_hostname is False


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("REDIS_URL=redis://127.0.0.1:6390/3\nNLQ_KEY_PREFIX=fromdotenv\n")
    monkeypatch.chdir(tmp_path)
    from newsletter_queue.config import Settings

    settings = Settings()
    assert settings.key_prefix == "fromdotenv"
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://127.0.0.1:6390/3"
