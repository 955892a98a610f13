"""Fault 7: a duplicate storm: every event published three times, shuffled, three workers competing."""

from __future__ import annotations

import random

from tests.faults.scenario import assert_clean, fault_settings, log_excerpt, mixed_events, outcomes
from tests.support.db import create_user

UNIQUE = 600
COPIES = 3
WORKERS = 3


async def test_a_shuffled_triple_publish_storm_on_three_workers_counts_every_event_once(
    db, database_url, amqp_url, fleet, scenario_factory
) -> None:
    rng = random.Random(9)
    # Few users: the copies of one event and the events of one user collide on the same rows.
    users = [await create_user(db) for _ in range(4)]
    settings = fault_settings(database_url, amqp_url, prefetch=16)
    scenario = scenario_factory(db, database_url, amqp_url, settings)
    await scenario.declare_topology()
    events = mixed_events(users, UNIQUE, rng, conversations_per_user=2)
    storm = [event for event in events for _ in range(COPIES)]
    rng.shuffle(storm)
    scenario.fault(f"every event published {COPIES} times, shuffled ({len(storm)} copies)")
    workers = [fleet.spawn(settings) for _ in range(WORKERS)]
    async with scenario.publisher() as publisher:
        assert await publisher.publish_many(storm) == len(storm)
    settled = await scenario.settle(timeout=120)
    codes = await fleet.terminate_all()
    seen = outcomes(workers)
    report = await scenario.report(notes=[f"outcomes: {dict(seen)}"])
    assert settled, log_excerpt(workers)
    assert codes == [0] * WORKERS
    assert report.published == len(storm) and report.applied == UNIQUE
    assert seen["applied"] == UNIQUE, seen
    assert seen["duplicate"] == len(storm) - UNIQUE, seen
    assert_clean(report)
