"""Fault 10: the bad-input corpus interleaved with valid events under two worker processes."""

from __future__ import annotations

import random
from collections import Counter

from tests.faults.scenario import mixed_events
from tests.support.bad_inputs import corpus
from tests.support.db import create_users

VALID = 600


async def test_every_bad_input_is_dead_lettered_with_its_reason_while_valid_events_flow(
    db, database_url, amqp_url, new_scenario
) -> None:
    rng = random.Random(11)
    users = await create_users(db, 6)
    scenario = await new_scenario(db, database_url, amqp_url)
    bad = corpus(users[0])
    assert len({b.name for b in bad}) >= 25, "the corpus covers at least 25 kinds"
    entries = [scenario.ledger.add_event(event) for event in mixed_events(users, VALID, rng)]
    bad_entries = [scenario.ledger.add_bad(b.name, b.body, b.reason, b.routing_key, b.content_type) for b in bad]
    for entry in bad_entries:
        entries.insert(rng.randrange(len(entries) + 1), entry)
    scenario.fault(f"{len(bad)} bad inputs of {len(bad)} kinds among {VALID} valid events")
    for _ in range(2):
        scenario.spawn()
    async with scenario.publisher() as publisher:
        assert await publisher.publish_entries(entries, window=20) == len(entries)
    finished = await scenario.finish(settle_timeout=90, workers=2, applied=VALID)
    assert finished.report.dead_lettered == dict(Counter(b.reason for b in bad)), finished.report.dead_lettered
