"""Fault 4: the database crashes (immediate restart) or kills the worker's sessions, mid-stream.

While the database is down the worker must pause: acknowledge nothing it has not applied,
dead-letter nothing, spend no retry budget; and it must resume by itself when it is back.
"""

from __future__ import annotations

import asyncio
import random
import time

from tests.faults.fleet import log_excerpt
from tests.faults.scenario import Scenario, mixed_events
from tests.support.db import create_users
from worker.contract.names import DEAD_LETTER_QUEUE, WORKER_QUEUE

APP_NAME = "llm-persistence-worker"
DOWN_SAMPLES = 8


async def test_an_immediate_database_restart_pauses_the_worker_which_then_resumes_by_itself(
    pg_cluster, private_db, private_database_url, amqp_url, new_scenario
) -> None:
    rng = random.Random(4)
    users = await create_users(private_db, 8)
    scenario = await new_scenario(private_db, private_database_url, amqp_url, db_command_timeout_s=5)
    scenario.spawn()
    events = mixed_events(users, 1200, rng)
    async with scenario.streaming(events, per_second=100):
        await scenario.wait_applied(250)
        await asyncio.to_thread(pg_cluster.stop, "immediate")
        down_since = time.monotonic()
        scenario.fault("PostgreSQL stopped in immediate mode (crash) after 250 applied")
        await scenario.wait_logged("outage_started", 1)
        # The fault lasts while we watch: the publisher keeps going, the worker must hold still.
        first = await _snapshot(scenario)
        for _ in range(DOWN_SAMPLES):
            await asyncio.sleep(0.3)
            snap = await _snapshot(scenario)
            assert snap["dead"] == 0 and snap["delayed"] == 0, (snap, log_excerpt(scenario.fleet.all))
        published_meanwhile = snap["confirmed"] - first["confirmed"]
        # Ready only grows while paused; at most one prefetch window was still being delivered.
        assert snap["ready"] - first["ready"] >= published_meanwhile - scenario.settings.prefetch, (first, snap)
        assert published_meanwhile > 0, "the publisher kept publishing during the outage"
        await asyncio.to_thread(pg_cluster.start)
        scenario.recover(f"PostgreSQL started again after {time.monotonic() - down_since:.1f}s down")
        await scenario.wait_logged("outage_ended", 1)
    finished = await scenario.finish(settle_timeout=60, workers=1, applied=len(events))
    assert finished.outcomes["dead_lettered"] == 0 and finished.outcomes["retried"] == 0, finished.outcomes


async def test_terminated_worker_sessions_pause_it_briefly_and_lose_nothing(
    pg_cluster, private_db, private_database_url, amqp_url, new_scenario
) -> None:
    rng = random.Random(5)
    users = await create_users(private_db, 8)
    scenario = await new_scenario(private_db, private_database_url, amqp_url, db_command_timeout_s=5)
    scenario.spawn()
    events = mixed_events(users, 1200, rng)
    terminated = 0
    async with scenario.streaming(events, per_second=100):
        for threshold in (150, 400, 650, 900):
            await scenario.wait_applied(threshold)
            killed = await pg_cluster.terminate_backends(APP_NAME)
            terminated += killed
            scenario.fault(f"pg_terminate_backend on {killed} worker session(s) after {threshold} applied")
    finished = await scenario.finish(settle_timeout=60, workers=1, applied=len(events),
                                     notes=[f"sessions terminated: {terminated}"])
    assert terminated > 0, "the worker had sessions to terminate"
    assert finished.outcomes["dead_lettered"] == 0, finished.outcomes
    pauses = (finished.logged("outage_started"), finished.logged("outage_ended"))
    assert pauses[0] == pauses[1], f"every pause ended by itself: {pauses}"


async def _snapshot(scenario: Scenario) -> dict[str, int]:
    checker = scenario.checker
    depths = await checker.broker.depths([WORKER_QUEUE, DEAD_LETTER_QUEUE, *checker.delay_queues])
    return {
        "ready": depths[WORKER_QUEUE],
        "dead": depths[DEAD_LETTER_QUEUE],
        "delayed": sum(depths[q] for q in checker.delay_queues),
        "confirmed": sum(e.confirmed for e in scenario.ledger.entries.values()),
    }
