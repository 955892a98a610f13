"""A user's budget: the current period, the ledger usage is summed from, and changing a budget.

`change_budget` is the one implementation behind `PATCH /users/{user_id}` and `worker users
budget`. Periods are calendar days or months in UTC; "now" is the database's clock, so every
reader and writer agrees on which period is current.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from worker.db.transaction import Transaction

BUDGET_PERIODS = ("none", "day", "month")


def current_period(kind: str) -> str:
    """A FROM item `p(start, "end")`: the current UTC period of the period kind `kind` (an SQL
    expression), `end` exclusive; both NULL for `none` (the lifetime)."""
    return f"""(
        SELECT s.start, CASE {kind} WHEN 'day' THEN s.start + 1
                                    WHEN 'month' THEN (s.start + interval '1 month')::date END
        FROM (SELECT CASE {kind} WHEN 'day' THEN (now() AT TIME ZONE 'UTC')::date
                                 WHEN 'month' THEN date_trunc('month', now() AT TIME ZONE 'UTC')::date END) AS s(start)
    ) AS p(start, "end")"""


# Everything a user's counters sum, in [$2, $3) when given: messages (through their conversation's
# owner) and usage records. A cost is NULL when no price applied.
USER_LEDGER = """
    SELECT m.created_at AS at, coalesce(m.model, c.model) AS model, m.prompt_tokens::bigint AS prompt,
           m.completion_tokens::bigint AS completion, m.cost_usd AS cost
    FROM conversations c JOIN messages m ON m.conversation_id = c.id
    WHERE c.user_id = $1 AND ($2::timestamptz IS NULL OR m.created_at >= $2)
      AND ($3::timestamptz IS NULL OR m.created_at < $3)
    UNION ALL
    SELECT r.recorded_at, r.model, r.prompt_tokens, r.completion_tokens, r.cost_usd
    FROM usage_records r
    WHERE r.user_id = $1 AND ($2::timestamptz IS NULL OR r.recorded_at >= $2)
      AND ($3::timestamptz IS NULL OR r.recorded_at < $3)
"""

# FOR UPDATE first: the worker's batches lock the user's row before they touch `usage_periods`,
# so from here to the commit no batch grows this user's counters.
_LOCK = f"""
    SELECT u.budget_period, p.start, p."end", (p.start::timestamp AT TIME ZONE 'UTC'),
           (p."end"::timestamp AT TIME ZONE 'UTC')
    FROM users u CROSS JOIN {current_period("$2::varchar")}
    WHERE u.id = $1
    FOR UPDATE OF u
"""
_UPDATE = """
    UPDATE users SET
        tier = coalesce($2, tier),
        tokens_limit = coalesce($3, tokens_limit),
        cost_limit_usd = CASE WHEN $4 THEN $5 ELSE cost_limit_usd END,
        budget_period = coalesce($6, budget_period),
        updated_at = now()
    WHERE id = $1
"""
# The current period's row set to what the ledger holds for it (it may exist from an earlier
# time the user had this period; the worker did not grow it meanwhile).
_FILL_PERIOD = f"""
    INSERT INTO usage_periods (user_id, period, period_start, tokens, cost_usd)
    SELECT $1, $4, $5, coalesce(sum(prompt + completion), 0), coalesce(sum(cost), 0)
    FROM ({USER_LEDGER}) AS ledger
    ON CONFLICT (user_id, period, period_start) DO UPDATE SET tokens = EXCLUDED.tokens, cost_usd = EXCLUDED.cost_usd
    RETURNING tokens, cost_usd
"""


class NoSuchUser(LookupError):
    """The user whose budget was to change does not exist."""


class Keep(enum.Enum):
    """A field of a change left as it is (distinct from None, which clears `cost_limit_usd`)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class BudgetChange:
    """What to change; None keeps `tier`, `tokens_limit` and `budget_period`; `cost_limit_usd=None` clears it."""

    tier: str | None = None
    tokens_limit: int | None = None
    cost_limit_usd: Decimal | None | Keep = KEEP
    budget_period: str | None = None

    def __post_init__(self) -> None:
        if self.budget_period is not None and self.budget_period not in BUDGET_PERIODS:
            raise ValueError(f"budget_period must be one of {', '.join(BUDGET_PERIODS)}")


@dataclass(frozen=True)
class FilledPeriod:
    """The current period's usage, computed from the ledger when the user entered a period."""

    period: str
    start: date
    tokens: int
    cost_usd: Decimal


async def change_budget(sql: Transaction, user_id: uuid.UUID, change: BudgetChange) -> FilledPeriod | None:
    """Apply `change` in the caller's transaction (the caller commits); NoSuchUser if there is none.
    When the budget period changes to `day` or `month`, the current period's `usage_periods` row is
    filled from the ledger, so its usage is right from the start; that row is returned, else None."""
    new_period = change.budget_period
    locked = await sql.fetch(_LOCK, user_id, new_period)
    if not locked:
        raise NoSuchUser(user_id)
    old_period, start, _, start_at, end_at = locked[0]
    cost_given = change.cost_limit_usd is not KEEP
    await sql.fetch(
        _UPDATE, user_id, change.tier, change.tokens_limit, cost_given,
        change.cost_limit_usd if cost_given else None, new_period,
    )
    if new_period is None or new_period == old_period or start is None:
        return None
    tokens, cost = (await sql.fetch(_FILL_PERIOD, user_id, start_at, end_at, new_period, start))[0]
    return FilledPeriod(new_period, start, tokens, cost)
