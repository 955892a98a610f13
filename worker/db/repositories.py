"""Repositories: set-based reads and writes through the Unit of Work's session; they never commit.

Every statement takes whole batches as arrays (`unnest`), so its text, and its prepared
plan, is the same for one event or five hundred. Counters grow with one
`UPDATE … SET x = x + n` per row, never read-modify-write in Python. Rows are locked in
one fixed order — idempotency keys, then users, then conversations, each sorted — so
concurrent workers can wait on each other but never deadlock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from worker.db.models import ApiKey, Base, Conversation, Message, UsageRecord, User
from worker.service.rows import ConversationDelta, EventKey, MessageRow, NewConversation, UsageRow

ModelT = TypeVar("ModelT", bound=Base)
# Namespace of the idempotency-key advisory locks (the first half of the two-int key).
INBOX_LOCK_NAMESPACE = 1768


class Repository(Generic[ModelT]):
    """Generic add/get for one model."""

    model: type[ModelT]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, instance: ModelT) -> None:
        self.session.add(instance)

    async def get(self, ident: Any) -> ModelT | None:
        return await self.session.get(self.model, ident)

    async def _rows(self, sql: Any, params: dict[str, Any]) -> list[Any]:
        return list((await self.session.execute(sql, params)).all())


# unnest() yields the array in order, so the locks are taken in the (sorted) order given.
_LOCK_KEYS = text("SELECT pg_advisory_xact_lock(:ns, h) FROM unnest(CAST(:hashes AS int[])) AS h")
_LOCK_USERS = text(
    "SELECT id FROM users WHERE id = ANY(CAST(:user_ids AS uuid[])) ORDER BY id FOR NO KEY UPDATE"
)
_ADD_USER_TOKENS = text(
    """
    UPDATE users u SET tokens_used = u.tokens_used + d.tokens
    FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS bigint[])) AS d(id, tokens)
    WHERE u.id = d.id
    """
)


class UserRepository(Repository[User]):
    """Users and their `tokens_used` counter."""

    model = User

    async def lock(self, user_ids: Sequence[uuid.UUID], key_hashes: Sequence[int]) -> set[uuid.UUID]:
        """Lock the idempotency keys, then the users' rows, both in sorted order; return the users that exist.

        NOTE: the key locks make a twin of an event wait until this transaction ends, so the
        inbox check that follows also sees a twin committed into another day's partition.
        """
        await self.session.execute(_LOCK_KEYS, {"hashes": sorted(set(key_hashes)), "ns": INBOX_LOCK_NAMESPACE})
        rows = await self._rows(_LOCK_USERS, {"user_ids": sorted(set(user_ids))})
        return {row[0] for row in rows}

    async def add_tokens(self, tokens_by_user: dict[uuid.UUID, int]) -> None:
        """Grow `tokens_used` of users whose rows this transaction has locked."""
        grow = {user: n for user, n in tokens_by_user.items() if n}
        if grow:
            await self.session.execute(_ADD_USER_TOKENS, {"ids": list(grow), "tokens": list(grow.values())})

    async def get_by_email(self, email: str) -> User | None:
        return (await self.session.execute(select(User).where(User.email == email))).scalar_one_or_none()


_LOCK_CONVERSATIONS = text(
    """
    SELECT id, user_id FROM conversations WHERE id = ANY(CAST(:ids AS uuid[]))
    ORDER BY id FOR NO KEY UPDATE
    """
)
_GROW_CONVERSATIONS = text(
    """
    UPDATE conversations c SET
        total_tokens = c.total_tokens + d.tokens,
        title = COALESCE(c.title, d.title),
        updated_at = GREATEST(c.updated_at, d.touch_at)
    FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS bigint[]), CAST(:titles AS varchar[]),
                CAST(:touch_at AS timestamptz[])) AS d(id, tokens, title, touch_at)
    WHERE c.id = d.id
    """
)
_CREATE_CONVERSATIONS = text(
    """
    INSERT INTO conversations (id, user_id, title, model, total_tokens, created_at, updated_at)
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:user_ids AS uuid[]), CAST(:titles AS varchar[]),
                         CAST(:models AS varchar[]), CAST(:tokens AS bigint[]),
                         CAST(:created_at AS timestamptz[]), CAST(:updated_at AS timestamptz[]))
    ORDER BY 1
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)


