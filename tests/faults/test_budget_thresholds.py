"""Fault: one user's budget under duplicates and SIGKILL: periods exact, each threshold once, its event on the wire.

1,000 `usage.recorded` events of one user with a monthly budget, half in November and half in
December, published with 20 % duplicates while two workers compete and one is SIGKILLed twice.
"""

from __future__ import annotations

import random
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import text

from tests.support.amqp import bind_queue, take_all
from tests.support.db import create_user, rows, scalar
from tests.support.events import usage_recorded
from tests.support.waiting import eventually
from worker.contract.names import QUOTA_THRESHOLD_CROSSED
from worker.service.budgets import crossing_id

EVENTS = 1000
DUPLICATES = 200
KILLS = 2
THRESHOLDS = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
MONTHS = {date(2026, 11, 1): "2026-11", date(2026, 12, 1): "2026-12"}
THRESHOLD_QUEUE = "test.quota.thresholds"


def budget_events(user_id: uuid.UUID, rng: random.Random) -> list[dict[str, Any]]:
    events = []
    for n in range(EVENTS):
        month = "2026-11" if n % 2 else "2026-12"
        event = usage_recorded(user_id, prompt_tokens=rng.randrange(1, 100), completion_tokens=rng.randrange(0, 50),
                               cost_usd=f"0.{rng.randrange(1, 10**6):06d}")
        event["time"] = f"{month}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z"
        events.append(event)
    return events


def month_sums(events: list[dict[str, Any]]) -> dict[date, tuple[int, Decimal]]:
    sums: dict[date, tuple[int, Decimal]] = {}
    for event in events:
        start = date(int(event["time"][:4]), int(event["time"][5:7]), 1)
        tokens, cost = sums.get(start, (0, Decimal(0)))
        data = event["data"]
        sums[start] = (tokens + data["prompt_tokens"] + data["completion_tokens"], cost + Decimal(data["cost_usd"]))
    return sums


async def threshold_messages(amqp_url: str) -> list[dict[str, Any]]:
    got = []
    for message in await take_all(amqp_url, THRESHOLD_QUEUE):
        event = orjson.loads(message.body)
        assert message.message_id == event["id"]
        got.append(event)
    return got


async def test_one_users_budget_under_duplicates_and_sigkill_reports_each_threshold_once(
    db, database_url, amqp_url, new_scenario
) -> None:
    seed = random.randrange(1_000_000)
    print(f"\nseed={seed}")
    rng = random.Random(seed)
    user_id = await create_user(db)
    events = budget_events(user_id, rng)
    sums = month_sums(events)
    # Limits below each month's usage, so every threshold of both limits is reached in both months.
    tokens_limit = min(tokens for tokens, _ in sums.values()) * 9 // 10
    cost_limit = (min(cost for _, cost in sums.values()) * Decimal("0.9")).quantize(Decimal("0.01"))
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE users SET budget_period = 'month', tokens_limit = :t, cost_limit_usd = :c WHERE id = :u"),
            {"t": tokens_limit, "c": cost_limit, "u": user_id},
        )
    await bind_queue(amqp_url, THRESHOLD_QUEUE, QUOTA_THRESHOLD_CROSSED)
    scenario = await new_scenario(db, database_url, amqp_url, prefetch=32,
                                  quota_thresholds={"default": THRESHOLDS}, outbox_poll_interval_s=0.2)
    stream = events + rng.sample(events, DUPLICATES)
    rng.shuffle(stream)
    scenario.fault(f"{DUPLICATES} events published twice, shuffled ({len(stream)} publishes)")
    workers = [scenario.spawn("a0"), scenario.spawn("b0")]
    kill_points = sorted(rng.sample(range(EVENTS // 10, EVENTS * 7 // 10), KILLS))
    async with scenario.streaming(stream, per_second=400):
        # The same worker slot is killed both times: its restarted process dies again mid-stream.
        for n, point in enumerate(kill_points, start=1):
            await scenario.wait_applied(point)
            workers[0].kill()
            scenario.fault(f"SIGKILL {workers[0].log_path.stem} after {point} applied")
            await scenario.wait_consumers(1)  # the broker has dropped the dead process's consumer
            workers[0] = scenario.spawn(f"a{n}")
            await scenario.wait_consumers(2)  # the next kill hits a process that consumes and relays
    await scenario.wait_applied(EVENTS, timeout=120)

    async def outbox_sent() -> bool:
        unsent = await scalar(db, "SELECT count(*) FROM outbox WHERE ordering_key = :u AND sent_at IS NULL",
                              u=user_id)
        return unsent == 0 and await scalar(db, "SELECT count(*) FROM outbox WHERE ordering_key = :u", u=user_id) > 0

    await eventually(outbox_sent, timeout=60)
    finished = await scenario.finish(settle_timeout=90, workers=2, applied=EVENTS)
    assert finished.report.published == len(stream)

    # Period usage is the ledger's, per month, to the last digit.
    periods = await rows(db, "SELECT period, period_start, tokens, cost_usd FROM usage_periods WHERE user_id = :u",
                         u=user_id)
    assert {(p["period_start"]): (p["tokens"], p["cost_usd"]) for p in periods} == sums
    assert {p["period"] for p in periods} == {"month"}

    # Each threshold of each limit in each month recorded exactly once, under its derived id.
    expected = {
        crossing_id(user_id, "month", start, kind, limit, threshold): (start, kind, threshold)
        for start, (tokens, cost) in sums.items()
        for kind, limit, used in (("tokens", tokens_limit, tokens), ("cost_usd", cost_limit, cost))
        for threshold in THRESHOLDS
        if used * 100 >= limit * threshold
    }
    assert len(expected) == 2 * 2 * len(THRESHOLDS)
    crossings = await rows(db, "SELECT event_id, period_start, limit_kind, threshold FROM quota_crossings "
                               "WHERE user_id = :u", u=user_id)
    assert {c["event_id"]: (c["period_start"], c["limit_kind"], c["threshold"]) for c in crossings} == expected

    # Every crossing is listed by exactly one outbox event; each event is on the bound queue at least once,
    # and the queue's first sight of each follows the order the events were written in.
    outbox = await rows(db, "SELECT seq, event_id, payload FROM outbox WHERE ordering_key = :u ORDER BY seq",
                        u=user_id)
    listed = [
        (date.fromisoformat(row["payload"]["data"]["period"]["start"]), row["payload"]["data"]["limit_kind"], t)
        for row in outbox
        for t in row["payload"]["data"]["thresholds"]
    ]
    assert sorted(listed) == sorted(expected.values())
    received = [m["id"] for m in await threshold_messages(amqp_url) if m["data"]["user_id"] == str(user_id)]
    first_seen = list(dict.fromkeys(received))
    assert first_seen == [row["event_id"] for row in outbox]
    print(f"threshold events: {len(outbox)} written, {len(received)} received "
          f"({len(received) - len(first_seen)} again after a kill)")
