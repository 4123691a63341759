"""The ``data`` of each AI job type, as pydantic models.

``AIJobData.data`` is a free JSON object on the wire (the TypeScript shape Node producers send), so
each type's processor validates it again here to get a precise error naming the field
(``data.stats.open_rate``). Keys may be camelCase (what Node producers send) or
snake_case; unknown keys are ignored so producers can attach their own context.
Rates are fractions between 0 and 1, counts are non-negative integers.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

_MAX_TEXT = 2_000


class _Request(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        str_strip_whitespace=True,
    )


class ContentRequest(_Request):
    """``content-generation``: what the newsletter issue is about."""

    topic: str = Field(min_length=1, max_length=500)
    outline: list[str] = Field(default_factory=list, max_length=30)
    tone: str = Field(default="friendly", min_length=1, max_length=60)
    audience: str | None = Field(default=None, max_length=200)
    max_words: int = Field(default=400, ge=50, le=3000)

    @field_validator("outline")
    @classmethod
    def _outline(cls, value: list[str]) -> list[str]:
        items = [" ".join(item.split()) for item in value]
        for item in items:
            if not item:
                raise ValueError("outline items must not be empty")
            if len(item) > _MAX_TEXT:
                raise ValueError(f"outline items are at most {_MAX_TEXT} characters")
        return items


class SubjectRequest(_Request):
    """``subject-optimization``: candidate subject lines to score and improve."""

    subjects: list[str] = Field(min_length=1, max_length=50)
    topic: str | None = Field(default=None, max_length=500)
    audience: str | None = Field(default=None, max_length=200)

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, value: list[str]) -> list[str]:
        for subject in value:
            if not subject.strip():
                raise ValueError("subjects must not be empty")
            if len(subject) > 998:
                raise ValueError("subjects are at most 998 characters")
        return value


class CampaignStats(_Request):
    """Figures of one sent campaign. Only ``sent`` is required.

    ``open_rate``/``click_rate`` win over ``opens``/``clicks`` when both are given;
    rates are computed against ``delivered`` (default: ``sent - bounced``).
    ``trend`` is the open rates of the previous campaigns, oldest first.
    """

    sent: int = Field(ge=0)
    delivered: int | None = Field(default=None, ge=0)
    opens: int | None = Field(default=None, ge=0)
    clicks: int | None = Field(default=None, ge=0)
    open_rate: float | None = Field(default=None, ge=0, le=1)
    click_rate: float | None = Field(default=None, ge=0, le=1)
    bounced: int = Field(default=0, ge=0)
    unsubscribes: int = Field(default=0, ge=0)
    complaints: int = Field(default=0, ge=0)
    send_hour: int | None = Field(default=None, ge=0, le=23)
    best_send_hour: int | None = Field(default=None, ge=0, le=23)
    trend: list[float] | None = Field(default=None, max_length=100)

    @field_validator("trend")
    @classmethod
    def _trend(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(not 0 <= rate <= 1 for rate in value):
            raise ValueError("trend holds open rates between 0 and 1")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CampaignStats:
        if self.bounced > self.sent:
            raise ValueError(f"bounced ({self.bounced}) is more than sent ({self.sent})")
        if self.delivered is not None and self.delivered > self.sent:
            raise ValueError(f"delivered ({self.delivered}) is more than sent ({self.sent})")
        return self


class InsightsRequest(_Request):
    """``campaign-insights``: the campaign's figures."""

    stats: CampaignStats
    campaign_id: str | None = Field(default=None, max_length=128)
