"""Repositories: set-based reads and writes in the Unit of Work's transaction; they never commit.

Every statement takes whole batches as arrays (`unnest`), so its text, and its prepared
plan, is the same for one event or five hundred; it runs on asyncpg directly (see
`worker.db.transaction`). Counters grow with one `UPDATE … SET x = x + n` per row, never
read-modify-write in Python. The generic part (`add`) is the ORM's, on the same
transaction.

Locks, in one fixed order so concurrent workers can wait on each other but never deadlock:
idempotency keys (advisory, sorted) first; the counter rows, conversations then users, each
sorted (`FOR NO KEY UPDATE`, each table locked and grown in one statement), only at the
end of the transaction, so the locks other batches wait for are held for two statements
and the commit, not the whole batch. The checks before (does the user exist, whose
conversation is it) read without locking: a row locked at the end that is gone by then is
reported missing, and the batch tries again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Generic, TypeVar

from worker.db.models import ApiKey, Base, Conversation, Message, UsageRecord, User
from worker.db.transaction import Transaction
from worker.service.rows import (
    ConversationDelta,
    Crossing,
    EventKey,
    MessageRow,
    NewConversation,
    OutboxRow,
    PeriodDelta,
    PeriodUsage,
    Price,
    Usage,
    UsageRow,
    UserBudget,
)

ModelT = TypeVar("ModelT", bound=Base)
# Namespace of the idempotency-key advisory locks (the first half of the two-int key).
INBOX_LOCK_NAMESPACE = 1768


def _text(value: Decimal | None) -> str | None:
    """A decimal as the text PostgreSQL parses into numeric: costs travel as `text[]` and are cast in
    SQL, because asyncpg's binary numeric encoder costs twice the CPU of `str` (about 1.3 against
    0.6 µs a value, four values an event)."""
    return None if value is None else str(value)


class Repository(Generic[ModelT]):
    """Generic add for one model (ORM), plus the transaction's statement runner."""

    model: type[ModelT]

    def __init__(self, sql: Transaction) -> None:
        self.sql = sql

    def add(self, instance: ModelT) -> None:
        self.sql.session.add(instance)


_EXISTING_USERS = "SELECT id FROM users WHERE id = ANY($1::uuid[])"
# Lock and grow in one statement (one round trip while other batches wait for these rows).
# The MATERIALIZED CTE is scanned once, and it locks each row as its sort hands it on, so the
# rows are locked in id order whatever join the planner picks for the UPDATE; every row the
# UPDATE touches comes through it, so none is locked out of that order.
_ADD_USER_USAGE = """
    WITH locked AS MATERIALIZED (
        SELECT id FROM users WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
    )
    UPDATE users u SET tokens_used = u.tokens_used + d.tokens, cost_used = u.cost_used + CAST(d.cost AS numeric)
    FROM locked l JOIN unnest($1::uuid[], $2::bigint[], $3::text[]) AS d(id, tokens, cost) ON d.id = l.id
    WHERE u.id = l.id
    RETURNING u.id, u.tokens_used, u.cost_used, u.tier, u.budget_period, u.tokens_limit, u.cost_limit_usd,
              u.created_at
"""


