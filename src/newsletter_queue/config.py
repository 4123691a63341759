"""Settings, read from the environment and a ``.env`` file (pydantic-settings).

The usual twelve-factor names work as they are (``REDIS_URL``, ``SMTP_URL``,
``DATABASE_URL``, ``AI_BASE_URL``, ``AI_API_KEY``, ``AI_MODEL``); everything else is
``NLQ_``-prefixed. Nested per-queue overrides use ``__``, for example
``NLQ_QUEUES__EMAIL__CONCURRENCY=10`` or
``NLQ_QUEUES__AI__RATE_LIMIT='{"max": 3, "duration_ms": 1000}'``.

Every secret is a ``SecretStr`` and URLs that may carry a password are rendered through
``mask_url`` whenever they are shown, so no repr, log line or API response contains one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import platformdirs
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from .errors import ConfigurationError
from .monitor_report import MonitorThresholds
from .queues import DEFAULT_KEY_PREFIX, QUEUE_DEFAULTS, QueueConfig

APP_NAME = "newsletter-queue"
DEFAULT_PROBE_URL = "redis://127.0.0.1:6379"

# The shortest NLQ_API_TOKEN accepted for an API bound beyond loopback.
MIN_PUBLIC_TOKEN_CHARS = 16
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.{}-]+$")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_DOMAIN_RE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
                        r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# The bounce domain of `newsletter-queue up` with its dev sink, when none is set: the sink
# hands what is sent to it to the inbound job (a .localhost name never leaves the machine).
DEV_BOUNCE_DOMAIN = "bounces.localhost"


# Query parameters that can carry a credential. redis-py turns *every* query parameter
# of a URL into a connection argument (``?password=…``, ``?username=…``,
# ``?ssl_password=…``), as do asyncpg's DSNs (``?password=…``, ``?sslpassword=…``); a
# parameter whose name contains one of these words is masked, whatever the scheme.
_SECRET_PARAM_WORDS = ("pass", "pwd", "user", "secret", "token", "key", "auth", "cred")


def _secret_param(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_PARAM_WORDS)


def mask_url(url: str) -> str:
    """Return ``url`` with every credential in it replaced by ``***``.

    That is the password of ``user:password@`` and the value of every query parameter
    that can carry one (``password``, ``username``, ``user``, ``ssl_password``, ``token``
    …). A URL that cannot be parsed is not shown at all.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if password is not None:
        user = parts.username or ""
        # Everything after the last '@' is host[:port], kept verbatim (even a bad port).
        netloc = f"{user}:***@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pieces = []
        for piece in query.split("&"):
            name, eq, _value = piece.partition("=")
            secret = _secret_param(unquote_plus(name))
            pieces.append(f"{name}=***" if secret and eq else piece)
        query = "&".join(pieces)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    if "://" not in url:
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    # By hand: urlunsplit drops the empty authority of ``unix:///path``.
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def default_state_dir() -> Path:
    """Where the embedded Redis data and the SQLite file live by default."""
    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


class RedisTLS(BaseModel):
    """TLS options for ``rediss://`` URLs (paths to PEM files)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True
    check_hostname: bool = True


class JobLimits(BaseModel):
    """Caps applied to every job payload at enqueue time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_payload_bytes: PositiveInt = 512 * 1024
    max_recipients_per_job: PositiveInt = 1000


# DKIM (services/dkim.py): the header fields signed by default. RFC 8058 (one-click
# unsubscribe) requires List-Unsubscribe and List-Unsubscribe-Post in h=; a field named
# here that a message lacks is signed as absent, so it cannot be added in transit.
DKIM_DEFAULT_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
                        "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post",
                        "Reply-To")
DKIM_REQUIRED_HEADERS = ("from", "list-unsubscribe", "list-unsubscribe-post")
# Never signed (RFC 6376 5.4: added or changed in transit).
_DKIM_UNSIGNABLE = ("return-path", "received", "comments", "keywords", "bcc", "resent-bcc",
                    "dkim-signature")
_DNS_NAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")


def _dns_name(value: str) -> str:
    if not _DNS_NAME.match(value) or len(value) > 253:
        raise ValueError("must be a DNS name in ASCII (letters, digits, '-', '.'; an "
                         "international domain as its xn-- form)")
    return value.lower()


