"""Request bodies, as strict pydantic models: unknown fields and wrong types are rejected.

The same models produce the request schemas of the OpenAPI document, so what is validated and
what is documented cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

from ..tasks.exports import EXPORTABLE

ExportTable = Literal[tuple(EXPORTABLE)]  # type: ignore[valid-type]
Id = Annotated[int, Field(ge=1, le=2**53)]
SmallInt = Annotated[int, Field(ge=-(2**53), le=2**53)]


class Body(BaseModel):
    """Base for every request body: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Schedule(Body):
    """When to run a job: at once (default), after `countdown` seconds, or at `eta`."""

    countdown: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] | None = None
    eta: datetime | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if self.countdown is not None and self.eta is not None:
            raise ValueError("give countdown or eta, not both")
        if self.eta is not None and self.eta.tzinfo is None:
            raise ValueError("eta must carry a timezone, e.g. 2030-01-01T09:00:00Z")
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
    payload: dict[str, Any]


class PeriodicJob(Schedule):
    task: Literal["expire_trials", "queue_trial_reminders"]


class NewUser(Body):
    email: Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    trial_days: Annotated[int, Field(ge=0, le=365)] = 14


class InvoiceLine(Body):
    description: Annotated[str, Field(min_length=1, max_length=200)]
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    unit_price_cents: Annotated[int, Field(ge=0, le=10**12)]


class NewInvoice(Body):
    user_id: Id
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    lines: Annotated[list[InvoiceLine], Field(min_length=1, max_length=100)]


class NewWebhookEndpoint(Body):
    url: AnyHttpUrl
    secret: Annotated[str, Field(min_length=16, max_length=200)] | None = None


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
