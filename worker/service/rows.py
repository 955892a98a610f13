"""Plain rows the service layer hands to repositories (no ORM objects on the hot path)."""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime
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
