"""Fault 6: another session holds a hot user's row lock; the worker's statements time out meanwhile.

The events of that user are retried (in place, then round the delay queue) and applied once
the lock goes; everybody else's events keep flowing while it is held.
"""

from __future__ import annotations

import random

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.faults.fleet import outcomes
from tests.faults.scenario import mixed_events, publish_stream
from tests.support.db import create_users
from tests.support.waiting import eventually

HOT_EVENTS = 30
OTHER_EVENTS = 200
# Server-side deadlines of the worker's sessions, per case: the one that fires first is short.
TIMEOUTS = {
    "lock_timeout": {"db_lock_timeout_ms": 300, "db_statement_timeout_ms": 15_000},
    "statement_timeout": {"db_lock_timeout_ms": 60_000, "db_statement_timeout_ms": 300},
}


@pytest.mark.parametrize("deadline", sorted(TIMEOUTS))
async def test_a_locked_hot_user_is_retried_and_applied_once_the_lock_goes(
    deadline, db, database_url, amqp_url, new_scenario
) -> None:
    rng = random.Random(8)
    hot, *others = await create_users(db, 5)
    # Enough delay-queue steps that the lock is gone long before `retries_exhausted`.
    scenario = await new_scenario(db, database_url, amqp_url, retry_delays_s=[1] * 10, **TIMEOUTS[deadline])
    hot_events = mixed_events([hot], HOT_EVENTS, rng)
    other_events = mixed_events(others, OTHER_EVENTS, rng)
    events = hot_events + other_events
    rng.shuffle(events)

    workers = [scenario.spawn()]
    locker = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", hot)
        scenario.fault(f"row lock on hot user held by another session ({deadline} {TIMEOUTS[deadline]})")
        async with scenario.faulting():
            async with scenario.publisher() as publisher:
                assert await publish_stream(publisher, events, per_second=200) == len(events)
            # While the lock is held: everybody else's events are applied, the hot user's go round.
            await scenario.wait_applied(OTHER_EVENTS, interval=0.1)
            await eventually(lambda: _retried(workers), timeout=60)
            assert not await scenario.applied_at_least(OTHER_EVENTS + 1), "nothing of the hot user got through"
        await lock.rollback()
    finally:
        await locker.close()  # also ends the transaction, should the rollback not have run
    scenario.recover("row lock released")
    finished = await scenario.finish(settle_timeout=90, workers=1, applied=len(events))
    assert finished.outcomes["retried"] > 0 and not finished.report.dead_lettered, finished.outcomes


async def _retried(workers) -> bool:
    return outcomes(workers)["retried"] > 0
