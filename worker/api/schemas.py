"""Request and response bodies (pydantic v2), separate from the ORM models."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

from worker.contract.events import COST_RULE, Cost
from worker.service.decimals import plain

BIGINT_MAX = 2**63 - 1
# PostgreSQL text cannot hold NUL; refusing it here keeps it from becoming a database error.
NO_NUL = r"^[^\x00]*$"
BudgetPeriod = Literal["none", "day", "month"]
# Money leaves as a decimal string (exact; a JSON number would be read as a float).
CostText = Annotated[
    Decimal, PlainSerializer(plain, return_type=str),
    Field(description="USD, an exact decimal as a string (no exponent, no trailing zeros).", examples=["0.00125"]),
]
CostLimitIn = Annotated[Cost, Field(description=f"USD per budget period; {COST_RULE}. A string is exact.")]
Tier = Annotated[str, Field(min_length=1, max_length=50, pattern=NO_NUL)]
TokensLimit = Annotated[int, Field(ge=0, le=BIGINT_MAX, description="Tokens per budget period.")]


class Body(BaseModel):
    """A request body: unknown fields are refused, so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class NewUser(Body):
    email: str = Field(min_length=3, max_length=255, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$")
    password: str = Field(min_length=8, max_length=1024)
    tier: Tier | None = None
    tokens_limit: TokensLimit | None = None
    cost_limit_usd: CostLimitIn | None = None
    budget_period: BudgetPeriod | None = None
    external_id: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=NO_NUL,
        description="The gateway's name for the user (e.g. LiteLLM's user id): the user's id becomes its UUID "
        "by the producer's rule (`worker.producer.identity.project_uuid`).",
    )


class BudgetUpdate(Body):
    """The fields to change; those left out stay. `cost_limit_usd: null` removes the cost limit."""

    # NOTE: typed without None and defaulting to None: left out keeps it, an explicit null is refused.
    tier: Tier = None  # type: ignore[assignment]
    tokens_limit: TokensLimit = None  # type: ignore[assignment]
    cost_limit_usd: CostLimitIn | None = None
    budget_period: BudgetPeriod = Field(
        default=None,  # type: ignore[arg-type]
        description="`day` or `month` (calendar, UTC) or `none` (lifetime). Entering a period fills its usage "
        "from the stored messages and usage records.",
    )


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    tier: str
    tokens_used: int = Field(description="Over the user's lifetime.")
    tokens_limit: int = Field(description="Per budget period (`none`: over the lifetime).")
    tokens_remaining: int = Field(description="Left in the current budget period, as in the quota.")
    cost_used: CostText = Field(description="USD over the user's lifetime (events without a price count 0).")
    cost_limit_usd: CostText | None = Field(description="USD per budget period; null: no cost limit.")
    budget_period: BudgetPeriod
    created_at: datetime


class Period(BaseModel):
    """The current budget period: [start, end) in UTC; both null for `none` (the user's lifetime)."""

    kind: BudgetPeriod
    start: AwareDatetime | None
    end: AwareDatetime | None


class TokensLimitState(BaseModel):
    kind: Literal["tokens"]
    used: int
    limit: int
    remaining: int
    exceeded: bool
    thresholds_crossed: list[int] = Field(description="Percentages of this limit crossed in this period, ascending.")


class CostLimitState(BaseModel):
    kind: Literal["cost_usd"]
    used: CostText
    limit: CostText
    remaining: CostText
    exceeded: bool
    thresholds_crossed: list[int] = Field(description="Percentages of this limit crossed in this period, ascending.")


class Quota(BaseModel):
    tokens_used: int = Field(description="In the current budget period.")
    tokens_limit: int
    tokens_remaining: int
    exceeded: bool = Field(description="Any limit reached (used >= limit).")
    period: Period
    limits: list[Annotated[TokensLimitState | CostLimitState, Field(discriminator="kind")]] = Field(
        description="`tokens` always, `cost_usd` when the user has a cost limit."
    )


class NewConversation(Body):
    title: str | None = Field(default=None, max_length=255, pattern=NO_NUL)
    model: str = Field(min_length=1, max_length=100, pattern=NO_NUL)


class ConversationOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    title: str | None
    model: str
    total_tokens: int
    created_at: datetime
    updated_at: datetime


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class MessageOut(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    role: str
    content: str
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class SearchHit(MessageOut):
    rank: float


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None


UsageGrouping = Literal["day", "month", "model", "period"]


class UsageGroup(BaseModel):
    key: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: CostText
    unpriced_events: int = Field(description="Records without a cost (no price applied); counted as 0 USD.")
    records: int


class Usage(BaseModel):
    group_by: UsageGrouping
    period: BudgetPeriod | None = Field(
        default=None, description="With group_by=period: the user's budget period kind the groups follow."
    )
    groups: list[UsageGroup]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: CostText
    unpriced_events: int


class NewApiKey(Body):
    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    expires_at: AwareDatetime | None = None


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    is_active: bool
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class CreatedApiKey(ApiKeyOut):
    key: str = Field(description="The plaintext key; shown once, only its hash is stored.")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]


