"""Declarative `Mapped[]` models: the tutorial's schema plus what the worker needs.

Counters are BIGINT: a busy user passes 2^31 tokens. `processed_events` (the inbox) has
no foreign key to anything a user deletion cascades through, and is range-partitioned by
day so its retention is enforced by dropping whole partitions (`worker.db.inbox_partitions`).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Foreign keys to the rows whose counters a batch grows (users, conversations) are checked at
# commit: by then the batch holds those rows FOR NO KEY UPDATE itself, so the check's KEY SHARE
# lock adds no second locker (no MultiXact on a hot user's row). See alembic revision 0002.
CHECKED_AT_COMMIT = {"deferrable": True, "initially": "DEFERRED"}


class Base(DeclarativeBase):
    """Base of every model; one naming convention so migrations name constraints the same way."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Costs in USD are exact decimals; prices per token need more digits after the point.
Cost = Numeric(30, 12)
Price = Numeric(30, 18)


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class User(Base):
    """A platform user, their running token and cost counts, and their budget."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("tokens_used >= 0", name="tokens_used_non_negative"),
        CheckConstraint("tokens_limit >= 0", name="tokens_limit_non_negative"),
        CheckConstraint("cost_used >= 0", name="cost_used_non_negative"),
        CheckConstraint("cost_limit_usd >= 0", name="cost_limit_non_negative"),
        CheckConstraint("budget_period IN ('none', 'day', 'month')", name="budget_period_known"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    email: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    hashed_password: Mapped[str] = mapped_column(String(255), nullable=False)
    tier: Mapped[str] = mapped_column(String(50), nullable=False, server_default="free")
    tokens_used: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    tokens_limit: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="100000")
    """Per budget period when the user has one, else over the user's lifetime."""
    cost_used: Mapped[Decimal] = mapped_column(Cost, nullable=False, server_default="0")
    cost_limit_usd: Mapped[Decimal | None] = mapped_column(Cost)
    budget_period: Mapped[str] = mapped_column(String(5), nullable=False, server_default="none")
    """`none` (lifetime), `day` or `month`: calendar periods in UTC."""
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )

    conversations: Mapped[list[Conversation]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )
    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )


class Conversation(Base):
    """A chat thread owned by one user."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_user_updated", "user_id", text("updated_at DESC")),
        CheckConstraint("total_tokens >= 0", name="total_tokens_non_negative"),
        CheckConstraint("cost_used >= 0", name="cost_used_non_negative"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE", **CHECKED_AT_COMMIT), nullable=False
    )
    title: Mapped[str | None] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(100), nullable=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    total_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    cost_used: Mapped[Decimal] = mapped_column(Cost, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )

    user: Mapped[User] = relationship(back_populates="conversations", lazy="raise")
    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )


class Message(Base):
    """One chat message with its token counts."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_created", "conversation_id", "created_at"),
        Index("ix_messages_content_search", "content_search", postgresql_using="gin"),
        CheckConstraint("role IN ('system', 'user', 'assistant', 'tool')", name="role_known"),
        CheckConstraint("prompt_tokens >= 0 AND completion_tokens >= 0", name="tokens_non_negative"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE", **CHECKED_AT_COMMIT), nullable=False
    )
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    model: Mapped[str | None] = mapped_column(String(100))
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # NOTE: `metadata` is reserved by declarative mapping; the column keeps its name.
    message_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    cost_usd: Mapped[Decimal | None] = mapped_column(Cost)
    """As sent, else from `model_prices`; NULL when neither knew it."""
    created_at: Mapped[datetime] = _created_at()
    # Full-text search (alembic revision 0003); never loaded with the row.
    content_search: Mapped[Any] = mapped_column(
        TSVECTOR, Computed("to_tsvector('simple'::regconfig, left(content, 65536))", persisted=True), deferred=True
    )

    conversation: Mapped[Conversation] = relationship(back_populates="messages", lazy="raise")


