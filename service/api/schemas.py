"""Request bodies, as strict pydantic models: unknown fields and wrong types are rejected.

The same models produce the request schemas of the OpenAPI document, so what is validated and
what is documented cannot drift apart. Every value is bounded where it is accepted: ids and
amounts fit the database's integer columns (and JavaScript's numbers), text carries no control
characters, and a job's `eta` lies in a window whose arithmetic cannot overflow.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ..tasks.exports import EXPORTABLE

#: The largest id the API accepts: ids are 32-bit INTEGER columns on PostgreSQL.
MAX_ID = 2**31 - 1
#: The largest other integer (amounts, totals): JavaScript's largest safe integer, well inside
#: the 64-bit integers of the database columns that hold them.
MAX_INT = 2**53 - 1
#: Text may hold any character but the control characters (C0, DEL, C1) and the Unicode line
#: and paragraph separators: they split mail headers and CSV rows, and PostgreSQL refuses NUL.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
#: An address as email-validator takes it (which then also rules out, e.g., reserved domains):
#: a dot-atom, "@", and a domain of labels of letters, digits and hyphens, the last one starting
#: with a letter.
EMAIL = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
#: What a value that does not match one of these patterns is told.
PATTERN_MESSAGES = {
    NO_CONTROL_CHARACTERS: "must not contain control characters (U+0000-U+001F, U+007F-U+009F) "
    "or line breaks",
    EMAIL: "must be one email address in ASCII, like name@example.com",
}
#: RFC 3339's date-time, with up to the microseconds Python keeps.
RFC_3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
#: The earliest `eta`: anything earlier is a mistake, and converting it to UTC could overflow.
EARLIEST_ETA = datetime(2000, 1, 1, tzinfo=UTC)


def _email(value: str) -> str:
    """One syntactically valid address (no DNS lookup), lower-cased: the same user in any case."""
    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    if len(checked.local_part) > 64:  # RFC 5321, which email-validator leaves to the caller
        raise ValueError("the part before the @-sign must be at most 64 characters")
    return (checked.ascii_email or checked.normalized).lower()


def _eta_in_utc(value: Any) -> Any:
    """An RFC 3339 date-time with a zone (the OpenAPI `date-time`), in UTC, from EARLIEST_ETA."""
    if not isinstance(value, str):
        return value  # refused as the wrong type
    if not RFC_3339.fullmatch(value):
        raise ValueError("must be a date-time with a zone, e.g. 2030-01-01T09:00:00Z")
    try:
        eta = datetime.fromisoformat(value.upper()).astimezone(UTC)
    except ValueError:
        raise ValueError(f"{value} is not a date-time") from None
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first UTC datetime
        raise ValueError("is out of range") from None
    if eta < EARLIEST_ETA:
        raise ValueError(f"must not be before {EARLIEST_ETA:%Y-%m-%dT%H:%M:%SZ}")
    return eta


def _plain_json(value: Any, where: str = "payload") -> Any:
    """Refuse what JSON cannot carry or PostgreSQL cannot store: non-finite numbers, NUL."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"numbers must be finite, {where} is {value}")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"strings must not contain NUL, {where} does")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _plain_json(item, f"{where}[{i}]")
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise ValueError(f"keys must not contain NUL, one in {where} does")
            _plain_json(item, f"{where}.{key}")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
SmallInt = Annotated[int, Field(ge=-MAX_INT, le=MAX_INT)]
Email = Annotated[
    str,
    Field(
        min_length=3,
        max_length=254,
        pattern=EMAIL,
    ),
    AfterValidator(_email),
]
Text = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)]
ExportTable = Literal[tuple(EXPORTABLE)]  # type: ignore[valid-type]


class Body(BaseModel):
    """Base for every request body: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Schedule(Body):
    """When to run a job: at once (default), after `countdown` seconds, or at `eta`."""

    model_config = ConfigDict(
        json_schema_extra={  # as `_one_of` has it: not both
            "not": {
                "required": ["countdown", "eta"],
                "properties": {"countdown": {"type": "integer"}, "eta": {"type": "string"}},
            }
        }
    )

    countdown: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] | None = None
    eta: Annotated[datetime, BeforeValidator(_eta_in_utc)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if self.countdown is not None and self.eta is not None:
            raise ValueError("give countdown or eta, not both")
        return self

    def delay_seconds(self, now: datetime) -> float:
        """How far ahead the job is scheduled."""
        if self.countdown is not None:
            return float(self.countdown)
        if self.eta is not None:
            return (self.eta - now).total_seconds()
        return 0.0

    def options(self) -> dict[str, Any]:
        """The `apply_async` scheduling options."""
        if self.countdown is not None:
            return {"countdown": self.countdown}
        if self.eta is not None:
            return {"eta": self.eta}
        return {}


class AddJob(Schedule):
    a: SmallInt
    b: SmallInt


class WelcomeEmailJob(Schedule):
    user_id: Id


class InvoicePdfJob(Schedule):
    invoice_id: Id


class ExportJob(Schedule):
    table: ExportTable  # type: ignore[valid-type]


class WebhookJob(Schedule):
    endpoint_id: Id
    event_type: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_.-]+$")]
    payload: Annotated[dict[str, Any], AfterValidator(_plain_json)]


class PeriodicJob(Schedule):
    task: Literal["expire_trials", "queue_trial_reminders"]


class NewUser(Body):
    email: Email
    name: Text
    trial_days: Annotated[int, Field(ge=0, le=365)] = 14


class InvoiceLine(Body):
    description: Text
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    unit_price_cents: Annotated[int, Field(ge=0, le=10**12)]


class NewInvoice(Body):
    user_id: Id
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    lines: Annotated[list[InvoiceLine], Field(min_length=1, max_length=100)]

    @field_validator("lines")
    @classmethod
    def _total_fits(cls, lines: list[InvoiceLine]) -> list[InvoiceLine]:
        if _total_cents(lines) > MAX_INT:
            raise ValueError(f"the invoice total must be at most {MAX_INT} cents")
        return lines

    @property
    def total_cents(self) -> int:
        return _total_cents(self.lines)


def _total_cents(lines: list[InvoiceLine]) -> int:
    return sum(line.quantity * line.unit_price_cents for line in lines)


class NewWebhookEndpoint(Body):
    url: AnyHttpUrl
    secret: (
        Annotated[str, Field(min_length=16, max_length=200, pattern=NO_CONTROL_CHARACTERS)] | None
    ) = None


REQUEST_MODELS: tuple[type[Body], ...] = (
    AddJob,
    WelcomeEmailJob,
    InvoicePdfJob,
    ExportJob,
    WebhookJob,
    PeriodicJob,
    NewUser,
    NewInvoice,
    NewWebhookEndpoint,
)