class UserRepository(Repository[User]):
    """Users, their `tokens_used` and `cost_used` counters, and their budgets."""

    model = User

    async def existing(self, user_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these users exist."""
        if not user_ids:
            return set()
        return {row[0] for row in await self.sql.fetch(_EXISTING_USERS, list(set(user_ids)))}

    async def add_usage(self, usage_by_user: dict[uuid.UUID, Usage]) -> dict[uuid.UUID, UserBudget]:
        """Lock the users' rows in sorted order (the statement sorts), then grow their `tokens_used` and
        `cost_used`; return the users locked, as grown, with their budgets."""
        grow = {user: usage for user, usage in usage_by_user.items() if usage}
        if not grow:
            return {}
        rows = await self.sql.fetch(
            _ADD_USER_USAGE, list(grow), [u.tokens for u in grow.values()], [str(u.cost) for u in grow.values()]
        )
        return {row[0]: UserBudget(*row) for row in rows}


_OWNERS = "SELECT id, user_id FROM conversations WHERE id = ANY($1::uuid[])"
# Lock and grow in one statement, as `_ADD_USER_TOKENS` does.
_GROW_CONVERSATIONS = """
    WITH locked AS MATERIALIZED (
        SELECT id FROM conversations WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
    )
    UPDATE conversations c SET
        total_tokens = c.total_tokens + d.tokens,
        cost_used = c.cost_used + CAST(d.cost AS numeric),
        title = COALESCE(c.title, d.title),
        updated_at = GREATEST(c.updated_at, d.touch_at)
    FROM locked l
    JOIN unnest($1::uuid[], $2::bigint[], $3::varchar[], $4::timestamptz[], $5::text[])
         AS d(id, tokens, title, touch_at, cost)
      ON d.id = l.id
    WHERE c.id = l.id
    RETURNING c.id
"""
_CREATE_CONVERSATIONS = """
    INSERT INTO conversations (id, user_id, title, model, total_tokens, created_at, updated_at, cost_used)
    SELECT d.id, d.user_id, d.title, d.model, d.tokens, d.created_at, d.updated_at, CAST(d.cost AS numeric)
    FROM unnest($1::uuid[], $2::uuid[], $3::varchar[], $4::varchar[], $5::bigint[],
                $6::timestamptz[], $7::timestamptz[], $8::text[])
         AS d(id, user_id, title, model, tokens, created_at, updated_at, cost)
    ORDER BY d.id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""


class ConversationRepository(Repository[Conversation]):
    """Conversations and their `total_tokens` counter."""

    model = Conversation

    async def owners(self, conversation_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """The owners of the conversations that exist (an owner never changes, so no lock)."""
        if not conversation_ids:
            return {}
        rows = await self.sql.fetch(_OWNERS, list(conversation_ids))
        return {row[0]: row[1] for row in rows}

    async def grow(self, deltas: Sequence[ConversationDelta]) -> set[uuid.UUID]:
        """Lock the rows in sorted order, then add tokens, fill a missing title, move `updated_at` forward;
        return the conversations locked."""
        if not deltas:
            return set()
        rows = await self.sql.fetch(
            _GROW_CONVERSATIONS,
            [d.id for d in deltas],
            [d.tokens for d in deltas],
            [d.title for d in deltas],
            [d.touch_at for d in deltas],
            [str(d.cost) for d in deltas],
        )
        return {row[0] for row in rows}

    async def create(self, conversations: Sequence[NewConversation]) -> set[uuid.UUID]:
        """Insert new conversations; return the ids inserted (another transaction may have won one)."""
        if not conversations:
            return set()
        rows = await self.sql.fetch(
            _CREATE_CONVERSATIONS,
            [c.id for c in conversations],
            [c.user_id for c in conversations],
            [c.title for c in conversations],
            [c.model for c in conversations],
            [c.tokens for c in conversations],
            [c.created_at for c in conversations],
            [c.updated_at for c in conversations],
            [str(c.cost) for c in conversations],
        )
        return {row[0] for row in rows}


_INSERT_MESSAGES = """
    INSERT INTO messages (id, conversation_id, role, content, model, prompt_tokens, completion_tokens,
                          metadata, created_at, cost_usd)
    SELECT d.id, d.conversation_id, d.role, d.content, d.model, d.prompt_tokens, d.completion_tokens,
           CAST(d.metadata AS jsonb), d.created_at, CAST(d.cost_usd AS numeric)
    FROM unnest($1::uuid[], $2::uuid[], $3::varchar[], $4::text[], $5::varchar[], $6::int[], $7::int[],
                $8::text[], $9::timestamptz[], $10::text[])
         AS d(id, conversation_id, role, content, model, prompt_tokens, completion_tokens, metadata, created_at,
              cost_usd)
    ORDER BY d.id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""


class MessageRepository(Repository[Message]):
    """Chat messages."""

    model = Message

    async def add_all(self, messages: Sequence[MessageRow]) -> set[uuid.UUID]:
        """Insert messages; return the ids inserted (a concurrent transaction may have stored one)."""
        if not messages:
            return set()
        rows = await self.sql.fetch(
            _INSERT_MESSAGES,
            [m.id for m in messages],
            [m.conversation_id for m in messages],
            [m.role for m in messages],
            [m.content for m in messages],
            [m.model for m in messages],
            [m.prompt_tokens for m in messages],
            [m.completion_tokens for m in messages],
            [m.metadata_json for m in messages],
            [m.created_at for m in messages],
            [_text(m.cost_usd) for m in messages],
        )
        return {row[0] for row in rows}


_INSERT_USAGE = """
    INSERT INTO usage_records (id, event_source, event_id, user_id, conversation_id, message_id, api_key_id,
                               model, prompt_tokens, completion_tokens, request_id, recorded_at, cost_usd)
    SELECT gen_random_uuid(), d.source, d.event_id, d.user_id, d.conversation_id, d.message_id, d.api_key_id,
           d.model, d.prompt_tokens, d.completion_tokens, d.request_id, d.recorded_at, CAST(d.cost_usd AS numeric)
    FROM unnest($1::varchar[], $2::varchar[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[],
                $7::varchar[], $8::int[], $9::int[], $10::varchar[], $11::timestamptz[], $12::text[])
         AS d(source, event_id, user_id, conversation_id, message_id, api_key_id, model, prompt_tokens,
              completion_tokens, request_id, recorded_at, cost_usd)
"""
_TOUCH_API_KEYS = """
    UPDATE api_keys k SET last_used_at = d.at
    FROM (SELECT id, user_id, max(at) AS at
          FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS t(id, user_id, at)
          GROUP BY id, user_id) AS d
    WHERE k.id = d.id AND k.user_id = d.user_id AND (k.last_used_at IS NULL OR k.last_used_at < d.at)
"""


class UsageRecordRepository(Repository[UsageRecord]):
    """Usage records from `usage.recorded`."""

    model = UsageRecord

    async def add_all(self, records: Sequence[UsageRow]) -> None:
        if records:
            await self.sql.fetch(
                _INSERT_USAGE,
                [r.source for r in records],
                [r.event_id for r in records],
                [r.user_id for r in records],
                [r.conversation_id for r in records],
                [r.message_id for r in records],
                [r.api_key_id for r in records],
                [r.model for r in records],
                [r.prompt_tokens for r in records],
                [r.completion_tokens for r in records],
                [r.request_id for r in records],
                [r.recorded_at for r in records],
                [_text(r.cost_usd) for r in records],
            )


class ApiKeyRepository(Repository[ApiKey]):
    """API keys."""

    model = ApiKey

    async def touch(self, uses: Sequence[tuple[uuid.UUID, uuid.UUID, datetime]]) -> None:
        """Move `last_used_at` forward (never back) for (key, user, at) where the key is the user's."""
        if uses:
            ordered = sorted(uses)
            await self.sql.fetch(
                _TOUCH_API_KEYS, [u[0] for u in ordered], [u[1] for u in ordered], [u[2] for u in ordered]
            )


_PRICES = """
    SELECT model, valid_from, input_cost_per_token, output_cost_per_token
    FROM model_prices WHERE model = ANY($1::varchar[])
"""


class PriceRepository:
    """The price table, read by the batches that need a price."""

    def __init__(self, sql: Transaction) -> None:
        self.sql = sql

    async def for_models(self, models: Sequence[str]) -> list[Price]:
        """Every price of these models, whatever its day (a model has a handful)."""
        if not models:
            return []
        return [Price(*row) for row in await self.sql.fetch(_PRICES, list(models))]


# Rows are only ever grown while their user's row is locked by the same transaction, so the
# order of their own locks does not matter; sorted all the same.
_GROW_PERIODS = """
    INSERT INTO usage_periods AS p (user_id, period, period_start, tokens, cost_usd)
    SELECT d.user_id, d.period, d.period_start, d.tokens, CAST(d.cost AS numeric)
    FROM unnest($1::uuid[], $2::varchar[], $3::date[], $4::bigint[], $5::text[])
         AS d(user_id, period, period_start, tokens, cost)
    ORDER BY 1, 2, 3
    ON CONFLICT (user_id, period, period_start) DO UPDATE
        SET tokens = p.tokens + EXCLUDED.tokens, cost_usd = p.cost_usd + EXCLUDED.cost_usd
    RETURNING p.user_id, p.period, p.period_start, p.tokens, p.cost_usd
"""


class UsagePeriodRepository:
    """Usage per user and budget period."""

    def __init__(self, sql: Transaction) -> None:
        self.sql = sql

    async def grow(self, deltas: Sequence[PeriodDelta]) -> list[PeriodUsage]:
        if not deltas:
            return []
        rows = await self.sql.fetch(
            _GROW_PERIODS,
            [d.user_id for d in deltas],
            [d.period for d in deltas],
            [d.period_start for d in deltas],
            [d.usage.tokens for d in deltas],
            [str(d.usage.cost) for d in deltas],
        )
        return [PeriodUsage(*row) for row in rows]


_RECORD_CROSSINGS = """
    INSERT INTO quota_crossings (event_id, user_id, period, period_start, limit_kind, limit_value, threshold, usage)
    SELECT d.event_id, d.user_id, d.period, d.period_start, d.limit_kind, CAST(d.limit_value AS numeric),
           d.threshold, CAST(d.usage AS numeric)
    FROM unnest($1::uuid[], $2::uuid[], $3::varchar[], $4::date[], $5::varchar[], $6::text[], $7::int[], $8::text[])
         AS d(event_id, user_id, period, period_start, limit_kind, limit_value, threshold, usage)
    ORDER BY 1
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
"""


class QuotaRepository:
    """The thresholds crossed, one row each, ever."""

    def __init__(self, sql: Transaction) -> None:
        self.sql = sql

    async def record(self, crossings: Sequence[Crossing]) -> set[uuid.UUID]:
        if not crossings:
            return set()
        rows = await self.sql.fetch(
            _RECORD_CROSSINGS,
            [c.event_id for c in crossings],
            [c.user_id for c in crossings],
            [c.period for c in crossings],
            [c.period_start for c in crossings],
            [c.limit_kind for c in crossings],
            [str(c.limit_value) for c in crossings],
            [c.threshold for c in crossings],
            [str(c.usage) for c in crossings],
        )
        return {row[0] for row in rows}


# WITH ORDINALITY keeps the given order in `seq`, the order the relay publishes a key's events in.
_ADD_OUTBOX = """
    INSERT INTO outbox (event_id, ordering_key, routing_key, payload)
    SELECT d.event_id, d.ordering_key, d.routing_key, CAST(d.payload AS jsonb)
    FROM unnest($1::varchar[], $2::uuid[], $3::varchar[], $4::text[]) WITH ORDINALITY
         AS d(event_id, ordering_key, routing_key, payload, n)
    ORDER BY d.n
    ON CONFLICT (event_id) DO NOTHING
"""


class OutboxRepository:
    """Events written in the transaction that caused them (the relay publishes them)."""

    def __init__(self, sql: Transaction) -> None:
        self.sql = sql

    async def add(self, rows: Sequence[OutboxRow]) -> None:
        if rows:
            await self.sql.fetch(
                _ADD_OUTBOX,
                [r.event_id for r in rows],
                [r.ordering_key for r in rows],
                [r.routing_key for r in rows],
                [r.payload_json for r in rows],
            )


# unnest() yields the array in order, so the locks are taken in the (sorted) order given; the
# aggregate makes it one result row, not one (void) row per key for the client to decode.
_LOCK_KEYS = "SELECT count(pg_advisory_xact_lock($1::int, h)) FROM unnest($2::int[]) AS h"
# `processed_on <= current_date + 1` leaves out the partitions made ahead of time (empty) but
# keeps tomorrow's: a transaction begun before midnight must see a twin committed after it.
_RECORD_NEW = """
    INSERT INTO processed_events (source, event_id, event_type)
    SELECT d.source, d.event_id, d.event_type
    FROM unnest($1::varchar[], $2::varchar[], $3::uuid[], $4::varchar[]) AS d(source, event_id, message_id, event_type)
    WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.source = d.source AND p.event_id = d.event_id
                      AND p.processed_on <= current_date + 1)
      AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.message_id)
    ON CONFLICT DO NOTHING
    RETURNING source, event_id
"""
_SEEN = """
    SELECT d.source, d.event_id
    FROM unnest($1::varchar[], $2::varchar[], $3::uuid[]) AS d(source, event_id, message_id)
    WHERE EXISTS (SELECT 1 FROM processed_events p WHERE p.source = d.source AND p.event_id = d.event_id)
       OR EXISTS (SELECT 1 FROM messages m WHERE m.id = d.message_id)
"""


class InboxRepository:
    """The inbox of processed events, keyed by (`source`, `id`)."""

    def __init__(self, sql: Transaction) -> None:
        self.sql = sql

    async def lock(self, keys: Sequence[EventKey]) -> None:
        """Take the events' idempotency-key locks (sorted), held until the transaction ends.

        NOTE: a twin of an event waits here until this transaction ends, so the inbox check
        that follows also sees a twin committed into another day's partition.
        """
        if keys:
            await self.sql.fetch(_LOCK_KEYS, INBOX_LOCK_NAMESPACE, sorted({k.lock_hash for k in keys}))

    async def record_new(self, keys: Sequence[EventKey]) -> set[tuple[str, str]]:
        """Record events never seen (by key, or by `message_id`); return the keys recorded."""
        if not keys:
            return set()
        rows = await self.sql.fetch(_RECORD_NEW, *_key_columns(keys), [k.event_type for k in keys])
        return {(row[0], row[1]) for row in rows}

    async def seen(self, keys: Sequence[EventKey]) -> set[tuple[str, str]]:
        """Which of these events were applied before (by key, or by `message_id`)."""
        if not keys:
            return set()
        rows = await self.sql.fetch(_SEEN, *_key_columns(keys))
        return {(row[0], row[1]) for row in rows}


def _key_columns(keys: Sequence[EventKey]) -> tuple[list[str], list[str], list[uuid.UUID | None]]:
    return [k.source for k in keys], [k.event_id for k in keys], [k.message_id for k in keys]
