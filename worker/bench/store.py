"""The bench's own queries on its private database: seed users, reset, watch progress."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from decimal import Decimal

import asyncpg

# Every table an event writes to; emptied between runs so each run starts from the same state.
EVENT_TABLES = (
    "processed_events", "usage_records", "messages", "conversations", "users", "usage_periods", "quota_crossings",
    "outbox", "model_prices",
)
# Prices of the bench's models (per token), so that every event is priced from the table.
BENCH_PRICES = (("bench-model", "0.0000025", "0.00001"), ("bench-embed", "0.00000002", "0"))
# Per budget period: above a uniform user's usage in a run, so thresholds are reached now and then.
BENCH_COST_LIMIT = "1"


class BenchStore:
    """One asyncpg connection to the private database."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> BenchStore:
        self.conn = await asyncpg.connect(self.dsn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    @property
    def _c(self) -> asyncpg.Connection:
        assert self.conn is not None, "BenchStore used outside `async with`"
        return self.conn

    async def reset(self) -> None:
        """Empty every table events write to (the schema and the inbox partitions stay)."""
        await self._c.execute(f"TRUNCATE {', '.join(EVENT_TABLES)} CASCADE")

    async def create_users(self, user_ids: Iterable[str], budget_period: str = "none") -> None:
        """Users must exist before their events arrive: the worker counts tokens only for known users.
        They get `budget_period` and a cost limit; the bench's models get their prices."""
        records = [
            (uuid.UUID(u), f"{u}@bench.invalid", "!", budget_period, Decimal(BENCH_COST_LIMIT)) for u in user_ids
        ]
        await self._c.copy_records_to_table(
            "users", records=records, columns=["id", "email", "hashed_password", "budget_period", "cost_limit_usd"]
        )
        await self._c.executemany(
            "INSERT INTO model_prices (model, valid_from, input_cost_per_token, output_cost_per_token) "
            "VALUES ($1, DATE '2000-01-01', $2, $3)",
            [(model, Decimal(i), Decimal(o)) for model, i, o in BENCH_PRICES],
        )
        await self._c.execute("ANALYZE users")

    async def processed_count(self) -> int:
        return await self._c.fetchval("SELECT count(*) FROM processed_events")

    async def processed_times(self, prefix: str) -> dict[str, float]:
        """`processed_at` (epoch seconds) of every applied event whose id starts with `prefix`."""
        rows = await self._c.fetch(
            "SELECT event_id, extract(epoch FROM processed_at)::float8 AS at FROM processed_events "
            "WHERE starts_with(event_id, $1)",
            prefix,
        )
        return {row["event_id"]: row["at"] for row in rows}
