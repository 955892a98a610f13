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

from worker.db.budgets import USER_LEDGER, current_period
from worker.db.transaction import Transaction

_API_KEY = "SELECT user_id, is_active, expires_at FROM api_keys WHERE key_hash = $1"
# A user's usage in the current budget period: the lifetime counters for `none`, else the period's
# `usage_periods` row (0 when absent). Joined on primary keys.
_PERIOD_USAGE = f"""
    LEFT JOIN LATERAL {current_period("u.budget_period")} ON true
    LEFT JOIN usage_periods up ON up.user_id = u.id AND up.period = u.budget_period AND up.period_start = p.start
    CROSS JOIN LATERAL (
        SELECT CASE WHEN u.budget_period = 'none' THEN u.tokens_used ELSE coalesce(up.tokens, 0) END,
               CASE WHEN u.budget_period = 'none' THEN u.cost_used ELSE coalesce(up.cost_usd, 0) END
    ) AS period_usage(tokens, cost)
"""
# The thresholds crossed in the current period for the limits as they are now (a changed limit
# re-arms them), through ix_quota_crossings_user_period.
_CROSSED = """
    LEFT JOIN LATERAL (
        SELECT array_agg(DISTINCT q.threshold ORDER BY q.threshold) FILTER (
                   WHERE q.limit_kind = 'tokens' AND q.limit_value = u.tokens_limit) AS tokens_crossed,
               array_agg(DISTINCT q.threshold ORDER BY q.threshold) FILTER (
                   WHERE q.limit_kind = 'cost_usd' AND q.limit_value = u.cost_limit_usd) AS cost_crossed
        FROM quota_crossings q
        WHERE q.user_id = u.id AND q.period = u.budget_period
          AND (q.period_start = p.start OR (p.start IS NULL AND q.period_start IS NULL))
    ) AS crossed ON true
"""
# Money is subtracted here, in NUMERIC: exact at any size (Python's Decimal rounds to 28 digits).
_QUOTA_COLUMNS = """
    u.id AS user_id, u.budget_period, p.start AS period_start, p."end" AS period_end,
    period_usage.tokens AS tokens_used, u.tokens_limit, greatest(u.tokens_limit - period_usage.tokens, 0) AS tokens_remaining,
    coalesce(crossed.tokens_crossed, '{}') AS tokens_crossed,
    period_usage.cost AS cost_used, u.cost_limit_usd, greatest(u.cost_limit_usd - period_usage.cost, 0) AS cost_remaining,
    coalesce(crossed.cost_crossed, '{}') AS cost_crossed
"""
_USER = f"""
    SELECT u.id, u.email, u.tier, u.tokens_used, u.tokens_limit, u.cost_used, u.cost_limit_usd, u.budget_period,
           u.created_at, greatest(u.tokens_limit - period_usage.tokens, 0) AS tokens_remaining
    FROM users u {_PERIOD_USAGE}
    WHERE u.id = $1
"""
_QUOTA = f"SELECT {_QUOTA_COLUMNS} FROM users u {_PERIOD_USAGE} {_CROSSED} WHERE u.id = $1"
# The key's user joined only when it is the user asked about: another user's quota reads as none.
_QUOTA_WITH_KEY = f"""
    SELECT k.is_active, k.expires_at, {_QUOTA_COLUMNS}
    FROM api_keys k LEFT JOIN users u ON u.id = k.user_id AND u.id = $2 {_PERIOD_USAGE} {_CROSSED}
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
# The ledger is what `users.tokens_used` and `cost_used` sum; days and months are UTC. ROLLUP adds
# the total (`key` NULL), summed in NUMERIC, exactly. A NULL cost (no price applied) counts as 0.
_USAGE = f"""
    SELECT {{key}} AS key, GROUPING({{key}}) = 1 AS total,
           coalesce(sum(prompt), 0)::bigint AS prompt_tokens, coalesce(sum(completion), 0)::bigint AS completion_tokens,
           coalesce(sum(cost), 0) AS cost_usd, count(*) FILTER (WHERE cost IS NULL) AS unpriced_events,
           count(*) AS records
    FROM ({USER_LEDGER}) AS ledger GROUP BY ROLLUP ({{key}}) ORDER BY 2, 1
"""
_DAY = "(at AT TIME ZONE 'UTC')::date::text"
_USAGE_BY = {
    "day": _USAGE.format(key=_DAY),
    "month": _USAGE.format(key="to_char(at AT TIME ZONE 'UTC', 'YYYY-MM')"),
    "model": _USAGE.format(key="model"),
    # The groups of group_by=period, by the user's own period kind: keyed by the period's first day.
    "period:day": _USAGE.format(key=_DAY),
    "period:month": _USAGE.format(key="date_trunc('month', at AT TIME ZONE 'UTC')::date::text"),
    "period:none": _USAGE.format(key="'lifetime'::text"),
}
_BUDGET_PERIOD = "SELECT budget_period FROM users WHERE id = $1"
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
        """The key's state and, if the key is that user's, the user's quota (else `user_id` None)."""
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

    async def budget_period(self, user_id: uuid.UUID) -> str | None:
        row = await self._one(_BUDGET_PERIOD, user_id)
        return row["budget_period"] if row else None

    async def usage(
        self, user_id: uuid.UUID, start: datetime | None, end: datetime | None, group_by: str
    ) -> list[dict[str, Any]]:
        """One row per group in key order, then the total (`total` true; always there, zeros when empty).
        `group_by`: day, month, model, or period:<kind> (period:day, period:month, period:none)."""
        return await self._all(_USAGE_BY[group_by], user_id, start, end)

    async def search(
        self, user_id: uuid.UUID, query: str, after: tuple[float, uuid.UUID] | None, limit: int
    ) -> list[dict[str, Any]]:
        rank, last = after or (None, None)
        return await self._all(_SEARCH, user_id, query, rank, last, limit)
