"""Fault 1: two workers share the queue and one of them is SIGKILLed at random points, again and again."""

from __future__ import annotations

import random

from tests.faults.scenario import mixed_events
from tests.support.db import create_users

EVENTS = 3000
KILLS = 4


async def test_workers_killed_at_random_points_lose_and_double_count_nothing(
    db, database_url, amqp_url, new_scenario
) -> None:
    seed = random.randrange(1_000_000)
    print(f"\nseed={seed}")
    rng = random.Random(seed)
    users = await create_users(db, 12)
    scenario = await new_scenario(db, database_url, amqp_url, prefetch=32)
    events = mixed_events(users, EVENTS, rng)
    async with scenario.publisher() as publisher:
        assert await publisher.publish_many(events) == EVENTS
    workers = [scenario.spawn("a0"), scenario.spawn("b0")]
    # Kill points spread over the run; which worker dies is random too.
    thresholds = sorted(rng.sample(range(EVENTS // 10, EVENTS * 8 // 10), KILLS))
    async with scenario.faulting():
        for n, threshold in enumerate(thresholds, start=1):
            await scenario.wait_applied(threshold)
            victim = rng.randrange(len(workers))
            workers[victim].kill()
            scenario.fault(f"SIGKILL {workers[victim].log_path.stem} after {threshold} applied")
            workers[victim] = scenario.spawn(f"{'ab'[victim]}{n}")
    finished = await scenario.finish(settle_timeout=90, workers=2, applied=EVENTS)
    assert finished.report.confirmed == EVENTS
