"""Prices, budget periods and threshold crossings in the service layer (against in-memory fakes)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pytest

from tests.support.events import body, usage_recorded
from tests.unit.fakes import FakeBudget, FakeStore, FakeUnitOfWork
from worker.contract.decoding import Limits, decode_event
from worker.service.batch import apply_batch
from worker.service.budgets import Budgets, crossing_id, period_end, period_start
from worker.service.event_types import EVENT_TYPES
from worker.service.pricing import PriceBook, cost_at_price, cost_of
from worker.service.rows import Price

NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("period", "instant", "start", "end"),
    [
        ("day", "2026-12-04T23:59:59+00:00", date(2026, 12, 4), date(2026, 12, 5)),
        ("day", "2026-12-05T00:30:00+02:00", date(2026, 12, 4), date(2026, 12, 5)),
        ("month", "2026-12-31T23:59:59.999999+00:00", date(2026, 12, 1), date(2027, 1, 1)),
        ("month", "2027-01-01T00:59:00+01:00", date(2026, 12, 1), date(2027, 1, 1)),
        ("month", "2026-02-14T12:00:00+00:00", date(2026, 2, 1), date(2026, 3, 1)),
    ],
)
def test_a_period_is_the_calendar_day_or_month_in_utc(period, instant, start, end) -> None:
    assert period_start(period, at(instant)) == start
    assert period_end(period, start) == end


def test_the_lifetime_period_has_no_start_or_end() -> None:
    assert period_start("none", NOW) is None and period_end("none", None) is None


def test_crossing_ids_never_change() -> None:
    """Subscribers deduplicate by these ids: the derivation is part of the contract."""
    user = uuid.UUID("00000000-0000-4000-8000-000000000001")
    # The recipe docs/CONTRACT.md gives: UUIDv5 of "user/period/start/limit kind/limit/threshold".
    namespace = uuid.UUID("6f1c2a4e-9d0b-5c7e-8a31-2b4d6e8f0a17")
    assert crossing_id(user, "month", date(2026, 12, 1), "tokens", Decimal(1000), 80) == uuid.uuid5(
        namespace, f"{user}/month/2026-12-01/tokens/1000/80"
    ) == uuid.UUID("601ac286-81fd-52f0-a561-e9ca70fdc700")
    assert crossing_id(user, "none", None, "cost_usd", Decimal("2.5"), 100) == uuid.uuid5(
        namespace, f"{user}/none/lifetime/cost_usd/2.5/100"
    )
    # The same limit written with other digits is the same limit.
    assert crossing_id(user, "none", None, "cost_usd", Decimal("10.000000000000"), 100) == crossing_id(
        user, "none", None, "cost_usd", Decimal("10"), 100
    )


def test_a_price_applies_from_its_day_until_the_next_one() -> None:
    old = Price("m", date(2026, 1, 1), Decimal("0.001"), Decimal("0.002"))
    new = Price("m", date(2026, 12, 1), Decimal("0.003"), Decimal("0.004"))
    book = PriceBook([new, old])
    assert book.price("m", date(2025, 12, 31)) is None
    assert book.price("m", date(2026, 11, 30)) == old
    assert book.price("m", date(2026, 12, 1)) == new
    assert book.price("other", date(2026, 12, 1)) is None


def test_a_cost_is_rounded_half_even_to_twelve_places() -> None:
    price = Price("m", date(2026, 1, 1), Decimal("0.0000000000005"), Decimal("0.0000000000015"))
    assert cost_at_price(1, 0, price) == Decimal("0.000000000000")  # .5 rounds to even 0
    assert cost_at_price(0, 1, price) == Decimal("0.000000000002")  # 1.5 rounds to even 2
    assert cost_at_price(3, 1, price) == Decimal("0.000000000003")  # exactly 3


def test_a_sent_cost_wins_and_no_tokens_cost_nothing() -> None:
    book = PriceBook([Price("m", date(2026, 1, 1), Decimal("1"), Decimal("1"))])
    assert cost_of("m", 10, 10, Decimal("0.5"), NOW, book) == Decimal("0.5")
    assert cost_of("unknown", 0, 0, None, NOW, book) == 0
    assert cost_of("unknown", 1, 0, None, NOW, book) is None
    assert cost_of(None, 1, 0, None, NOW, book) is None
    assert cost_of("m", 2, 3, None, NOW, book) == Decimal(5)


def decoded(event: dict):
    return decode_event(body(event), None, NOW, Limits(), EVENT_TYPES)


async def apply(store: FakeStore, *events: dict, budgets: Budgets | None = None) -> None:
    results = await apply_batch([decoded(e) for e in events], FakeUnitOfWork(store), EVENT_TYPES,
                                budgets or Budgets())
    assert all(not isinstance(r, Exception) for r in results)


def user_with(store: FakeStore, **budget) -> uuid.UUID:
    user_id = uuid.uuid4()
    store.users[user_id] = 0
    store.budgets[user_id] = FakeBudget(**budget)
    return user_id


def outbox_data(store: FakeStore) -> list[dict]:
    return [orjson.loads(row.payload_json)["data"] for row in store.outbox]


async def test_a_jump_across_two_thresholds_is_one_event_listing_both() -> None:
    store = FakeStore()
    user = user_with(store, tokens_limit=1000)
    await apply(store, usage_recorded(user, prompt_tokens=700))
    assert store.outbox == []
    await apply(store, usage_recorded(user, prompt_tokens=350))
    [row] = store.outbox
    payload = orjson.loads(row.payload_json)
    assert payload["type"] == "quota.threshold_crossed" and payload["id"] == row.event_id
    assert row.event_id == str(crossing_id(user, "none", None, "tokens", Decimal(1000), 100))
    assert payload["data"]["thresholds"] == [80, 100] and payload["data"]["usage"] == 1050
    assert {c.threshold for c in store.crossings.values()} == {80, 100}


async def test_a_threshold_is_reported_once_and_a_raised_limit_rearms_it() -> None:
    store = FakeStore()
    user = user_with(store, tokens_limit=100)
    await apply(store, usage_recorded(user, prompt_tokens=85))
    await apply(store, usage_recorded(user, prompt_tokens=5))
    assert [d["thresholds"] for d in outbox_data(store)] == [[80]]
    store.budgets[user].tokens_limit = 110
    await apply(store, usage_recorded(user, prompt_tokens=1))
    assert [d["thresholds"] for d in outbox_data(store)] == [[80], [80]]
    assert outbox_data(store)[1]["limit"] == 110


async def test_each_month_has_its_own_usage_and_thresholds() -> None:
    store = FakeStore()
    user = user_with(store, tokens_limit=100, budget_period="month")
    november = usage_recorded(user, prompt_tokens=90)
    november["time"] = "2026-11-30T23:00:00-01:00"  # already December in UTC
    december = usage_recorded(user, prompt_tokens=50)
    december["time"] = "2026-12-02T00:00:00Z"
    earlier = usage_recorded(user, prompt_tokens=30)
    earlier["time"] = "2026-11-15T00:00:00Z"
    await apply(store, november, december, earlier)
    assert {k[2]: v[0] for k, v in store.periods.items()} == {date(2026, 12, 1): 140, date(2026, 11, 1): 30}
    assert {(c.period_start, c.threshold) for c in store.crossings.values()} == {
        (date(2026, 12, 1), 80), (date(2026, 12, 1), 100),
    }
    assert store.users[user] == 170


async def test_a_cost_limit_has_thresholds_of_its_own() -> None:
    store = FakeStore()
    user = user_with(store, tokens_limit=10**9, cost_limit_usd=Decimal("1.00"))
    await apply(store, usage_recorded(user, prompt_tokens=1, cost_usd="0.85"))
    [data] = outbox_data(store)
    assert data["limit_kind"] == "cost_usd" and data["usage"] == "0.85" and data["limit"] == "1"
    assert store.costs[user] == Decimal("0.85")


async def test_tiers_have_their_thresholds_and_others_take_the_default() -> None:
    store = FakeStore()
    pro = user_with(store, tokens_limit=100, tier="pro")
    free = user_with(store, tokens_limit=100, tier="free")
    budgets = Budgets({"default": (100,), "pro": (50,)})
    await apply(store, usage_recorded(pro, prompt_tokens=60), usage_recorded(free, prompt_tokens=60), budgets=budgets)
    assert [(d["user_id"], d["thresholds"]) for d in outbox_data(store)] == [(str(pro), [50])]


async def test_events_without_a_price_store_a_null_cost_and_are_counted() -> None:
    store = FakeStore(prices=[Price("known", date(2026, 1, 1), Decimal("0.001"), Decimal("0.002"))])
    user = user_with(store)
    heard: list[tuple[int, int]] = []

    class Observer:
        def committed(self, unpriced: int, threshold_events: int) -> None:
            heard.append((unpriced, threshold_events))

    await apply(store, usage_recorded(user, model="known", prompt_tokens=10, completion_tokens=1),
                usage_recorded(user, model="unknown", prompt_tokens=10), budgets=Budgets(observer=Observer()))
    assert sorted((r["model"], r["cost_usd"]) for r in store.usage_records) == [
        ("known", Decimal("0.012000000000")), ("unknown", None),
    ]
    assert store.costs[user] == Decimal("0.012") and heard == [(1, 0)]


async def test_without_announcing_thresholds_are_recorded_and_no_event_is_written() -> None:
    store = FakeStore()
    user = user_with(store, tokens_limit=100)
    await apply(store, usage_recorded(user, prompt_tokens=100), budgets=Budgets(announce=False))
    assert {c.threshold for c in store.crossings.values()} == {80, 100}
    assert store.outbox == []


async def test_a_user_created_again_under_the_same_id_has_its_thresholds_reported_again() -> None:
    store = FakeStore()
    user = user_with(store, tokens_limit=100)
    budgets = Budgets()
    await apply(store, usage_recorded(user, prompt_tokens=100), budgets=budgets)
    assert len(store.outbox) == 1
    # Deleted (its crossings cascade) and created again: the same id, another user.
    store.crossings.clear()
    store.users[user] = 0
    store.budgets[user] = FakeBudget(tokens_limit=100, created_at=NOW)
    await apply(store, usage_recorded(user, prompt_tokens=100), budgets=budgets)
    assert len(store.outbox) == 2
