"""Fault 2: SIGTERM while events stream in: each worker drains, exits 0, and nothing is lost."""

from __future__ import annotations

import asyncio
import random

from tests.faults.scenario import (
    applied_at_least,
    assert_clean,
    fault_settings,
    log_excerpt,
    logged,
    mixed_events,
    publish_stream,
)
from tests.support.db import create_user
from tests.support.waiting import eventually

EVENTS = 2000


async def test_sigterm_under_load_drains_exits_zero_and_loses_nothing(
    db, database_url, amqp_url, fleet, scenario_factory
) -> None:
    rng = random.Random(2)
    users = [await create_user(db) for _ in range(10)]
    settings = fault_settings(database_url, amqp_url, prefetch=32, shutdown_timeout_s=20)
    scenario = scenario_factory(db, database_url, amqp_url, settings)
    await scenario.declare_topology()
    checker = scenario.checker
    workers = [fleet.spawn(settings, "a0"), fleet.spawn(settings, "b0")]
    async with scenario.publisher() as publisher, scenario.faulting():
        stream = asyncio.ensure_future(publish_stream(publisher, mixed_events(users, EVENTS, rng), per_second=150))
        try:
            for n, threshold in enumerate((400, 900, 1400), start=1):
                await eventually(lambda: applied_at_least(checker, threshold), timeout=90, interval=0.05)
                victim = workers[n % 2]
                code = await asyncio.to_thread(victim.terminate, 60)
                scenario.fault(f"SIGTERM {victim.log_path.stem} after {threshold} applied (exit {code})")
                assert code == 0, log_excerpt([victim])
                assert logged([victim], "worker_stopped") == 1, log_excerpt([victim])
                assert logged([victim], "shutdown_left_unacknowledged") == 0, log_excerpt([victim])
                assert victim.applied_count() > 0, "the stopped worker had taken a share"
                workers[n % 2] = fleet.spawn(settings, f"{'ab'[n % 2]}{n}")
            assert await stream == EVENTS
        finally:
            stream.cancel()
    settled = await scenario.settle(timeout=60)
    codes = await fleet.terminate_all()
    report = await scenario.report()
    assert settled, log_excerpt(fleet.all)
    assert codes == [0, 0], codes
    assert report.applied == EVENTS
    assert_clean(report)
