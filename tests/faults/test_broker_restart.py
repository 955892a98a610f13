"""Fault 3: the broker (a private RabbitMQ node) is stopped and started mid-stream, twice."""

from __future__ import annotations

import asyncio
import random

from tests.faults.fleet import log_excerpt
from tests.faults.scenario import mixed_events
from tests.support.db import create_users

EVENTS = 1500
WORKERS = 2


async def test_workers_reconnect_and_restore_their_consumers_after_a_broker_restart(
    db, database_url, rabbit_node, new_scenario
) -> None:
    rng = random.Random(3)
    users = await create_users(db, 8)
    # The watchdog may restart a worker whose consumer stays gone; 60 s is far beyond a restart.
    scenario = await new_scenario(db, database_url, rabbit_node.amqp_url, heartbeat_s=5, consumer_watchdog_s=60)
    for _ in range(WORKERS):
        scenario.spawn()
    await scenario.wait_consumers(WORKERS, timeout=30)
    async with scenario.streaming(mixed_events(users, EVENTS, rng), per_second=100) as publisher:
        for threshold in (300, 900):
            await scenario.wait_applied(threshold, interval=0.1)
            await asyncio.to_thread(rabbit_node.stop)
            await asyncio.to_thread(rabbit_node.start)
            scenario.fault(f"RabbitMQ node stopped and started after {threshold} applied")
            await scenario.wait_consumers(WORKERS, interval=0.5)
            assert len(scenario.fleet.running) == WORKERS, log_excerpt(scenario.fleet.all)
    print(f"  publisher reconnects: {publisher.reconnects}")
    finished = await scenario.finish(settle_timeout=60, workers=WORKERS, applied=EVENTS)
    assert not finished.report.dead_lettered, finished.outcomes
