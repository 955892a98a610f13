"""Repositories: add and query through the Unit of Work's session; they never commit.

Counters grow with one `UPDATE … SET x = x + n` (or the upsert's `DO UPDATE`), never
read-modify-write in Python.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from worker.db.models import ApiKey, Base, Conversation, Message, UsageRecord, User

ModelT = TypeVar("ModelT", bound=Base)


class Repository(Generic[ModelT]):
    """Generic add/get for one model."""

    model: type[ModelT]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, instance: ModelT) -> None:
        self.session.add(instance)

    async def get(self, ident: Any) -> ModelT | None:
        return await self.session.get(self.model, ident)


class UserRepository(Repository[User]):
    """Users and their `tokens_used` counter."""

    model = User

    async def add_tokens(self, user_id: uuid.UUID, tokens: int) -> bool:
        """Grow `tokens_used`; False when the user does not exist. Locks the user's row."""
        result = await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(tokens_used=User.tokens_used + tokens, updated_at=User.updated_at)
            .returning(User.id)
        )
        return result.first() is not None

    async def get_by_email(self, email: str) -> User | None:
        return (await self.session.execute(select(User).where(User.email == email))).scalar_one_or_none()


class ConversationRepository(Repository[Conversation]):
    """Conversations and their `total_tokens` counter."""

    model = Conversation

    async def upsert_with_tokens(
        self,
        *,
        conversation_id: uuid.UUID,
        user_id: uuid.UUID,
        model: str,
        tokens: int,
        at: datetime,
        title: str | None = None,
        touch: bool = False,
    ) -> bool:
        """Create the conversation for `user_id` or grow the existing one's tokens.

        An existing conversation only gains a missing title and, when `touch`, a later
        `updated_at`. Returns False when it belongs to another user (nothing is changed).
        """
        table = Conversation.__table__
        stmt = insert(table).values(
            id=conversation_id,
            user_id=user_id,
            model=model,
            title=title,
            total_tokens=tokens,
            created_at=at,
            updated_at=at,
        )
        changes: dict[str, Any] = {
            "total_tokens": table.c.total_tokens + stmt.excluded.total_tokens,
            "title": func.coalesce(table.c.title, stmt.excluded.title),
        }
        if touch:
            changes["updated_at"] = func.greatest(table.c.updated_at, stmt.excluded.updated_at)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.id], set_=changes, where=table.c.user_id == stmt.excluded.user_id
        ).returning(table.c.id)
        return (await self.session.execute(stmt)).first() is not None


class MessageRepository(Repository[Message]):
    """Chat messages."""

    model = Message

    async def add_if_new(self, values: dict[str, Any]) -> bool:
        """Insert the message; False when its id is already stored."""
        stmt = insert(Message.__table__).values(values).on_conflict_do_nothing(index_elements=["id"])
        return (await self.session.execute(stmt.returning(Message.__table__.c.id))).first() is not None


class UsageRecordRepository(Repository[UsageRecord]):
    """Usage records from `usage.recorded`."""

    model = UsageRecord

    async def add_values(self, values: dict[str, Any]) -> None:
        await self.session.execute(insert(UsageRecord.__table__).values(values))


class ApiKeyRepository(Repository[ApiKey]):
    """API keys."""

    model = ApiKey

    async def touch(self, key_id: uuid.UUID, user_id: uuid.UUID, at: datetime) -> None:
        """Move `last_used_at` forward to `at` (never back) when the key is the user's."""
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.user_id == user_id)
            .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < at))
            .values(last_used_at=at)
        )


# Serialises concurrent transactions on the same idempotency key, so that the existence
# check below also sees a twin committed into yesterday's partition at midnight.
_LOCK_KEY = text("SELECT pg_advisory_xact_lock(1768, hashtext(CAST(:source AS text) || chr(31) || CAST(:event_id AS text)))")

_RECORD = text(
    """
    INSERT INTO processed_events (source, event_id, event_type)
    SELECT CAST(:source AS varchar), CAST(:event_id AS varchar), CAST(:event_type AS varchar)
    WHERE NOT EXISTS (
        SELECT 1 FROM processed_events
        WHERE source = CAST(:source AS varchar) AND event_id = CAST(:event_id AS varchar)
    ) AND NOT EXISTS (
        SELECT 1 FROM messages WHERE id = CAST(:message_id AS uuid)
    )
    ON CONFLICT DO NOTHING
    RETURNING 1
    """
).bindparams(bindparam("message_id", required=False, value=None))


class InboxRepository:
    """The inbox of processed events, keyed by (`source`, `id`)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self, *, source: str, event_id: str, event_type: str, message_id: uuid.UUID | None = None
    ) -> bool:
        """Record the event as processed; False when it (or its `message_id`) was seen before."""
        await self.session.execute(_LOCK_KEY, {"source": source, "event_id": event_id})
        result = await self.session.execute(
            _RECORD, {"source": source, "event_id": event_id, "event_type": event_type, "message_id": message_id}
        )
        return result.first() is not None
