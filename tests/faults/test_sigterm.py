"""Fault 2: SIGTERM while events stream in: each worker drains, exits 0, and nothing is lost."""

from __future__ import annotations

import asyncio
import random

from tests.faults.fleet import log_excerpt, logged
from tests.faults.scenario import mixed_events
from tests.support.db import create_users

EVENTS = 2000


async def test_sigterm_under_load_drains_exits_zero_and_loses_nothing(
    db, database_url, amqp_url, new_scenario
) -> None:
    rng = random.Random(2)
    users = await create_users(db, 10)
    scenario = await new_scenario(db, database_url, amqp_url, prefetch=32, shutdown_timeout_s=20)
    workers = [scenario.spawn("a0"), scenario.spawn("b0")]
    async with scenario.streaming(mixed_events(users, EVENTS, rng), per_second=150):
        for n, threshold in enumerate((400, 900, 1400), start=1):
            await scenario.wait_applied(threshold, timeout=90)
            victim = workers[n % 2]
            code = await asyncio.to_thread(victim.terminate, 60)
            scenario.fault(f"SIGTERM {victim.log_path.stem} after {threshold} applied (exit {code})")
            assert code == 0, log_excerpt([victim])
            assert logged([victim], "worker_stopped") == 1, log_excerpt([victim])
            assert logged([victim], "shutdown_left_unacknowledged") == 0, log_excerpt([victim])
            assert victim.applied_count() > 0, "the stopped worker had taken a share"
            workers[n % 2] = scenario.spawn(f"{'ab'[n % 2]}{n}")
    await scenario.finish(settle_timeout=60, workers=2, applied=EVENTS)
