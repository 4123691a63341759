"""Job data models: the TypeScript interfaces of the original design as pydantic v2 models.

On the wire (in Redis) fields are camelCase, exactly what a Node BullMQ producer sends,
so its JSON validates unchanged; in Python they are snake_case. Build a model from
either form, and serialise it for Redis with ``to_wire()``.

``validate_job`` is the single entry point used at enqueue time and again when a
worker picks a job up: it applies the models and the size caps from ``JobLimits`` and
raises ``JobValidationError`` naming *every* bad field path (``recipients[3].email``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .config import JobLimits
from .errors import FieldError, JobValidationError

# Ids end up inside BullMQ job ids and Redis keys: no ':' (key separator), no spaces or
# control characters, bounded length.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,127}$"
# Common ASCII addresses are checked by this expression (fast path for 100k-recipient
# campaigns); anything else goes through email-validator for a precise verdict.
_SIMPLE_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_MAX_NESTING = 32


class WireModel(BaseModel):
    """camelCase aliases on the wire, snake_case attributes, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict stored in Redis (camelCase, unset optionals omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _check_json_safe(value: Any, depth: int = 0) -> None:
    if depth > _MAX_NESTING:
        raise ValueError(f"nested deeper than {_MAX_NESTING} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinity are not JSON values")
    if isinstance(value, dict):
        for item in value.values():
            _check_json_safe(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_safe(item, depth + 1)


def _no_line_breaks(value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError("must not contain line breaks or NUL (header injection)")
    return value


def check_email(value: str) -> str:
    """Validate one address; return it (domain lower-cased). Raises ``ValueError``."""
    if _SIMPLE_EMAIL.match(value) and len(value) <= 254:
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    return result.normalized


class Recipient(WireModel):
    """One addressee of an email job."""

    email: str
    name: str | None = Field(default=None, max_length=256)
    personalizations: dict[str, JsonValue] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return check_email(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _no_line_breaks(value)

    @field_validator("personalizations")
    @classmethod
    def _json_safe(cls, value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
        if value is not None:
            _check_json_safe(value)
        return value


class EmailContent(WireModel):
    """Inline content for transactional mail (campaign mail reads the stored campaign)."""

    subject: str = Field(min_length=1, max_length=998)
    html: str | None = None
    text: str | None = None
    from_: str | None = Field(default=None, alias="from")
    reply_to: str | None = None

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return _no_line_breaks(value)

    @field_validator("from_", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _no_line_breaks(value)
        # Accept "Display Name <addr@host>" as well as a bare address.
        match = re.fullmatch(r"\s*(?:(.*?)\s*<([^<>]+)>|([^<>\s]+))\s*", value)
        if not match:
            raise ValueError("expected an address or 'Name <address>'")
        check_email(match.group(2) or match.group(3))
        return value


class EmailJobData(WireModel):
    """A batch of recipients of one campaign (or one transactional message)."""

    campaign_id: str = Field(pattern=_ID_PATTERN)
    tenant_id: str = Field(pattern=_ID_PATTERN)
    recipients: list[Recipient] = Field(min_length=1)
    batch_size: int | None = Field(default=None, ge=1, le=1000, strict=True)
    content: EmailContent | None = None


class AnalyticsJobData(WireModel):
    """Aggregation work for one campaign or one tenant's day."""

    campaign_id: str = Field(pattern=_ID_PATTERN)
    tenant_id: str = Field(pattern=_ID_PATTERN)
    event_type: Literal["campaign-complete", "daily-aggregation"]
    data: dict[str, JsonValue] | None = None

    @field_validator("data")
    @classmethod
    def _json_safe(cls, value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
        if value is not None:
            _check_json_safe(value)
        return value


INBOUND_MAX_BYTES = 256 * 1024
"""The most of an inbound message that is kept: the report parts come first in a DSN or
an ARF report, and what a longer one loses is the end of the returned copy."""


class InboundMessageData(WireModel):
    """A message that came back to the bounce address — a DSN, a delay warning, a
    feedback-loop report: the analytics queue's ``inbound-message`` job.

    ``message`` is the raw message, base64 (any bytes) or text, at most
    ``INBOUND_MAX_BYTES`` once decoded; ``rcpt`` is the envelope recipient the MTA gave
    it to, when known (a bounce address); ``truncated`` says the message was cut."""

    message: str = Field(min_length=1, max_length=(INBOUND_MAX_BYTES + 2) // 3 * 4)
    encoding: Literal["base64", "text"] = "base64"
    rcpt: str | None = Field(default=None, max_length=998)
    truncated: bool = False

    @field_validator("rcpt")
    @classmethod
    def _rcpt(cls, value: str | None) -> str | None:
        return None if value is None else _no_line_breaks(value)

    @model_validator(mode="after")
    def _decodes(self) -> InboundMessageData:
        if len(self.raw()) > INBOUND_MAX_BYTES:
            raise ValueError(f"message: more than {INBOUND_MAX_BYTES} bytes")
        return self

    def raw(self) -> bytes:
        """The message's bytes.

        Raises:
            ValueError: ``message`` is not valid base64.
        """
        if self.encoding == "text":
            return self.message.encode("utf-8", "surrogateescape")
        try:
            return base64.b64decode(self.message, validate=True)
        except binascii.Error:
            raise ValueError("message: not valid base64") from None


class AIJobData(WireModel):
    """An AI task for a tenant."""

    tenant_id: str = Field(pattern=_ID_PATTERN)
    type: Literal["content-generation", "subject-optimization", "campaign-insights"]
    data: dict[str, JsonValue]

    @field_validator("data")
    @classmethod
    def _json_safe(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        _check_json_safe(value)
        return value


class TrackingEvent(WireModel):
    """Something a recipient did, reported by the platform (opens, clicks …)."""

    tenant_id: str = Field(pattern=_ID_PATTERN)
    campaign_id: str = Field(pattern=_ID_PATTERN)
    recipient: str
    type: Literal["sent", "delivered", "bounced", "opened", "clicked", "unsubscribed",
                  "complained"]
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    url: str | None = Field(default=None, max_length=2048)

    @field_validator("recipient")
    @classmethod
    def _recipient(cls, value: str) -> str:
        return check_email(value)

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


JobModel = TypeVar("JobModel", EmailJobData, AnalyticsJobData, AIJobData,
                   InboundMessageData)


_MAX_PATH_PARTS = 2 * _MAX_NESTING  # deeper data still gets a readable path


def _path(loc: tuple[int | str, ...], model: type[BaseModel]) -> str:
    out = ""
    if len(loc) > _MAX_PATH_PARTS:
        loc = (*loc[:_MAX_PATH_PARTS], "…")
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


_ID = TypeAdapter(Annotated[str, Field(pattern=_ID_PATTERN)])


def id_errors(**ids: Any) -> list[FieldError]:
    """The problems of tenant/campaign ids given as ``camelCaseName=value`` (none if valid).

    The same rule as the job models' id fields (they end up in job ids and Redis keys).
    """
    errors: list[FieldError] = []
    for name, value in ids.items():
        try:
            _ID.validate_python(value, strict=True)
        except ValidationError as exc:
            errors.extend(FieldError(name, err["msg"]) for err in exc.errors(include_url=False))
    return errors


def field_errors(exc: ValidationError, model: type[BaseModel]) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        message = err["msg"].removeprefix("Value error, ")
        errors.append(FieldError(_path(err["loc"], model), message))
    return errors


def validate_job(
    model: type[JobModel], data: Any, limits: JobLimits | None = None, *,
    size: int | None = None,
) -> JobModel:
    """Validate ``data`` (a model, a camelCase or snake_case dict) against ``model``.

    ``size``: the bytes of ``data`` as stored, when the caller knows them (a worker's
    job does); otherwise the validated model is serialised to count them.

    Raises:
        JobValidationError: listing every invalid field and any cap exceeded.
    """
    limits = limits or JobLimits()
    if isinstance(data, model):
        raw: Any = data.to_wire()
    else:
        raw = data
    try:
        obj = model.model_validate(raw)
    except ValidationError as exc:
        raise JobValidationError(model.__name__, field_errors(exc, model)) from None
    problems: list[FieldError] = []
    if isinstance(obj, EmailJobData) and len(obj.recipients) > limits.max_recipients_per_job:
        problems.append(FieldError(
            "recipients",
            f"{len(obj.recipients)} recipients; at most {limits.max_recipients_per_job} "
            "per job (use schedule_batch_email_sending for campaigns)",
        ))
    if size is None:
        size = payload_size(obj)
    if size > limits.max_payload_bytes:
        problems.append(FieldError(
            "(root)", f"payload is {size} bytes; at most {limits.max_payload_bytes}"
        ))
    if problems:
        raise JobValidationError(model.__name__, problems)
    return obj


def payload_size(obj: WireModel | Mapping[str, Any]) -> int:
    """Bytes of the JSON stored in Redis for this job's data (a model or its wire dict)."""
    wire = obj.to_wire() if isinstance(obj, WireModel) else obj
    return len(json.dumps(wire, separators=(",", ":")).encode())
