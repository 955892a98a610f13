"""Fault 7: a duplicate storm: every event published three times, shuffled, three workers competing."""

from __future__ import annotations

import random

from tests.faults.scenario import mixed_events
from tests.support.db import create_users

UNIQUE = 600
COPIES = 3
WORKERS = 3


async def test_a_shuffled_triple_publish_storm_on_three_workers_counts_every_event_once(
    db, database_url, amqp_url, new_scenario
) -> None:
    rng = random.Random(9)
    # Few users: the copies of one event and the events of one user collide on the same rows.
    users = await create_users(db, 4)
    scenario = await new_scenario(db, database_url, amqp_url, prefetch=16)
    events = mixed_events(users, UNIQUE, rng, conversations_per_user=2)
    storm = [event for event in events for _ in range(COPIES)]
    rng.shuffle(storm)
    scenario.fault(f"every event published {COPIES} times, shuffled ({len(storm)} copies)")
    for _ in range(WORKERS):
        scenario.spawn()
    async with scenario.publisher() as publisher:
        assert await publisher.publish_many(storm) == len(storm)
    finished = await scenario.finish(settle_timeout=120, workers=WORKERS, applied=UNIQUE)
    assert finished.report.published == len(storm)
    assert finished.outcomes["applied"] == UNIQUE, finished.outcomes
    assert finished.outcomes["duplicate"] == len(storm) - UNIQUE, finished.outcomes
