"""Fault 10: the bad-input corpus interleaved with valid events under two worker processes."""

from __future__ import annotations

import random
from collections import Counter

from tests.faults.scenario import assert_clean, fault_settings, log_excerpt, mixed_events
from tests.support.bad_inputs import corpus
from tests.support.db import create_user

VALID = 600


async def test_every_bad_input_is_dead_lettered_with_its_reason_while_valid_events_flow(
    db, database_url, amqp_url, fleet, scenario_factory
) -> None:
    rng = random.Random(11)
    users = [await create_user(db) for _ in range(6)]
    settings = fault_settings(database_url, amqp_url)
    scenario = scenario_factory(db, database_url, amqp_url, settings)
    await scenario.declare_topology()
    bad = corpus(users[0])
    assert len({b.name for b in bad}) >= 25, "the corpus covers at least 25 kinds"
    entries = [scenario.ledger.add_event(event) for event in mixed_events(users, VALID, rng)]
    bad_entries = [scenario.ledger.add_bad(b.name, b.body, b.reason, b.routing_key, b.content_type) for b in bad]
    for entry in bad_entries:
        entries.insert(rng.randrange(len(entries) + 1), entry)
    scenario.fault(f"{len(bad)} bad inputs of {len(bad)} kinds among {VALID} valid events")
    workers = [fleet.spawn(settings) for _ in range(2)]
    async with scenario.publisher() as publisher:
        assert await publisher.publish_entries(entries, window=20) == len(entries)
    settled = await scenario.settle(timeout=90)
    codes = await fleet.terminate_all()
    report = await scenario.report()
    assert settled, log_excerpt(workers)
    assert codes == [0, 0]
    assert report.applied == VALID
    assert report.dead_lettered == dict(Counter(b.reason for b in bad)), report.dead_lettered
    assert_clean(report)
