"""What an event costs: the cost it was sent with, else its tokens at its model's price on its day.

Prices are per token and valid from a UTC day until the model's next price; a cost is
rounded half-even to 12 digits after the point (the precision it is stored with). Without a
price (no model, or a model the table does not know) the cost is unknown: stored as NULL
and counted as zero, never a reason to refuse the event.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from worker.service.rows import Price

COST_PLACES = Decimal("1e-12")


def cost_at_price(prompt_tokens: int, completion_tokens: int, price: Price) -> Decimal:
    """The cost of these tokens at this price, rounded half-even to 12 digits after the point."""
    exact = prompt_tokens * price.input_cost_per_token + completion_tokens * price.output_cost_per_token
    return exact.quantize(COST_PLACES, rounding=ROUND_HALF_EVEN)


class PriceBook:
    """The prices of some models, by model, each list sorted by `valid_from`."""

    def __init__(self, prices: Iterable[Price]) -> None:
        self._by_model: dict[str, list[Price]] = {}
        for price in sorted(prices, key=lambda p: (p.model, p.valid_from)):
            self._by_model.setdefault(price.model, []).append(price)
        self._starts = {model: [p.valid_from for p in rows] for model, rows in self._by_model.items()}

    def price(self, model: str, day: date) -> Price | None:
        """The price of `model` valid on `day`: its latest `valid_from` not after it."""
        starts = self._starts.get(model)
        if not starts:
            return None
        position = bisect.bisect_right(starts, day)
        return self._by_model[model][position - 1] if position else None


def utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def cost_of(
    model: str | None, prompt_tokens: int, completion_tokens: int, sent: Decimal | None, at: datetime, book: PriceBook
) -> Decimal | None:
    """The event's cost: as sent, else priced; zero for no tokens; None when no price applies."""
    if sent is not None:
        return sent
    if not prompt_tokens and not completion_tokens:
        return Decimal(0)
    price = book.price(model, utc_day(at)) if model else None
    return cost_at_price(prompt_tokens, completion_tokens, price) if price else None


def models_to_price(charges: Sequence[tuple[str | None, int, int, Decimal | None]]) -> list[str]:
    """The models whose prices a batch needs: those of events with tokens and no cost of their own."""
    return sorted({m for m, p, c, sent in charges if m and sent is None and (p or c)})


