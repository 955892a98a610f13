"""Fault 4: the database crashes (immediate restart) or kills the worker's sessions, mid-stream.

While the database is down the worker must pause: acknowledge nothing it has not applied,
dead-letter nothing, spend no retry budget; and it must resume by itself when it is back.
"""

from __future__ import annotations

import asyncio
import random
import time

from tests.faults.scenario import (
    applied_at_least,
    assert_clean,
    fault_settings,
    log_excerpt,
    logged,
    mixed_events,
    outcomes,
    publish_stream,
)
from tests.support.db import create_user
from tests.support.waiting import eventually
from worker.contract.names import DEAD_LETTER_QUEUE, WORKER_QUEUE

APP_NAME = "llm-persistence-worker"
DOWN_SAMPLES = 8


async def test_an_immediate_database_restart_pauses_the_worker_which_then_resumes_by_itself(
    pg_cluster, private_db, private_database_url, amqp_url, fleet, scenario_factory
) -> None:
    rng = random.Random(4)
    users = [await create_user(private_db) for _ in range(8)]
    settings = fault_settings(private_database_url, amqp_url, db_command_timeout_s=5)
    scenario = scenario_factory(private_db, private_database_url, amqp_url, settings)
    await scenario.declare_topology()
    checker = scenario.checker
    workers = [fleet.spawn(settings)]
    events = mixed_events(users, 1200, rng)
    async with scenario.publisher() as publisher, scenario.faulting():
        stream = asyncio.ensure_future(publish_stream(publisher, events, per_second=100))
        try:
            await eventually(lambda: applied_at_least(checker, 250), timeout=60, interval=0.05)
            await asyncio.to_thread(pg_cluster.stop, "immediate")
            down_since = time.monotonic()
            scenario.fault("PostgreSQL stopped in immediate mode (crash) after 250 applied")
            await eventually(lambda: _logged_async(workers, "outage_started", 1), timeout=30)
            # The fault lasts while we watch: the publisher keeps going, the worker must hold still.
            first = await _snapshot(checker, scenario)
            for _ in range(DOWN_SAMPLES):
                await asyncio.sleep(0.3)
                snap = await _snapshot(checker, scenario)
                assert snap["dead"] == 0 and snap["delayed"] == 0, (snap, log_excerpt(workers))
            published_meanwhile = snap["confirmed"] - first["confirmed"]
            # Ready only grows while paused; at most one prefetch window was still being delivered.
            assert snap["ready"] - first["ready"] >= published_meanwhile - settings.prefetch, (first, snap)
            assert published_meanwhile > 0, "the publisher kept publishing during the outage"
            await asyncio.to_thread(pg_cluster.start)
            scenario.recover(f"PostgreSQL started again after {time.monotonic() - down_since:.1f}s down")
            await eventually(lambda: _logged_async(workers, "outage_ended", 1), timeout=30)
            assert await stream == len(events)
        finally:
            stream.cancel()
    settled = await scenario.settle(timeout=60)
    codes = await fleet.terminate_all()
    seen = outcomes(workers)
    report = await scenario.report(notes=[f"outcomes: {dict(seen)}"])
    assert settled, log_excerpt(workers)
    assert codes == [0]
    assert seen["dead_lettered"] == 0 and seen["retried"] == 0, seen
    assert report.applied == len(events)
    assert_clean(report)


async def test_terminated_worker_sessions_pause_it_briefly_and_lose_nothing(
    pg_cluster, private_db, private_database_url, amqp_url, fleet, scenario_factory
) -> None:
    rng = random.Random(5)
    users = [await create_user(private_db) for _ in range(8)]
    settings = fault_settings(private_database_url, amqp_url, db_command_timeout_s=5)
    scenario = scenario_factory(private_db, private_database_url, amqp_url, settings)
    await scenario.declare_topology()
    checker = scenario.checker
    workers = [fleet.spawn(settings)]
    events = mixed_events(users, 1200, rng)
    terminated = 0
    async with scenario.publisher() as publisher, scenario.faulting():
        stream = asyncio.ensure_future(publish_stream(publisher, events, per_second=100))
        try:
            for threshold in (150, 400, 650, 900):
                await eventually(lambda: applied_at_least(checker, threshold), timeout=60, interval=0.05)
                killed = await pg_cluster.terminate_backends(APP_NAME)
                terminated += killed
                scenario.fault(f"pg_terminate_backend on {killed} worker session(s) after {threshold} applied")
            assert await stream == len(events)
        finally:
            stream.cancel()
    settled = await scenario.settle(timeout=60)
    codes = await fleet.terminate_all()
    seen = outcomes(workers)
    pauses = (logged(workers, "outage_started"), logged(workers, "outage_ended"))
    report = await scenario.report(notes=[f"outcomes: {dict(seen)}", f"sessions terminated: {terminated}",
                                          f"pauses started/ended: {pauses}"])
    assert terminated > 0, "the worker had sessions to terminate"
    assert settled, log_excerpt(workers)
    assert codes == [0]
    assert seen["dead_lettered"] == 0, seen
    assert pauses[0] == pauses[1], f"every pause ended by itself: {pauses}"
    assert report.applied == len(events)
    assert_clean(report)


async def _logged_async(workers, event: str, at_least: int) -> bool:
    return logged(workers, event) >= at_least


async def _snapshot(checker, scenario) -> dict[str, int]:
    depths = await checker.queue_depths([WORKER_QUEUE, DEAD_LETTER_QUEUE, *checker.queues[1:]])
    return {
        "ready": depths[WORKER_QUEUE],
        "dead": depths[DEAD_LETTER_QUEUE],
        "delayed": sum(depths[q] for q in checker.queues[1:]),
        "confirmed": sum(e.confirmed for e in scenario.ledger.entries.values()),
    }