class ApiKey(Base):
    """A user's API key (only its hash is stored)."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    key_hash: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()

    user: Mapped[User] = relationship(back_populates="api_keys", lazy="raise")


class UsageRecord(Base):
    """Tokens from a `usage.recorded` event; its (`event_source`, `event_id`) is unique."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_user_recorded", "user_id", "recorded_at"),
        Index("uq_usage_records_event", "event_source", "event_id", unique=True),
        CheckConstraint("prompt_tokens >= 0 AND completion_tokens >= 0", name="tokens_non_negative"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    event_source: Mapped[str] = mapped_column(String(255), nullable=False)
    event_id: Mapped[str] = mapped_column(String(255), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE", **CHECKED_AT_COMMIT), nullable=False
    )
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="SET NULL", **CHECKED_AT_COMMIT), index=True
    )
    # A reference only: the message need not exist (yet), so no foreign key.
    message_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # The key may be unknown or another user's; kept for audit, so no foreign key.
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    model: Mapped[str] = mapped_column(String(100), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    request_id: Mapped[str | None] = mapped_column(String(255))
    cost_usd: Mapped[Decimal | None] = mapped_column(Cost)
    """As sent, else from `model_prices`; NULL when neither knew it."""
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = _created_at()


class ProcessedEvent(Base):
    """Inbox: one row per applied event, keyed by (`source`, `id`), partitioned by day."""

    __tablename__ = "processed_events"
    __table_args__ = {"postgresql_partition_by": "RANGE (processed_on)"}

    source: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    processed_on: Mapped[date] = mapped_column(Date, primary_key=True, server_default=func.current_date())
    event_type: Mapped[str] = mapped_column(String(50), nullable=False)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class ModelPrice(Base):
    """Price per input and output token of a model, from `valid_from` (UTC day) until the next row's."""

    __tablename__ = "model_prices"
    __table_args__ = (
        CheckConstraint("input_cost_per_token >= 0 AND output_cost_per_token >= 0", name="prices_non_negative"),
    )

    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    valid_from: Mapped[date] = mapped_column(Date, primary_key=True)
    input_cost_per_token: Mapped[Decimal] = mapped_column(Price, nullable=False)
    output_cost_per_token: Mapped[Decimal] = mapped_column(Price, nullable=False)
    loaded_at: Mapped[datetime] = _created_at()


class UsagePeriod(Base):
    """A user's usage in one budget period (`day` or `month`, starting `period_start`, UTC)."""

    __tablename__ = "usage_periods"
    __table_args__ = (
        CheckConstraint("period IN ('day', 'month')", name="period_known"),
        CheckConstraint("tokens >= 0 AND cost_usd >= 0", name="usage_non_negative"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE", **CHECKED_AT_COMMIT), primary_key=True
    )
    period: Mapped[str] = mapped_column(String(5), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    cost_usd: Mapped[Decimal] = mapped_column(Cost, nullable=False, server_default="0")


class QuotaCrossing(Base):
    """One threshold of one limit crossed in one period; `event_id` derives from all of them."""

    __tablename__ = "quota_crossings"
    __table_args__ = (
        Index("ix_quota_crossings_user_period", "user_id", "period", "period_start"),
        CheckConstraint("limit_kind IN ('tokens', 'cost_usd')", name="limit_kind_known"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE", **CHECKED_AT_COMMIT), nullable=False
    )
    period: Mapped[str] = mapped_column(String(5), nullable=False)
    period_start: Mapped[date | None] = mapped_column(Date)
    """NULL for the lifetime period (`none`)."""
    limit_kind: Mapped[str] = mapped_column(String(10), nullable=False)
    limit_value: Mapped[Decimal] = mapped_column(Cost, nullable=False)
    threshold: Mapped[int] = mapped_column(Integer, nullable=False)
    """Percent of the limit."""
    usage: Mapped[Decimal] = mapped_column(Cost, nullable=False)
    crossed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class OutboxEvent(Base):
    """An event written in the transaction that caused it; the relay publishes it, then sets `sent_at`."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "ordering_key", "seq", postgresql_where=text("sent_at IS NULL")),
        Index("ix_outbox_sent_at", "sent_at", postgresql_where=text("sent_at IS NOT NULL")),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    ordering_key: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    """Events of one key (a user) are published in `seq` order."""
    routing_key: Mapped[str] = mapped_column(String(255), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = _created_at()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
