"""Costs, budget periods and threshold events, through a real worker, PostgreSQL and RabbitMQ."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import aio_pika
import orjson
import pytest
from sqlalchemy import text

from tests.support.amqp import Gateway, bind_queue, queue_depth, take_all
from tests.support.config import make_settings
from tests.support.db import create_user, rows, scalar
from tests.support.events import body, message_created, usage_recorded
from tests.support.waiting import eventually
from worker.contract.names import QUOTA_THRESHOLD_CROSSED
from worker.runtime.app import start_worker, stop_worker
from worker.service.budgets import crossing_id

THRESHOLD_QUEUE = "test.quota.thresholds"


async def _set_budget(db, user_id: uuid.UUID, **columns: Any) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    async with db.begin() as conn:
        await conn.execute(text(f"UPDATE users SET {assignments} WHERE id = :id"), {"id": user_id, **columns})


async def _add_price(db, model: str, valid_from: date, input_price: str, output_price: str) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO model_prices (model, valid_from, input_cost_per_token, output_cost_per_token) "
                 "VALUES (:m, :d, :i, :o)"),
            {"m": model, "d": valid_from, "i": Decimal(input_price), "o": Decimal(output_price)},
        )


async def _bind_threshold_queue(amqp_url: str) -> None:
    await bind_queue(amqp_url, THRESHOLD_QUEUE, QUOTA_THRESHOLD_CROSSED)


async def _threshold_messages(amqp_url: str, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """The threshold events of this user on the bound queue (the database is shared by the
    session's tests, so a relay also publishes events other tests' workers left unsent)."""
    got = []
    for message in await take_all(amqp_url, THRESHOLD_QUEUE):
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == "application/cloudevents+json"
        event = orjson.loads(message.body)
        assert message.message_id == event["id"]
        got.append(event)
    return [event for event in got if event["data"]["user_id"] == str(user_id)]


def _at(event: dict[str, Any], time: str) -> dict[str, Any]:
    event["time"] = time
    return event


async def _applied(db, event_ids: list[str]) -> bool:
    count = await scalar(db, "SELECT count(*) FROM processed_events WHERE event_id = ANY(:ids)", ids=event_ids)
    return count == len(event_ids)


def _priced(prompt: int, completion: int, input_price: str, output_price: str) -> Decimal:
    exact = prompt * Decimal(input_price) + completion * Decimal(output_price)
    return exact.quantize(Decimal("1e-12"), rounding=ROUND_HALF_EVEN)


async def test_costs_equal_the_price_table_to_the_last_digit(db, worker, amqp_url) -> None:
    user_id = await create_user(db)
    model = f"priced-{uuid.uuid4().hex[:8]}"
    # Two prices: the second applies from December on; digits that need half-even rounding.
    await _add_price(db, model, date(2026, 1, 1), "0.0000025", "0.00001")
    await _add_price(db, model, date(2026, 12, 1), "0.000000123456789012345", "0.000000987654321098765")
    conversation = uuid.uuid4()
    november = _at(message_created(user_id, conversation_id=conversation, model=model,
                                   prompt_tokens=1234, completion_tokens=567), "2026-11-30T23:59:59Z")
    december = _at(message_created(user_id, conversation_id=conversation, model=model,
                                   prompt_tokens=1001, completion_tokens=333), "2026-12-01T00:00:00Z")
    usage = _at(usage_recorded(user_id, model=model, prompt_tokens=77, completion_tokens=5), "2026-12-02T10:00:00Z")
    events = [november, december, usage]
    async with Gateway(amqp_url) as gateway:
        for event in events:
            await gateway.publish(event)
    await eventually(lambda: _applied(db, [e["id"] for e in events]))

    expected_november = _priced(1234, 567, "0.0000025", "0.00001")
    expected_december = _priced(1001, 333, "0.000000123456789012345", "0.000000987654321098765")
    expected_usage = _priced(77, 5, "0.000000123456789012345", "0.000000987654321098765")
    assert expected_december != (1001 * Decimal("0.000000123456789012345")
                                 + 333 * Decimal("0.000000987654321098765"))  # the rounding is exercised
    stored = {r["id"]: r["cost_usd"] for r in await rows(db, "SELECT id, cost_usd FROM messages WHERE "
                                                              "conversation_id = :c", c=conversation)}
    assert stored == {
        uuid.UUID(november["data"]["message_id"]): expected_november,
        uuid.UUID(december["data"]["message_id"]): expected_december,
    }
    assert await scalar(db, "SELECT cost_usd FROM usage_records WHERE event_id = :e", e=usage["id"]) == expected_usage
    assert await scalar(db, "SELECT cost_used FROM conversations WHERE id = :c", c=conversation) == (
        expected_november + expected_december
    )
    assert await scalar(db, "SELECT cost_used FROM users WHERE id = :u", u=user_id) == (
        expected_november + expected_december + expected_usage
    )


async def test_a_cost_sent_with_the_event_is_stored_as_sent_and_an_unknown_model_stores_null(
    db, worker, amqp_url
) -> None:
    user_id = await create_user(db)
    as_string = usage_recorded(user_id, model="no-such-model", cost_usd="0.000123456789")
    # A JSON number with more digits than a float keeps: stored from the body's own digits.
    as_number = usage_recorded(user_id, model="no-such-model", cost_usd="NUMBER")
    unknown = usage_recorded(user_id, model="no-such-model", prompt_tokens=10)
    bad = usage_recorded(user_id, cost_usd="1e-3")
    events = [as_string, as_number, unknown]
    async with Gateway(amqp_url) as gateway:
        for event in [as_string, unknown, bad]:
            await gateway.publish(event)
        await gateway.publish_raw(body(as_number).replace(b'"NUMBER"', b"12345678901234567.5"), "usage.recorded")
    await eventually(lambda: _applied(db, [e["id"] for e in events]))
    costs = {r["event_id"]: r["cost_usd"] for r in await rows(
        db, "SELECT event_id, cost_usd FROM usage_records WHERE user_id = :u", u=user_id)}
    assert costs == {
        as_string["id"]: Decimal("0.000123456789"),
        as_number["id"]: Decimal("12345678901234567.5"),
        unknown["id"]: None,
    }
    assert await scalar(db, "SELECT cost_used FROM users WHERE id = :u", u=user_id) == Decimal("12345678901234567.500123456789")
    assert worker.metrics.unpriced_events._value.get() >= 1
    await eventually(lambda: _dead_lettered(amqp_url))


async def _dead_lettered(amqp_url: str) -> bool:
    return await queue_depth(amqp_url, "llm.events.worker.dlq") == 1


async def test_month_boundary_gives_two_periods_and_rearmed_thresholds(db, worker, amqp_url) -> None:
    await _bind_threshold_queue(amqp_url)
    user_id = await create_user(db)
    await _set_budget(db, user_id, budget_period="month", tokens_limit=1000)
    events = [
        _at(usage_recorded(user_id, prompt_tokens=850), "2026-11-30T23:59:59.999Z"),
        _at(usage_recorded(user_id, prompt_tokens=900), "2026-12-01T00:00:00Z"),
        _at(usage_recorded(user_id, prompt_tokens=200), "2026-12-15T12:00:00+02:00"),
    ]
    async with Gateway(amqp_url) as gateway:
        for event in events:
            await gateway.publish(event)
    await eventually(lambda: _applied(db, [e["id"] for e in events]))
    periods = await rows(db, "SELECT period, period_start, tokens FROM usage_periods WHERE user_id = :u "
                             "ORDER BY period_start", u=user_id)
    assert [(p["period"], p["period_start"], p["tokens"]) for p in periods] == [
        ("month", date(2026, 11, 1), 850),
        ("month", date(2026, 12, 1), 1100),
    ]
    crossings = await rows(db, "SELECT period_start, threshold, event_id FROM quota_crossings WHERE user_id = :u "
                               "ORDER BY period_start, threshold", u=user_id)
    assert [(c["period_start"], c["threshold"]) for c in crossings] == [
        (date(2026, 11, 1), 80), (date(2026, 12, 1), 80), (date(2026, 12, 1), 100),
    ]
    for c in crossings:
        assert c["event_id"] == crossing_id(user_id, "month", c["period_start"], "tokens", Decimal(1000), c["threshold"])

    async def published() -> bool:
        return await scalar(db, "SELECT count(*) FROM outbox WHERE ordering_key = :u AND sent_at IS NOT NULL",
                            u=user_id) >= 2
    await eventually(published)
    messages = await _threshold_messages(amqp_url, user_id)
    by_period = {m["data"]["period"]["start"]: m for m in messages}
    assert set(by_period) == {"2026-11-01", "2026-12-01"}
    november = by_period["2026-11-01"]
    assert november["type"] == QUOTA_THRESHOLD_CROSSED and november["specversion"] == "1.0"
    assert november["data"] == {
        "user_id": str(user_id),
        "period": {"kind": "month", "start": "2026-11-01", "end": "2026-12-01"},
        "limit_kind": "tokens",
        "thresholds": [80],
        "usage": 850,
        "limit": 1000,
    }
    assert by_period["2026-12-01"]["data"]["period"]["end"] == "2027-01-01"
    assert sorted(by_period["2026-12-01"]["data"]["thresholds"]) in ([80], [80, 100])


async def test_a_jump_across_two_thresholds_is_one_event_listing_both(db, worker, amqp_url) -> None:
    await _bind_threshold_queue(amqp_url)
    user_id = await create_user(db)
    await _set_budget(db, user_id, tokens_limit=1000, cost_limit_usd=Decimal("2"))
    first = usage_recorded(user_id, prompt_tokens=700, cost_usd="0.5")
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(first)
        await eventually(lambda: _applied(db, [first["id"]]))
        jump = usage_recorded(user_id, prompt_tokens=350, cost_usd="1.7")
        await gateway.publish(jump)
        await eventually(lambda: _applied(db, [jump["id"]]))

    async def both_sent() -> bool:
        return await scalar(db, "SELECT count(*) FROM outbox WHERE ordering_key = :u AND sent_at IS NOT NULL",
                            u=user_id) == 2
    await eventually(both_sent)
    messages = {m["data"]["limit_kind"]: m for m in await _threshold_messages(amqp_url, user_id)}
    assert messages["tokens"]["data"]["thresholds"] == [80, 100]
    assert messages["tokens"]["data"]["usage"] == 1050
    assert messages["tokens"]["id"] == str(crossing_id(user_id, "none", None, "tokens", Decimal(1000), 100))
    assert messages["cost_usd"]["data"]["thresholds"] == [80, 100]
    assert messages["cost_usd"]["data"]["usage"] == "2.2"
    assert messages["cost_usd"]["data"]["limit"] == "2"
    assert messages["cost_usd"]["data"]["period"] == {"kind": "none", "start": None, "end": None}


async def test_raising_a_limit_rearms_its_thresholds(db, worker, amqp_url) -> None:
    user_id = await create_user(db)
    await _set_budget(db, user_id, tokens_limit=100)
    async with Gateway(amqp_url) as gateway:
        before = usage_recorded(user_id, prompt_tokens=90)
        await gateway.publish(before)
        await eventually(lambda: _applied(db, [before["id"]]))
        again = usage_recorded(user_id, prompt_tokens=1)
        await gateway.publish(again)
        await eventually(lambda: _applied(db, [again["id"]]))
        assert await _thresholds(db, user_id) == [(100, 80)]
        await _set_budget(db, user_id, tokens_limit=110)
        after = usage_recorded(user_id, prompt_tokens=20)
        await gateway.publish(after)
        await eventually(lambda: _applied(db, [after["id"]]))
    assert await _thresholds(db, user_id) == [(100, 80), (110, 80), (110, 100)]
    assert await scalar(db, "SELECT count(*) FROM outbox WHERE ordering_key = :u", u=user_id) == 2


async def _thresholds(db, user_id: uuid.UUID) -> list[tuple[int, int]]:
    found = await rows(db, "SELECT limit_value, threshold FROM quota_crossings WHERE user_id = :u "
                           "ORDER BY limit_value, threshold", u=user_id)
    return [(int(r["limit_value"]), r["threshold"]) for r in found]


@pytest.mark.parametrize("tier", ["pro", "free"])
async def test_thresholds_are_set_per_tier(db, database_url, amqp_url, tier) -> None:
    settings = make_settings(database_url, amqp_url, quota_thresholds={"default": [100], "pro": [50, 90]})
    running = await start_worker(settings)
    try:
        user_id = await create_user(db)
        await _set_budget(db, user_id, tokens_limit=100, tier=tier)
        event = usage_recorded(user_id, prompt_tokens=95)
        async with Gateway(amqp_url) as gateway:
            await gateway.publish(event)
        await eventually(lambda: _applied(db, [event["id"]]))
    finally:
        await stop_worker(running, settings)
    assert [t for _, t in await _thresholds(db, user_id)] == ([50, 90] if tier == "pro" else [])
