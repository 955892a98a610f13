"""Plain rows the service layer hands to repositories (no ORM objects on the hot path)."""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def by_id(row: Any) -> int:
    """Sort key of a row by its `id`: the order PostgreSQL gives UUIDs (bytewise), and the
    order every batch locks counter rows in. `UUID.int`, because sorting by the UUID itself
    makes a Python call (`UUID.__lt__`) per comparison."""
    return row.id.int


def by_uuid(item: tuple[uuid.UUID, Any]) -> int:
    """Sort key of a (UUID, value) pair, in the same order as `by_id`."""
    return item[0].int


@dataclass(frozen=True)
class EventKey:
    """The idempotency key of an event, plus the `message_id` that also identifies a message event."""

    source: str
    event_id: str
    event_type: str
    message_id: uuid.UUID | None = None

    @property
    def pair(self) -> tuple[str, str]:
        return (self.source, self.event_id)

    @property
    def lock_hash(self) -> int:
        """A stable signed 32-bit hash of (`source`, `id`) for the key's advisory lock."""
        digest = zlib.crc32(f"{self.source}\x1f{self.event_id}".encode("utf-8", "surrogatepass"))
        return digest - 2**32 if digest >= 2**31 else digest


@dataclass(frozen=True)
class ConversationClaim:
    """What an event asks of its conversation."""

    id: uuid.UUID
    model: str
    title: str | None
    at: datetime
    """`created_at` (and first `updated_at`) if this event creates the conversation."""
    touch_at: datetime | None
    """`updated_at` moves forward to this (message events only)."""


@dataclass(frozen=True)
class ConversationDelta:
    """Changes to an existing, locked conversation."""

    id: uuid.UUID
    tokens: int
    title: str | None
    touch_at: datetime | None
    cost: Decimal = Decimal(0)


@dataclass(frozen=True)
class NewConversation:
    """A conversation this batch creates."""

    id: uuid.UUID
    user_id: uuid.UUID
    model: str
    title: str | None
    tokens: int
    created_at: datetime
    updated_at: datetime
    cost: Decimal = Decimal(0)


@dataclass(frozen=True)
class MessageRow:
    id: uuid.UUID
    conversation_id: uuid.UUID
    role: str
    content: str
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    metadata_json: str | None
    """JSON text for jsonb, numbers in the digits the event was sent with."""
    created_at: datetime
    cost_usd: Decimal | None = None


@dataclass(frozen=True)
class UsageRow:
    source: str
    event_id: str
    user_id: uuid.UUID
    conversation_id: uuid.UUID | None
    message_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    request_id: str | None
    recorded_at: datetime
    cost_usd: Decimal | None = None


# NOTE: the rows a batch makes per event or per user are plain slotted dataclasses: a frozen
# one's __init__ costs three times as much (object.__setattr__ per field).
@dataclass(slots=True)
class Usage:
    """What applied events add to one counter row: tokens and cost."""

    tokens: int = 0
    cost: Decimal = Decimal(0)

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.tokens + other.tokens, self.cost + other.cost)

    def __bool__(self) -> bool:
        return bool(self.tokens or self.cost)


@dataclass(slots=True)
class UserBudget:
    """A user's counters and budget, as the batch that grew them left them (row locked)."""

    id: uuid.UUID
    tokens_used: int
    cost_used: Decimal
    tier: str
    budget_period: str
    tokens_limit: int
    cost_limit_usd: Decimal | None
    created_at: datetime | None = None
    """Tells a user apart from an earlier one of the same id (deleted, then created again)."""


@dataclass(slots=True)
class PeriodDelta:
    """What a batch adds to one user's usage in one budget period."""

    user_id: uuid.UUID
    period: str
    period_start: date
    usage: Usage


@dataclass(slots=True)
class PeriodUsage:
    """A user's usage in one budget period after the batch grew it."""

    user_id: uuid.UUID
    period: str
    period_start: date
    tokens: int
    cost: Decimal


@dataclass(frozen=True)
class Price:
    """A model's price per token from `valid_from` (a UTC day) on."""

    model: str
    valid_from: date
    input_cost_per_token: Decimal
    output_cost_per_token: Decimal


@dataclass(slots=True)
class Crossing:
    """One threshold of one limit crossed in one period."""

    event_id: uuid.UUID
    user_id: uuid.UUID
    period: str
    period_start: date | None
    limit_kind: str
    limit_value: Decimal | int
    """An int for a token limit."""
    threshold: int
    usage: Decimal | int


@dataclass(frozen=True)
class OutboxRow:
    """An event to publish once the transaction that wrote it commits."""

    event_id: str
    ordering_key: uuid.UUID
    routing_key: str
    payload_json: str
