"""Fault 1: two workers share the queue and one of them is SIGKILLed at random points, again and again."""

from __future__ import annotations

import random

from tests.faults.scenario import applied_at_least, assert_clean, fault_settings, log_excerpt, mixed_events
from tests.support.db import create_user
from tests.support.waiting import eventually

EVENTS = 3000
KILLS = 4


async def test_workers_killed_at_random_points_lose_and_double_count_nothing(
    db, database_url, amqp_url, fleet, scenario_factory
) -> None:
    seed = random.randrange(1_000_000)
    print(f"\nseed={seed}")
    rng = random.Random(seed)
    users = [await create_user(db) for _ in range(12)]
    settings = fault_settings(database_url, amqp_url, prefetch=32)
    scenario = scenario_factory(db, database_url, amqp_url, settings)
    await scenario.declare_topology()
    events = mixed_events(users, EVENTS, rng)
    async with scenario.publisher() as publisher:
        assert await publisher.publish_many(events) == EVENTS
    checker = scenario.checker
    workers = [fleet.spawn(settings, "a0"), fleet.spawn(settings, "b0")]
    # Kill points spread over the run; which worker dies is random too.
    thresholds = sorted(rng.sample(range(EVENTS // 10, EVENTS * 8 // 10), KILLS))
    async with scenario.faulting():
        for n, threshold in enumerate(thresholds, start=1):
            await eventually(lambda: applied_at_least(checker, threshold), timeout=60, interval=0.05)
            victim = rng.randrange(len(workers))
            workers[victim].kill()
            scenario.fault(f"SIGKILL {workers[victim].log_path.stem} after {threshold} applied")
            workers[victim] = fleet.spawn(settings, f"{'ab'[victim]}{n}")
    settled = await scenario.settle(timeout=90)
    codes = await fleet.terminate_all()
    report = await scenario.report()
    assert settled, log_excerpt(fleet.running or fleet.all[-2:])
    assert codes == [0, 0], codes
    assert report.confirmed == EVENTS and report.applied == EVENTS
    assert_clean(report)