class ConversationRepository(Repository[Conversation]):
    """Conversations and their `total_tokens` counter."""

    model = Conversation

    async def lock_owners(self, conversation_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """Lock existing conversations in sorted order; return their owners."""
        if not conversation_ids:
            return {}
        rows = await self._rows(_LOCK_CONVERSATIONS, {"ids": sorted(conversation_ids)})
        return {row[0]: row[1] for row in rows}

    async def grow(self, deltas: Sequence[ConversationDelta]) -> None:
        """Add tokens, fill a missing title, move `updated_at` forward, on locked rows."""
        if deltas:
            await self.session.execute(
                _GROW_CONVERSATIONS,
                {
                    "ids": [d.id for d in deltas],
                    "tokens": [d.tokens for d in deltas],
                    "titles": [d.title for d in deltas],
                    "touch_at": [d.touch_at for d in deltas],
                },
            )

    async def create(self, conversations: Sequence[NewConversation]) -> set[uuid.UUID]:
        """Insert new conversations; return the ids inserted (another transaction may have won one)."""
        if not conversations:
            return set()
        rows = await self._rows(
            _CREATE_CONVERSATIONS,
            {
                "ids": [c.id for c in conversations],
                "user_ids": [c.user_id for c in conversations],
                "titles": [c.title for c in conversations],
                "models": [c.model for c in conversations],
                "tokens": [c.tokens for c in conversations],
                "created_at": [c.created_at for c in conversations],
                "updated_at": [c.updated_at for c in conversations],
            },
        )
        return {row[0] for row in rows}


_INSERT_MESSAGES = text(
    """
    INSERT INTO messages (id, conversation_id, role, content, model, prompt_tokens, completion_tokens,
                          metadata, created_at)
    SELECT d.id, d.conversation_id, d.role, d.content, d.model, d.prompt_tokens, d.completion_tokens,
           CAST(d.metadata AS jsonb), d.created_at
    FROM unnest(CAST(:ids AS uuid[]), CAST(:conversation_ids AS uuid[]), CAST(:roles AS varchar[]),
                CAST(:contents AS text[]), CAST(:models AS varchar[]), CAST(:prompt AS int[]),
                CAST(:completion AS int[]), CAST(:metadata AS text[]), CAST(:created_at AS timestamptz[]))
         AS d(id, conversation_id, role, content, model, prompt_tokens, completion_tokens, metadata, created_at)
    ORDER BY d.id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)


class MessageRepository(Repository[Message]):
    """Chat messages."""

    model = Message

    async def add_all(self, messages: Sequence[MessageRow]) -> set[uuid.UUID]:
        """Insert messages; return the ids inserted (a concurrent transaction may have stored one)."""
        if not messages:
            return set()
        rows = await self._rows(
            _INSERT_MESSAGES,
            {
                "ids": [m.id for m in messages],
                "conversation_ids": [m.conversation_id for m in messages],
                "roles": [m.role for m in messages],
                "contents": [m.content for m in messages],
                "models": [m.model for m in messages],
                "prompt": [m.prompt_tokens for m in messages],
                "completion": [m.completion_tokens for m in messages],
                "metadata": [None if m.metadata is None else orjson.dumps(m.metadata).decode() for m in messages],
                "created_at": [m.created_at for m in messages],
            },
        )
        return {row[0] for row in rows}


_INSERT_USAGE = text(
    """
    INSERT INTO usage_records (id, event_source, event_id, user_id, conversation_id, message_id, api_key_id,
                               model, prompt_tokens, completion_tokens, request_id, recorded_at)
    SELECT gen_random_uuid(), d.* FROM unnest(
        CAST(:sources AS varchar[]), CAST(:event_ids AS varchar[]), CAST(:user_ids AS uuid[]),
        CAST(:conversation_ids AS uuid[]), CAST(:message_ids AS uuid[]), CAST(:api_key_ids AS uuid[]),
        CAST(:models AS varchar[]), CAST(:prompt AS int[]), CAST(:completion AS int[]),
        CAST(:request_ids AS varchar[]), CAST(:recorded_at AS timestamptz[])) AS d
    """
)
_TOUCH_API_KEYS = text(
    """
    UPDATE api_keys k SET last_used_at = d.at
    FROM (SELECT id, user_id, max(at) AS at
          FROM unnest(CAST(:ids AS uuid[]), CAST(:user_ids AS uuid[]), CAST(:at AS timestamptz[])) AS t(id, user_id, at)
          GROUP BY id, user_id) AS d
    WHERE k.id = d.id AND k.user_id = d.user_id AND (k.last_used_at IS NULL OR k.last_used_at < d.at)
    """
)


class UsageRecordRepository(Repository[UsageRecord]):
    """Usage records from `usage.recorded`."""

    model = UsageRecord

    async def add_all(self, records: Sequence[UsageRow]) -> None:
        if records:
            await self.session.execute(
                _INSERT_USAGE,
                {
                    "sources": [r.source for r in records],
                    "event_ids": [r.event_id for r in records],
                    "user_ids": [r.user_id for r in records],
                    "conversation_ids": [r.conversation_id for r in records],
                    "message_ids": [r.message_id for r in records],
                    "api_key_ids": [r.api_key_id for r in records],
                    "models": [r.model for r in records],
                    "prompt": [r.prompt_tokens for r in records],
                    "completion": [r.completion_tokens for r in records],
                    "request_ids": [r.request_id for r in records],
                    "recorded_at": [r.recorded_at for r in records],
                },
            )


class ApiKeyRepository(Repository[ApiKey]):
    """API keys."""

    model = ApiKey

    async def touch(self, uses: Sequence[tuple[uuid.UUID, uuid.UUID, datetime]]) -> None:
        """Move `last_used_at` forward (never back) for (key, user, at) where the key is the user's."""
        if uses:
            ordered = sorted(uses)
            await self.session.execute(
                _TOUCH_API_KEYS,
                {"ids": [u[0] for u in ordered], "user_ids": [u[1] for u in ordered], "at": [u[2] for u in ordered]},
            )


_RECORD_NEW = text(
    """
    INSERT INTO processed_events (source, event_id, event_type)
    SELECT d.source, d.event_id, d.event_type
    FROM unnest(CAST(:sources AS varchar[]), CAST(:event_ids AS varchar[]), CAST(:types AS varchar[]),
                CAST(:message_ids AS uuid[])) AS d(source, event_id, event_type, message_id)
    WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.source = d.source AND p.event_id = d.event_id)
      AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.message_id)
    ON CONFLICT DO NOTHING
    RETURNING source, event_id
    """
)
_SEEN = text(
    """
    SELECT d.source, d.event_id
    FROM unnest(CAST(:sources AS varchar[]), CAST(:event_ids AS varchar[]), CAST(:message_ids AS uuid[]))
         AS d(source, event_id, message_id)
    WHERE EXISTS (SELECT 1 FROM processed_events p WHERE p.source = d.source AND p.event_id = d.event_id)
       OR EXISTS (SELECT 1 FROM messages m WHERE m.id = d.message_id)
    """
)


class InboxRepository:
    """The inbox of processed events, keyed by (`source`, `id`)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record_new(self, keys: Sequence[EventKey]) -> set[tuple[str, str]]:
        """Record events never seen (by key, or by `message_id`); return the keys recorded."""
        if not keys:
            return set()
        result = await self.session.execute(_RECORD_NEW, _key_params(keys, with_types=True))
        return {(row[0], row[1]) for row in result.all()}

    async def seen(self, keys: Sequence[EventKey]) -> set[tuple[str, str]]:
        """Which of these events were applied before (by key, or by `message_id`)."""
        if not keys:
            return set()
        result = await self.session.execute(_SEEN, _key_params(keys, with_types=False))
        return {(row[0], row[1]) for row in result.all()}


def _key_params(keys: Sequence[EventKey], *, with_types: bool) -> dict[str, Any]:
    params: dict[str, Any] = {
        "sources": [k.source for k in keys],
        "event_ids": [k.event_id for k in keys],
        "message_ids": [k.message_id for k in keys],
    }
    if with_types:
        params["types"] = [k.event_type for k in keys]
    return params
