"""The CDS Hooks 2.0 feedback request ("Feedback"): tolerant of unknown fields, strict on meaning.

Rules enforced beyond the types, from the specification:
- `acceptedSuggestions` is required (non-empty) for `accepted`, and meaningless for `overridden`;
- `overrideReason` belongs to `overridden` only ("an entire card is either ignored or overridden");
- `outcomeTimestamp` is an RFC 3339 date-time; one without an offset is taken as UTC (the
  specification says UTC), and every timestamp is normalised to UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_FEEDBACK_ITEMS = 1000
MAX_ID_LENGTH = 200
MAX_COMMENT_LENGTH = 10_000
RFC3339_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")
# Control characters are refused (400), not stored: PostgreSQL cannot store NUL in text (an insert
# would fail, and a client told "503, send it again" would fail forever), and none belongs in a
# card id, a code or a display. A comment may hold line breaks and tabs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _no_control_characters(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed here")
    return value


def _no_control_characters_in_text(value: str) -> str:
    if _CONTROL_IN_TEXT.search(value):
        raise ValueError("control characters other than tab and line breaks are not allowed here")
    return value


Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_no_control_characters)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


class FeedbackCoding(_Tolerant):
    """A CDS Hooks Coding. `system` is REQUIRED by the specification but kept optional here: a
    reason with a code and no system is still worth keeping."""

    code: Identifier
    system: Annotated[str, Field(max_length=1000), AfterValidator(_no_control_characters)] | None = None
    display: Annotated[str, Field(max_length=1000), AfterValidator(_no_control_characters)] | None = None


class AcceptedSuggestion(_Tolerant):
    id: Identifier


class OverrideReason(_Tolerant):
    reason: FeedbackCoding | None = None
    userComment: (
        Annotated[str, Field(max_length=MAX_COMMENT_LENGTH), AfterValidator(_no_control_characters_in_text)] | None
    ) = None

    @property
    def is_empty(self) -> bool:
        return self.reason is None and not self.userComment


class FeedbackItem(_Tolerant):
    card: Identifier
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = Field(default=None, max_length=100)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: dt.datetime

    @field_validator("outcomeTimestamp", mode="before")
    @classmethod
    def _date_time_text(cls, value: object) -> object:
        # pydantic would also take a bare date or a Unix number; the specification wants RFC 3339.
        if not isinstance(value, str) or not RFC3339_DATE_TIME.match(value):
            raise ValueError("outcomeTimestamp must be an RFC 3339 date-time, e.g. 2021-12-11T10:05:31Z")
        return value

    @field_validator("outcomeTimestamp")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _consistent(self) -> FeedbackItem:
        if self.outcome == "accepted":
            if not self.acceptedSuggestions:
                raise ValueError("acceptedSuggestions is required for an 'accepted' outcome")
            if self.overrideReason is not None and not self.overrideReason.is_empty:
                raise ValueError("overrideReason is only allowed with an 'overridden' outcome")
        elif self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is only allowed with an 'accepted' outcome")
        return self


class FeedbackRequest(_Tolerant):
    feedback: list[FeedbackItem] = Field(max_length=MAX_FEEDBACK_ITEMS)
