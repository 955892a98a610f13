"""The price table (`model_prices`): a file's prices upserted in one set-based statement, and listed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.db.transaction import Transaction
from worker.service.rows import Price

# One statement for the whole file, sorted by the key so two loads lock rows in one order.
_UPSERT = """
    INSERT INTO model_prices (model, valid_from, input_cost_per_token, output_cost_per_token)
    SELECT * FROM unnest($1::varchar[], $2::date[], $3::numeric[], $4::numeric[])
    ORDER BY 1, 2
    ON CONFLICT (model, valid_from) DO UPDATE SET
        input_cost_per_token = EXCLUDED.input_cost_per_token,
        output_cost_per_token = EXCLUDED.output_cost_per_token,
        loaded_at = now()
    RETURNING (xmax = 0) AS inserted
"""
_LIST = """
    SELECT model, valid_from, input_cost_per_token, output_cost_per_token, loaded_at FROM model_prices
    WHERE $1::varchar IS NULL OR model = $1
    ORDER BY model, valid_from
"""


async def upsert_prices(sql: Transaction, prices: Sequence[Price]) -> tuple[int, int]:
    """Insert the prices, replacing a row of the same (model, valid_from); returns (inserted, updated)."""
    if not prices:
        return 0, 0
    rows = await sql.fetch(
        _UPSERT,
        [p.model for p in prices],
        [p.valid_from for p in prices],
        [p.input_cost_per_token for p in prices],
        [p.output_cost_per_token for p in prices],
    )
    inserted = sum(1 for row in rows if row[0])
    return inserted, len(rows) - inserted


async def list_prices(sql: Transaction, model: str | None = None) -> list[Any]:
    """Every price row (of one model when given), by model and day."""
    return list(await sql.fetch(_LIST, model))
