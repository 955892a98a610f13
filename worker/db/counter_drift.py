"""Counters against their rows: every token and cost counter recomputed from the stored rows, each drift reported.

`worker verify` runs it, and the ledger checker (`worker.testkit.ledger`) as one of its checks.
Set-based: one aggregate per source table, hash-joined to the counters, so the cost is
a few sequential scans however many users there are. Both checks read one snapshot
(REPEATABLE READ), and the worker changes rows and counters in one transaction, so a
running worker causes no false drift.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_TOKENS = "CAST(prompt_tokens AS bigint) + completion_tokens"
# A cost the worker could not price is stored as NULL and counted as 0.
_COST = "coalesce(cost_usd, 0)"

# `{conversations}` and `{usage}` narrow the scans to one user's rows when one user is asked for.
_USER_DRIFT = f"""
WITH message_tokens AS (
    SELECT c.user_id, sum(CAST(m.prompt_tokens AS bigint) + m.completion_tokens) AS tokens,
           sum(coalesce(m.cost_usd, 0)) AS cost
    FROM messages m JOIN conversations c ON c.id = m.conversation_id
    {{conversations}}
    GROUP BY c.user_id
), usage_tokens AS (
    SELECT user_id, sum({_TOKENS}) AS tokens, sum({_COST}) AS cost
    FROM usage_records
    {{usage}}
    GROUP BY user_id
)
SELECT u.id, u.tokens_used AS actual,
       CAST(coalesce(mt.tokens, 0) + coalesce(ut.tokens, 0) AS bigint) AS expected,
       u.cost_used AS actual_cost, coalesce(mt.cost, 0) + coalesce(ut.cost, 0) AS expected_cost
FROM users u
LEFT JOIN message_tokens mt ON mt.user_id = u.id
LEFT JOIN usage_tokens ut ON ut.user_id = u.id
WHERE (u.tokens_used <> coalesce(mt.tokens, 0) + coalesce(ut.tokens, 0)
       OR u.cost_used <> coalesce(mt.cost, 0) + coalesce(ut.cost, 0))
{{users}}
ORDER BY u.id
"""

_CONVERSATION_DRIFT = f"""
WITH message_tokens AS (
    SELECT m.conversation_id, sum(CAST(m.prompt_tokens AS bigint) + m.completion_tokens) AS tokens,
           sum(coalesce(m.cost_usd, 0)) AS cost
    FROM messages m
    {{messages}}
    GROUP BY m.conversation_id
), usage_tokens AS (
    SELECT conversation_id, sum({_TOKENS}) AS tokens, sum({_COST}) AS cost
    FROM usage_records
    WHERE conversation_id IS NOT NULL {{usage}}
    GROUP BY conversation_id
)
SELECT c.id, c.user_id, c.total_tokens AS actual,
       CAST(coalesce(mt.tokens, 0) + coalesce(ut.tokens, 0) AS bigint) AS expected,
       c.cost_used AS actual_cost, coalesce(mt.cost, 0) + coalesce(ut.cost, 0) AS expected_cost
FROM conversations c
LEFT JOIN message_tokens mt ON mt.conversation_id = c.id
LEFT JOIN usage_tokens ut ON ut.conversation_id = c.id
WHERE (c.total_tokens <> coalesce(mt.tokens, 0) + coalesce(ut.tokens, 0)
       OR c.cost_used <> coalesce(mt.cost, 0) + coalesce(ut.cost, 0))
{{conversations}}
ORDER BY c.id
"""


def _user_sql(one_user: bool) -> str:
    if not one_user:
        return _USER_DRIFT.format(conversations="", usage="", users="")
    return _USER_DRIFT.format(
        conversations="WHERE c.user_id = :user_id", usage="WHERE user_id = :user_id", users="AND u.id = :user_id"
    )


def _conversation_sql(one_user: bool) -> str:
    if not one_user:
        return _CONVERSATION_DRIFT.format(messages="", usage="", conversations="")
    mine = "SELECT id FROM conversations WHERE user_id = :user_id"
    return _CONVERSATION_DRIFT.format(
        messages=f"WHERE m.conversation_id IN ({mine})",
        usage=f"AND conversation_id IN ({mine})",
        conversations="AND c.user_id = :user_id",
    )


_COLUMNS = {
    ("user", "tokens"): "users.tokens_used",
    ("user", "cost"): "users.cost_used",
    ("conversation", "tokens"): "conversations.total_tokens",
    ("conversation", "cost"): "conversations.cost_used",
}


@dataclass(frozen=True)
class Drift:
    """A counter that differs from the sum of the rows it counts."""

    kind: str  # "user" or "conversation"
    id: uuid.UUID
    user_id: uuid.UUID
    expected: int | Decimal
    actual: int | Decimal
    counter: str = "tokens"  # "tokens" (tokens_used, total_tokens) or "cost" (cost_used)

    def describe(self) -> str:
        column = _COLUMNS[(self.kind, self.counter)]
        owner = "" if self.kind == "user" else f" (user {self.user_id})"
        off = self.actual - self.expected
        # Fixed-point: a cost off by its last digit reads +0.000000000001, not 1E-12.
        off_by = f"{off:+f}" if isinstance(off, Decimal) else f"{off:+d}"
        return (
            f"{self.kind} {self.id}{owner}: {column} is {self.actual}, rows add up to {self.expected}"
            f" (off by {off_by})"
        )


async def find_drift(engine: AsyncEngine, user_id: uuid.UUID | None = None) -> list[Drift]:
    """Every counter that disagrees with its rows (only `user_id`'s when given), users first."""
    params = {"user_id": user_id} if user_id is not None else {}
    one_user = user_id is not None
    async with engine.connect() as conn:
        # One snapshot for both checks; no statement timeout, a full check may scan a lot.
        conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        await conn.execute(text("SET LOCAL statement_timeout = 0"))
        users = (await conn.execute(text(_user_sql(one_user)), params)).all()
        conversations = (await conn.execute(text(_conversation_sql(one_user)), params)).all()
        await conn.rollback()
    found = []
    for kind, rows in (("user", users), ("conversation", conversations)):
        for row in rows:
            owner = row.id if kind == "user" else row.user_id
            if row.actual != row.expected:
                found.append(Drift(kind, row.id, owner, row.expected, row.actual))
            if row.actual_cost != row.expected_cost:
                found.append(Drift(kind, row.id, owner, row.expected_cost, row.actual_cost, "cost"))
    return found
