"""The API's read repository: one fixed statement per question, on the Unit of Work's connection.

Like the worker's write path, these run on asyncpg directly, past SQLAlchemy's statement
machinery. A read opens no transaction of its own: each statement sees everything committed
before it (every acknowledged event), and the hot path (a key's lookup, then a quota) is two
indexed single-row reads, not four round trips with BEGIN and ROLLBACK. Once the ORM side of
the Unit of Work has begun a transaction (a write), these statements run inside it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from worker.db.transaction import Transaction

_API_KEY = "SELECT user_id, is_active, expires_at FROM api_keys WHERE key_hash = $1"
_USER = "SELECT id, email, tier, tokens_used, tokens_limit, created_at FROM users WHERE id = $1"
_QUOTA = "SELECT tokens_used, tokens_limit FROM users WHERE id = $1"
# The key's user joined only when it is the user asked about: another user's quota reads as none.
_QUOTA_WITH_KEY = """
    SELECT k.is_active, k.expires_at, u.tokens_used, u.tokens_limit
    FROM api_keys k LEFT JOIN users u ON u.id = k.user_id AND u.id = $2
    WHERE k.key_hash = $1
"""
_USER_EXISTS = "SELECT 1 FROM users WHERE id = $1"
_CONVERSATION = """
    SELECT id, user_id, title, model, total_tokens, created_at, updated_at FROM conversations WHERE id = $1
"""
# Newest first; the keyset (updated_at, id) matches ix_conversations_user_updated's order.
_CONVERSATIONS = """
    SELECT id, user_id, title, model, total_tokens, created_at, updated_at FROM conversations
    WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (updated_at, id) < ($2::timestamptz, $3::uuid))
    ORDER BY updated_at DESC, id DESC LIMIT $4
"""
_MESSAGES = """
    SELECT id, conversation_id, role, content, model, prompt_tokens, completion_tokens, created_at FROM messages
    WHERE conversation_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::uuid))
    ORDER BY created_at, id LIMIT $4
"""
_API_KEYS = """
    SELECT id, user_id, name, is_active, created_at, expires_at, last_used_at FROM api_keys
    WHERE user_id = $1 ORDER BY created_at, id
"""
_API_KEY_OWNER = "SELECT user_id FROM api_keys WHERE id = $1"
_REVOKE = "UPDATE api_keys SET is_active = false WHERE id = $1 RETURNING id"
# Tokens come from two sources, the same ones `users.tokens_used` sums: messages (through their
# conversation's owner) and usage records. Days are UTC (the API's sessions run in UTC).
_USAGE = """
    WITH ledger AS (
        SELECT m.created_at AS at, coalesce(m.model, c.model) AS model,
               m.prompt_tokens::bigint AS prompt, m.completion_tokens::bigint AS completion
        FROM conversations c JOIN messages m ON m.conversation_id = c.id
        WHERE c.user_id = $1 AND ($2::timestamptz IS NULL OR m.created_at >= $2)
          AND ($3::timestamptz IS NULL OR m.created_at < $3)
        UNION ALL
        SELECT r.recorded_at, r.model, r.prompt_tokens, r.completion_tokens
        FROM usage_records r
        WHERE r.user_id = $1 AND ($2::timestamptz IS NULL OR r.recorded_at >= $2)
          AND ($3::timestamptz IS NULL OR r.recorded_at < $3)
    )
    SELECT {key} AS key, sum(prompt)::bigint AS prompt_tokens, sum(completion)::bigint AS completion_tokens,
           count(*) AS records
    FROM ledger GROUP BY 1 ORDER BY 1
"""
_USAGE_BY = {"day": _USAGE.format(key="(at AT TIME ZONE 'UTC')::date::text"), "model": _USAGE.format(key="model")}
# Ranked by ts_rank, then id; the keyset is (rank, id) in that order.
_SEARCH = """
    WITH hits AS (
        SELECT m.id, m.conversation_id, m.role, m.content, m.model, m.prompt_tokens, m.completion_tokens,
               m.created_at, ts_rank(m.content_search, q.query) AS rank
        FROM websearch_to_tsquery('simple', $2) AS q(query)
        JOIN messages m ON m.content_search @@ q.query
        JOIN conversations c ON c.id = m.conversation_id
        WHERE c.user_id = $1
    )
    SELECT * FROM hits
    WHERE $3::real IS NULL OR (rank, id) < ($3::real, $4::uuid)
    ORDER BY rank DESC, id DESC LIMIT $5
"""


class ApiRepository:
    """The API's queries: reads, and the one write that is a single statement (revoking a key)."""

    def __init__(self, sql: Transaction) -> None:
        self.sql = sql
        self._driver: Any = None

    async def _all(self, query: str, *args: Any) -> list[dict[str, Any]]:
        if self._driver is None:
            self._driver = (await self.sql.connection.get_raw_connection()).driver_connection
        return [dict(row) for row in await self._driver.fetch(query, *args)]

    async def _one(self, query: str, *args: Any) -> dict[str, Any] | None:
        rows = await self._all(query, *args)
        return rows[0] if rows else None

    async def api_key(self, hashed: str) -> Any | None:
        return await self._one(_API_KEY, hashed)

    async def user(self, user_id: uuid.UUID) -> Any | None:
        return await self._one(_USER, user_id)

    async def quota(self, user_id: uuid.UUID) -> Any | None:
        return await self._one(_QUOTA, user_id)

    async def quota_with_key(self, hashed: str, user_id: uuid.UUID) -> dict[str, Any] | None:
        """The key's state and, if the key is that user's, the user's counters (else None counters)."""
        return await self._one(_QUOTA_WITH_KEY, hashed, user_id)

    async def user_exists(self, user_id: uuid.UUID) -> bool:
        return await self._one(_USER_EXISTS, user_id) is not None

    async def conversation(self, conversation_id: uuid.UUID) -> Any | None:
        return await self._one(_CONVERSATION, conversation_id)

    async def conversations(
        self, user_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[dict[str, Any]]:
        at, last = after or (None, None)
        return await self._all(_CONVERSATIONS, user_id, at, last, limit)

    async def messages(
        self, conversation_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[dict[str, Any]]:
        at, last = after or (None, None)
        return await self._all(_MESSAGES, conversation_id, at, last, limit)

    async def api_keys(self, user_id: uuid.UUID) -> list[dict[str, Any]]:
        return await self._all(_API_KEYS, user_id)

    async def api_key_owner(self, key_id: uuid.UUID) -> uuid.UUID | None:
        row = await self._one(_API_KEY_OWNER, key_id)
        return row["user_id"] if row else None

    async def revoke(self, key_id: uuid.UUID) -> bool:
        return await self._one(_REVOKE, key_id) is not None

    async def usage(
        self, user_id: uuid.UUID, start: datetime | None, end: datetime | None, group_by: str
    ) -> list[dict[str, Any]]:
        return await self._all(_USAGE_BY[group_by], user_id, start, end)

    async def search(
        self, user_id: uuid.UUID, query: str, after: tuple[float, uuid.UUID] | None, limit: int
    ) -> list[dict[str, Any]]:
        rank, last = after or (None, None)
        return await self._all(_SEARCH, user_id, query, rank, last, limit)