class DkimKey(BaseModel):
    """One DKIM signing identity: ``d=`` domain, ``s=`` selector and the private key
    (PEM text, or a file holding it — exactly one of the two)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    domain: Annotated[str, AfterValidator(_dns_name)]
    selector: Annotated[str, AfterValidator(_dns_name)]
    private_key: SecretStr | None = None
    private_key_file: Path | None = None

    @model_validator(mode="after")
    def _one_key(self) -> DkimKey:
        if (self.private_key is None) == (self.private_key_file is None):
            raise ValueError("give exactly one of private_key (PEM text) and "
                             "private_key_file")
        return self


def _folded(fold: Callable[[str], str]) -> BeforeValidator:
    """Accept a setting in any case: ``info`` for ``INFO``, ``UVLOOP`` for ``uvloop``."""
    return BeforeValidator(lambda v: fold(v.strip()) if isinstance(v, str) else v)


def _default_queues() -> dict[str, QueueConfig]:
    return dict(QUEUE_DEFAULTS)


class Settings(BaseSettings):
    """All configuration of newsletter-queue. Construct with keywords to override."""

    model_config = SettingsConfigDict(
        env_prefix="NLQ_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # --- Redis -------------------------------------------------------------------------
    redis_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "NLQ_REDIS_URL", "redis_url"),
        description="redis://, rediss:// or unix:// URL; unset → local or embedded server",
    )
    redis_tls: RedisTLS = RedisTLS()
    redis_cluster: bool = Field(
        default=False, description="Connect with the Redis Cluster client"
    )
    redis_connect_timeout_s: float = Field(default=2.0, gt=0)
    redis_command_timeout_s: float = Field(
        default=10.0, gt=0, description="Socket timeout of non-blocking connections"
    )
    redis_max_connections: PositiveInt = Field(
        default=100, description="Connections per client pool; more concurrent commands "
        "wait for a free one (up to redis_command_timeout_s) instead of failing")
    redis_probe_url: str = Field(
        default=DEFAULT_PROBE_URL,
        description="Where to look for a running server when REDIS_URL is unset",
    )
    embedded_redis: Literal["auto", "never", "always"] = Field(
        default="auto",
        description="auto: start a private server only when REDIS_URL is unset and "
        "nothing answers at redis_probe_url",
    )
    strict: bool = Field(
        default=False, description="Refuse to start on a Redis that may evict keys"
    )
    key_prefix: str = Field(default=DEFAULT_KEY_PREFIX, min_length=1, max_length=64)
    state_dir: Path = Field(default_factory=default_state_dir)

    # --- Queues and jobs ---------------------------------------------------------------
    queues: dict[str, QueueConfig] = Field(default_factory=_default_queues)
    job_limits: JobLimits = JobLimits()
    monitor: MonitorThresholds = MonitorThresholds()
    default_batch_size: Annotated[int, Field(ge=1, le=1000)] = 100

    # --- Settings used by the processors, API and CLI ----------------------------------
    smtp_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SMTP_URL", "NLQ_SMTP_URL", "smtp_url"),
        description="smtp:// or smtps:// (user:password@host:port); unset → dev sink",
    )
    smtp_pool_size: PositiveInt = 8
    smtp_timeout_s: float = Field(default=20.0, gt=0)
    smtp_breaker_threshold: PositiveInt = Field(
        default=5, description="Consecutive transient SMTP failures that open the circuit")
    smtp_breaker_cooldown_ms: PositiveInt = 30_000
    unsubscribe_base_url: str = "http://127.0.0.1:8000/unsubscribe"
    tracking_base_url: str | None = Field(
        default=None, description="Where the internet reaches the open pixel and click "
        "redirect (/t/o, /t/c); unset → NLQ_UNSUBSCRIBE_BASE_URL less its last path segment")
    signing_secret: SecretStr | None = Field(
        default=None, description="HMAC key of unsubscribe, tracking and bounce links; "
        "unset → generated once into state_dir/signing-secret")
    bounce_domain: str | None = Field(
        default=None, description="Domain of the bounce addresses (VERP): each message is "
        "sent from bounces+<token>@<domain>, and that domain's mail must reach "
        "POST /api/inbound; unset → the sender's address (up's dev sink: "
        f"{DEV_BOUNCE_DOMAIN})")
    dev_smtp_port: int = Field(
        default=2525, ge=0, le=65535, description="Port of the dev SMTP sink (0: any free)")
    shutdown_timeout_s: float = Field(
        default=30.0, gt=0, description="Grace period for active jobs on shutdown")
    event_loop: Annotated[Literal["auto", "uvloop", "asyncio"],
                          _folded(str.lower)] = Field(
        default="auto", description="Event loop of up/worker/api: uvloop when installed "
        "(auto), required (uvloop) or asyncio's own")
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"],
                         _folded(str.upper)] = Field(
        default="INFO", description="Log level of up/worker/api (to standard error)")
    mail_from: str = "Newsletter <newsletter@localhost>"
    emails_per_second: PositiveInt = 2000
    emails_per_second_per_tenant: PositiveInt = 500
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "NLQ_DATABASE_URL", "database_url"),
        description="SQLAlchemy async URL; unset → SQLite file in state_dir",
    )
    db_auto_upgrade: bool = Field(
        default=True, description="Upgrade the records database to this release's schema "
        "at start; off: start-up fails until `newsletter-queue db upgrade` has run")
    ai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AI_BASE_URL", "NLQ_AI_BASE_URL", "ai_base_url")
    )
    ai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AI_API_KEY", "NLQ_AI_API_KEY", "ai_api_key")
    )
    ai_model: str = Field(
        default="gpt-4o-mini",
        validation_alias=AliasChoices("AI_MODEL", "NLQ_AI_MODEL", "ai_model"),
    )
    ai_timeout_s: float = Field(default=30.0, gt=0)
    ai_breaker_threshold: PositiveInt = Field(
        default=5, description="Consecutive provider failures that open the AI circuit")
    ai_breaker_cooldown_ms: PositiveInt = 30_000
    api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("NLQ_API_TOKEN", "api_token")
    )
    api_max_body_bytes: int = Field(
        default=1_048_576, ge=1024,
        description="Largest request body the API reads; larger ones get 413")
    api_max_upload_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024,
        description="Largest recipients upload (CSV/NDJSON body of a campaign send) the "
                    "API accepts, streamed to a temporary file; larger ones get 413")
    # DKIM: every field unset → mail goes out unsigned (services/dkim.py).
    dkim_domain: str | None = Field(default=None, description="d= of the global key")
    dkim_selector: str | None = Field(default=None, description="s= of the global key")
    dkim_private_key: SecretStr | None = Field(
        default=None, description="PEM text of the global RSA private key")
    dkim_private_key_file: Path | None = Field(
        default=None, description="A file holding the global key's PEM text")
    dkim_headers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DKIM_DEFAULT_HEADERS, description="Header fields signed (comma-separated)")
    dkim_tenants: dict[str, DkimKey] = Field(
        default_factory=dict, description="tenant id → its own key (JSON object)")
    dev_mode: bool = Field(
        default=True, description="Enables dev tools, dev API and destructive dev actions"
    )
    dev_api: bool = Field(
        default=False, validation_alias=AliasChoices("NLQ_DEV_API", "dev_api")
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in _REDIS_SCHEMES:
            raise ValueError(
                f"unsupported scheme {scheme!r}; use one of {', '.join(_REDIS_SCHEMES)}"
            )
        return value

    @field_validator("api_token")
    @classmethod
    def _check_api_token(cls, value: SecretStr | None) -> SecretStr | None:
        # A blank token would be a secret anyone knows: refused, never taken as "no token".
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(
                "set but blank; set a real token (at least "
                f"{MIN_PUBLIC_TOKEN_CHARS} characters to bind beyond loopback) or unset it")
        return value

    @field_validator("bounce_domain")
    @classmethod
    def _check_bounce_domain(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        domain = value.strip().rstrip(".").lower()
        if not _DOMAIN_RE.fullmatch(domain) or len(domain) > 253:
            raise ValueError("expected a domain name such as bounces.example.com (letters, "
                             "digits, '-' and dots; no '@')")
        return domain

    @field_validator("dkim_domain", "dkim_selector", "dkim_private_key",
                     "dkim_private_key_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dkim_headers", mode="before")
    @classmethod
    def _split_headers(cls, value: Any) -> Any:
        return [h.strip() for h in value.split(",") if h.strip()] \
            if isinstance(value, str) else value

    @field_validator("dkim_headers")
    @classmethod
    def _check_dkim_headers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        lowered = {h.lower() for h in value}
        bad = [h for h in value if not _FIELD_NAME.match(h)]
        if bad:
            raise ValueError(f"not header field names: {', '.join(map(repr, bad))}")
        unsignable = sorted(lowered & set(_DKIM_UNSIGNABLE))
        if unsignable:
            raise ValueError(f"these change in transit and must not be signed: "
                             f"{', '.join(unsignable)}")
        missing = [h for h in DKIM_REQUIRED_HEADERS if h not in lowered]
        if missing:
            raise ValueError(f"must include {', '.join(missing)} (From: RFC 6376; the "
                             "List-Unsubscribe pair: RFC 8058 one-click unsubscribe)")
        return value

    @field_validator("dkim_domain", "dkim_selector")
    @classmethod
    def _check_dkim_names(cls, value: str | None) -> str | None:
        return None if value is None else _dns_name(value)

    @model_validator(mode="after")
    def _check_dkim_key(self) -> Settings:
        given = {"NLQ_DKIM_DOMAIN": self.dkim_domain, "NLQ_DKIM_SELECTOR": self.dkim_selector,
                 "NLQ_DKIM_PRIVATE_KEY or NLQ_DKIM_PRIVATE_KEY_FILE":
                     self.dkim_private_key or self.dkim_private_key_file}
        if any(v is not None for v in given.values()):
            missing = [name for name, v in given.items() if v is None]
            if missing:
                raise ValueError(f"DKIM: {', '.join(missing)} unset; the global key needs "
                                 "a domain, a selector and a key (or none of them)")
        if self.dkim_private_key is not None and self.dkim_private_key_file is not None:
            raise ValueError("DKIM: set NLQ_DKIM_PRIVATE_KEY or NLQ_DKIM_PRIVATE_KEY_FILE, "
                             "not both")
        return self

    @field_validator("key_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _PREFIX_RE.match(value) or ":" in value:
            raise ValueError("may contain letters, digits, '_', '.', '-', '{' and '}' only")
        if ("{" in value) != ("}" in value) or value.count("{") > 1:
            raise ValueError("a hash tag must be one balanced {...} pair, e.g. '{nlq}'")
        return value

    @field_validator("queues", mode="before")
    @classmethod
    def _merge_queue_overrides(cls, value: Any) -> Any:
        """Overrides are merged field by field over the defaults, not replacing them."""
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {k: v.model_dump() for k, v in QUEUE_DEFAULTS.items()}
        for name, override in value.items():
            if name not in merged:
                raise ValueError(
                    f"unknown queue {name!r}; known queues: {', '.join(QUEUE_DEFAULTS)}"
                )
            if isinstance(override, QueueConfig):
                override = override.model_dump(exclude_unset=True)
            if not isinstance(override, dict):
                raise ValueError(f"queue {name!r}: expected an object of queue settings")
            merged[name] = {**merged[name], **override}
        return merged

    @model_validator(mode="after")
    def _check_cluster_prefix(self) -> Settings:
        if self.redis_cluster and "{" not in self.key_prefix:
            raise ValueError(
                "with redis_cluster the key prefix needs a hash tag such as '{nlq}' "
                "so that every key of a queue is in one slot"
            )
        return self

    # --- helpers -----------------------------------------------------------------------
    def queue_config(self, name: str) -> QueueConfig:
        from .errors import QueueNotFoundError

        try:
            return self.queues[name]
        except KeyError:
            raise QueueNotFoundError(name, self.queues) from None

    @property
    def dkim_key(self) -> DkimKey | None:
        """The global DKIM key (for tenants without their own), if configured."""
        if self.dkim_domain is None or self.dkim_selector is None:
            return None
        return DkimKey(domain=self.dkim_domain, selector=self.dkim_selector,
                       private_key=self.dkim_private_key,
                       private_key_file=self.dkim_private_key_file)

    @property
    def masked_redis_url(self) -> str | None:
        return mask_url(self.redis_url.get_secret_value()) if self.redis_url else None

    def sqlite_path(self) -> Path:
        return self.state_dir / "newsletter-queue.sqlite3"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and ``.env``, then apply keyword overrides.

    Raises:
        ConfigurationError: a setting is invalid; the message names each one and why
            (never its value, which may be a secret).
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: "
            f"{error['msg'].removeprefix('Value error, ')}" for error in exc.errors())
        raise ConfigurationError(f"invalid settings: {problems}") from None
    except SettingsError as exc:  # a JSON-valued variable that is not JSON
        raise ConfigurationError(f"invalid settings: {exc} (expected JSON)") from None
