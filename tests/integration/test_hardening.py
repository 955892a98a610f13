"""Conditions that once stalled the worker or churned its channel: each one now settles cleanly."""

from __future__ import annotations

import asyncio

from tests.support.amqp import Gateway
from tests.support.db import create_user, tokens_used
from tests.support.events import message_created
from tests.support.waiting import eventually


def _value(counter) -> float:
    return counter._value.get()


async def test_an_unexpected_failure_after_the_acknowledgement_settles_nothing_twice(db, worker, amqp_url) -> None:
    user_id = await create_user(db)
    consumer = worker.consumer
    channel_before = consumer._raw_channel
    real_counter = consumer._events_counter
    failures = {"left": 1}

    def failing_once(event_type: str, outcome: str):
        # Fails after the batch was committed and acknowledged, like a bug in the bookkeeping would.
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("bookkeeping failed")
        return real_counter(event_type, outcome)

    consumer._events_counter = failing_once
    events = [message_created(user_id, prompt_tokens=3, completion_tokens=2) for _ in range(40)]
    async with Gateway(amqp_url) as gateway:
        await gateway.publish_many(events)

    async def all_applied() -> bool:
        return await tokens_used(db, user_id) == 200

    await eventually(all_applied, timeout=30)
    await asyncio.sleep(1.5)  # a requeue of acknowledged deliveries would close the channel within this
    assert failures["left"] == 0
    assert consumer._raw_channel is channel_before and not channel_before.is_closed
    assert _value(worker.metrics.redeliveries) == 0
    assert await tokens_used(db, user_id) == 200
