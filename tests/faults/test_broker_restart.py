"""Fault 3: the broker (a private RabbitMQ node) is stopped and started mid-stream, twice."""

from __future__ import annotations

import asyncio
import random

from tests.faults.scenario import (
    applied_at_least,
    assert_clean,
    fault_settings,
    log_excerpt,
    mixed_events,
    outcomes,
    publish_stream,
)
from tests.support.db import create_user
from tests.support.waiting import eventually

EVENTS = 1500
WORKERS = 2


async def test_workers_reconnect_and_restore_their_consumers_after_a_broker_restart(
    db, database_url, rabbit_node, fleet, scenario_factory
) -> None:
    rng = random.Random(3)
    users = [await create_user(db) for _ in range(8)]
    # The watchdog may restart a worker whose consumer stays gone; 60 s is far beyond a restart.
    settings = fault_settings(database_url, rabbit_node.amqp_url, heartbeat_s=5, consumer_watchdog_s=60)
    scenario = scenario_factory(db, database_url, rabbit_node.amqp_url, settings)
    await scenario.declare_topology()
    checker = scenario.checker
    workers = [fleet.spawn(settings) for _ in range(WORKERS)]
    await eventually(lambda: _consumers_are(checker, WORKERS), timeout=30)
    async with scenario.publisher() as publisher, scenario.faulting():
        stream = asyncio.ensure_future(publish_stream(publisher, mixed_events(users, EVENTS, rng), per_second=100))
        try:
            for threshold in (300, 900):
                await eventually(lambda: applied_at_least(checker, threshold), timeout=60, interval=0.1)
                await asyncio.to_thread(rabbit_node.stop)
                await asyncio.to_thread(rabbit_node.start)
                scenario.fault(f"RabbitMQ node stopped and started after {threshold} applied")
                await eventually(lambda: _consumers_are(checker, WORKERS), timeout=60, interval=0.5)
                assert len(fleet.running) == WORKERS, log_excerpt(workers)
            assert await stream == EVENTS
        finally:
            stream.cancel()
    print(f"  publisher reconnects: {publisher.reconnects}")
    settled = await scenario.settle(timeout=60)
    still_running = len(fleet.running)
    codes = await fleet.terminate_all()
    report = await scenario.report()
    assert settled, log_excerpt(workers)
    assert still_running == WORKERS and codes == [0] * WORKERS, (codes, log_excerpt(workers))
    assert report.applied == EVENTS
    assert not report.dead_lettered, outcomes(workers)
    assert_clean(report)


async def _consumers_are(checker, count: int) -> bool:
    try:
        return await checker.consumers() == count
    except Exception:  # noqa: BLE001 - the broker is still starting
        return False
