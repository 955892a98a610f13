"""LiteLLM → callback → spool → real RabbitMQ → real worker → PostgreSQL, counted exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.litellm.calls import (
    call,
    costs_used,
    failing_call,
    provision,
    reported_costs,
    reported_tokens,
    stored_rows,
    wait_for_counts,
)
from tests.support.db import rows
from tests.support.rabbit_node import shared_list_queues
from worker.integrations.litellm import WorkerCallback
from worker.producer import Producer, project_uuid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 20
TURNS = 10


@pytest.fixture
async def callback(settings, tmp_path: Path, callbacks: list, capture):
    producer = Producer(settings, spool_path=tmp_path / "spool").start()
    worker_callback = WorkerCallback(settings=settings, producer=producer)
    callbacks.insert(0, worker_callback)
    yield worker_callback
    producer.close()


async def queues_settled(vhost: str) -> bool:
    queues = await asyncio.to_thread(shared_list_queues, vhost)
    worker_queue = queues.get("llm.events.worker", {})
    return worker_queue.get("ready") == 0 and worker_queue.get("unacked") == 0


async def test_200_calls_of_20_users_are_counted_as_litellm_reported_them(
    worker, settings, db, router, capture, callback
) -> None:
    names = await provision(settings, USERS)
    users = [project_uuid(name) for name in names]

    async def conversation(index: int, name: str) -> None:
        # Each user holds one conversation of TURNS turns; the 20 users call at the same time.
        for turn in range(TURNS):
            await call(router, name, turn, conversation=f"chat-{name}", by_key=index % 2 == 0)
            if turn % 5 == 4:
                await failing_call(router, name)

    await asyncio.gather(*(conversation(i, name) for i, name in enumerate(names)))
    await capture.settled(USERS * TURNS, failures=USERS * TURNS // 5)
    expected = reported_tokens(capture.successes)
    assert set(expected) == set(users) and all(expected.values())
    await wait_for_counts(db, expected)
    # Costs: LiteLLM's `response_cost` of each call, summed exactly per user.
    costs = reported_costs(capture.successes)
    assert all(costs.values())
    assert await costs_used(db, users) == costs

    # No event for a failed call: two messages and one usage record per successful call, nothing else.
    assert await stored_rows(db, users) == (2 * USERS * TURNS, USERS * TURNS)
    # The messages of each conversation are stored in the order of the turns: prompt, reply, prompt, ...
    for name in names:
        stored = await rows(
            db, "SELECT role, content FROM messages WHERE conversation_id = :c ORDER BY created_at, id",
            c=project_uuid(f"chat-{name}"),
        )
        assert [row["role"] for row in stored] == ["user", "assistant"] * TURNS
        assert [row["content"] for row in stored[::2]] == [f"turn {turn} of {name}" for turn in range(TURNS)]

    # LiteLLM invoking the logger again for calls it already logged changes nothing.
    for success in capture.successes[:25]:
        await callback.async_log_success_event(success.kwargs, success.response, success.start_time, success.end_time)
        callback.log_success_event(success.kwargs, success.response, success.start_time, success.end_time)
    assert (await callback.producer.drain_async(30)).complete
    vhost = settings.amqp_url.rstrip("/").rsplit("/", 1)[1]
    deadline = asyncio.get_running_loop().time() + 60
    while not await queues_settled(vhost):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
    await wait_for_counts(db, expected, timeout=5)
    assert await stored_rows(db, users) == (2 * USERS * TURNS, USERS * TURNS)


async def test_200_calls_at_once_without_conversation_ids_each_become_a_conversation(
    worker, settings, db, router, capture, callback
) -> None:
    names = await provision(settings, USERS)
    users = [project_uuid(name) for name in names]
    await asyncio.gather(*(
        call(router, names[i % USERS], i, conversation=None) for i in range(USERS * TURNS)
    ))
    await capture.settled(USERS * TURNS)
    await wait_for_counts(db, reported_tokens(capture.successes))
    conversations = await rows(
        db, "SELECT c.id, count(m.id) AS messages FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id "
        "WHERE c.user_id = ANY(:ids) GROUP BY c.id", ids=users,
    )
    assert len(conversations) == USERS * TURNS and {row["messages"] for row in conversations} == {2}
