"""Duplicates have no effect, whatever their payload, and are acknowledged."""

from __future__ import annotations

import pytest

from tests.support.amqp import Gateway, queue_depth
from tests.support.config import make_settings
from tests.support.db import create_user, scalar, tokens_used
from tests.support.events import message_created, usage_recorded
from tests.support.waiting import eventually
from worker.runtime.app import start_worker, stop_worker


async def _drained(db, amqp_url, event_ids: list[str]) -> bool:
    inbox = await scalar(db, "SELECT count(*) FROM processed_events WHERE event_id = ANY(:ids)", ids=event_ids)
    return inbox == len(set(event_ids)) and await queue_depth(amqp_url, "llm.events.worker") == 0


async def test_the_same_event_twice_counts_once(db, worker, amqp_url) -> None:
    user_id = await create_user(db)
    event = message_created(user_id, prompt_tokens=30, completion_tokens=12)
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(event)
        await gateway.publish(event)
        await gateway.publish(usage_recorded(user_id, prompt_tokens=1))  # a marker that arrives after both
    await eventually(lambda: _tokens(db, user_id, 43))
    await eventually(lambda: _drained(db, amqp_url, [event["id"]]))
    assert await scalar(db, "SELECT count(*) FROM messages WHERE id = :id", id=event["data"]["message_id"]) == 1
    assert await tokens_used(db, user_id) == 43
    assert await queue_depth(amqp_url, "llm.events.worker.dlq") == 0


async def test_a_repeated_key_with_another_payload_has_no_effect(db, worker, amqp_url) -> None:
    user_id = await create_user(db)
    first = usage_recorded(user_id, prompt_tokens=10)
    impostor = usage_recorded(user_id, prompt_tokens=9999, event_id=first["id"])
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(first)
        await eventually(lambda: _tokens(db, user_id, 10))
        await gateway.publish(impostor)
        await gateway.publish(usage_recorded(user_id, prompt_tokens=1))
    await eventually(lambda: _tokens(db, user_id, 11))
    assert await scalar(db, "SELECT count(*) FROM usage_records WHERE event_id = :id", id=first["id"]) == 1


async def test_the_same_message_under_a_new_event_id_counts_once(db, worker, amqp_url) -> None:
    user_id = await create_user(db)
    original = message_created(user_id, prompt_tokens=5, completion_tokens=5)
    resent = message_created(
        user_id,
        message_id=original["data"]["message_id"],
        conversation_id=original["data"]["conversation_id"],
        prompt_tokens=5,
        completion_tokens=5,
    )
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(original)
        await eventually(lambda: _tokens(db, user_id, 10))
        await gateway.publish(resent)
        await gateway.publish(usage_recorded(user_id, prompt_tokens=1))
    await eventually(lambda: _tokens(db, user_id, 11))
    assert await scalar(
        db, "SELECT total_tokens FROM conversations WHERE id = :id", id=original["data"]["conversation_id"]
    ) == 10
    assert await queue_depth(amqp_url, "llm.events.worker.dlq") == 0


@pytest.mark.parametrize("batch_size", [1, 8], ids=["per-event", "batched"])
async def test_concurrent_copies_of_one_event_count_once(db, amqp_url, database_url, batch_size) -> None:
    user_id = await create_user(db)
    events = [message_created(user_id, prompt_tokens=n, completion_tokens=0) for n in range(1, 51)]
    resent = [
        message_created(user_id, message_id=e["data"]["message_id"], conversation_id=e["data"]["conversation_id"])
        for e in events[::5]
    ]
    settings = make_settings(database_url, amqp_url, batch_size=batch_size, batch_concurrency=4)
    running = await start_worker(settings)
    try:
        async with Gateway(amqp_url) as gateway:
            # Every event three times in a row, and some messages again under new event ids:
            # copies land in flight together, in one batch and in concurrent ones.
            await gateway.publish_many([event for event in events for _ in range(3)] + resent)
        await eventually(lambda: _drained(db, amqp_url, [e["id"] for e in events]))
        await eventually(lambda: _queue_empty(amqp_url))
    finally:
        await stop_worker(running, settings)
    assert await tokens_used(db, user_id) == sum(range(1, 51))
    assert await queue_depth(amqp_url, "llm.events.worker.dlq") == 0


async def _queue_empty(amqp_url) -> bool:
    return await queue_depth(amqp_url, "llm.events.worker") == 0


async def _tokens(db, user_id, expected: int) -> bool:
    return await tokens_used(db, user_id) == expected
