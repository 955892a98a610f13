"""Fault 8: usage and message events of the same conversations arrive in random order."""

from __future__ import annotations

import random
import uuid

from tests.support.db import create_users, rows
from tests.support.events import message_created, usage_recorded

CONVERSATIONS = 40


async def test_usage_and_messages_of_one_conversation_in_any_order_give_exact_totals(
    db, database_url, amqp_url, new_scenario
) -> None:
    rng = random.Random(10)
    users = await create_users(db, 5)
    scenario = await new_scenario(db, database_url, amqp_url)
    owners: dict[uuid.UUID, uuid.UUID] = {}
    events = []
    for _ in range(CONVERSATIONS):
        conversation, user = uuid.uuid4(), rng.choice(users)
        owners[conversation] = user
        for _ in range(rng.randint(1, 4)):
            events.append(message_created(user, conversation_id=conversation, prompt_tokens=rng.randint(0, 900),
                                          completion_tokens=rng.randint(0, 300)))
        for _ in range(rng.randint(1, 3)):
            events.append(usage_recorded(user, conversation_id=conversation, prompt_tokens=rng.randint(0, 900),
                                         completion_tokens=rng.randint(0, 300)))
    # Any order at all: a conversation may be created by its usage before its first message.
    rng.shuffle(events)
    scenario.fault(f"{len(events)} events of {CONVERSATIONS} conversations published in random order")
    for _ in range(2):
        scenario.spawn()
    async with scenario.publisher() as publisher:
        assert await publisher.publish_many(events, window=20) == len(events)
    await scenario.finish(settle_timeout=90, workers=2, applied=len(events))
    stored = await rows(db, "SELECT id, user_id FROM conversations WHERE id = ANY(:ids)", ids=list(owners))
    assert {row["id"]: row["user_id"] for row in stored} == owners, "every conversation belongs to its user"
