"""Real worker processes: two pods on one queue, and a pod killed with SIGKILL mid-stream."""

from __future__ import annotations

import random
import uuid

import pytest

from tests.support.amqp import Gateway, declare_worker_topology, queue_depth
from tests.support.config import make_settings
from tests.support.db import create_user, rows, scalar, tokens_used
from tests.support.events import message_created, tokens_of, usage_recorded
from tests.support.processes import WorkerProcess
from tests.support.waiting import eventually
from worker.contract.names import DEAD_LETTER_QUEUE, WORKER_QUEUE

pytestmark = pytest.mark.slow


def mixed_events(users: list[uuid.UUID], count: int, seed: int) -> list[dict]:
    """Messages and usage for `users`, several per conversation, random token counts."""
    rng = random.Random(seed)
    conversations = {user: [uuid.uuid4() for _ in range(5)] for user in users}
    events = []
    for _ in range(count):
        user = rng.choice(users)
        prompt, completion = rng.randint(0, 5000), rng.randint(0, 2000)
        if rng.random() < 0.7:
            events.append(message_created(user, conversation_id=rng.choice(conversations[user]),
                                          prompt_tokens=prompt, completion_tokens=completion))
        else:
            conversation = rng.choice(conversations[user]) if rng.random() < 0.5 else None
            extra = {"conversation_id": conversation} if conversation else {}
            events.append(usage_recorded(user, prompt_tokens=prompt, completion_tokens=completion, **extra))
    return events


async def assert_exact_totals(db, events: list[dict]) -> None:
    """Every event applied once: inbox, rows and every counter equal the sums over the events."""
    ids = [e["id"] for e in events]
    assert await scalar(db, "SELECT count(*) FROM processed_events WHERE event_id = ANY(:ids)", ids=ids) == len(ids)
    expected_users: dict[str, int] = {}
    expected_conversations: dict[str, int] = {}
    for event in events:
        data = event["data"]
        expected_users[data["user_id"]] = expected_users.get(data["user_id"], 0) + tokens_of(event)
        if data.get("conversation_id"):
            key = str(data["conversation_id"])
            expected_conversations[key] = expected_conversations.get(key, 0) + tokens_of(event)
    for user, total in expected_users.items():
        assert await tokens_used(db, uuid.UUID(user)) == total, f"user {user}"
    stored = {
        str(row["id"]): row["total_tokens"]
        for row in await rows(db, "SELECT id, total_tokens FROM conversations WHERE id = ANY(:ids)",
                              ids=[uuid.UUID(c) for c in expected_conversations])
    }
    assert stored == expected_conversations
    message_ids = [uuid.UUID(e["data"]["message_id"]) for e in events if e["type"] == "message.created"]
    assert await scalar(db, "SELECT count(*) FROM messages WHERE id = ANY(:ids)", ids=message_ids) == len(message_ids)


async def _started(workers: list[WorkerProcess]) -> bool:
    return all(w.started() for w in workers)


async def _all_processed(db, events: list[dict]) -> bool:
    ids = [e["id"] for e in events]
    return await scalar(db, "SELECT count(*) FROM processed_events WHERE event_id = ANY(:ids)", ids=ids) == len(ids)


@pytest.mark.parametrize("batch_size", [1, 64], ids=["per-event", "batched"])
async def test_two_worker_processes_share_a_hot_user_with_exact_totals(
    db, amqp_url, database_url, tmp_path, batch_size
) -> None:
    hot, other = await create_user(db), await create_user(db)
    events = mixed_events([hot, hot, hot, other], 2000, seed=7)
    settings = make_settings(database_url, amqp_url, batch_size=batch_size, prefetch=128)
    await declare_worker_topology(amqp_url, settings.retry_delays_s + settings.unknown_user_delays_s)
    workers = [WorkerProcess(settings, tmp_path / f"worker{n}.log").start() for n in range(2)]
    try:
        # Both consuming before the first event, or a fast one may drain the lot alone.
        await eventually(lambda: _started(workers), timeout=60, interval=0.1)
        async with Gateway(amqp_url) as gateway:
            await gateway.publish_many(events)
        await eventually(lambda: _all_processed(db, events), timeout=120, interval=0.5)
    finally:
        codes = [w.terminate() for w in workers]
    assert codes == [0, 0]
    await assert_exact_totals(db, events)
    assert all(w.applied_count() > 0 for w in workers), "both workers took a share"
    assert not any("deadlock" in line for w in workers for line in w.log_lines())
    assert await queue_depth(amqp_url, WORKER_QUEUE) == 0
    assert await queue_depth(amqp_url, DEAD_LETTER_QUEUE) == 0


@pytest.mark.parametrize("batch_size", [1, 64], ids=["per-event", "batched"])
async def test_a_worker_killed_mid_stream_loses_and_double_counts_nothing(
    db, amqp_url, database_url, tmp_path, batch_size
) -> None:
    users = [await create_user(db) for _ in range(20)]
    events = mixed_events(users, 5000, seed=11)
    settings = make_settings(database_url, amqp_url, prefetch=128, batch_size=batch_size)
    await declare_worker_topology(amqp_url, settings.retry_delays_s + settings.unknown_user_delays_s)
    async with Gateway(amqp_url) as gateway:
        assert await gateway.publish_many(events) == 5000
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    kills = 0
    try:
        for threshold in (800, 2000, 3500):
            await eventually(lambda: _processed_at_least(db, events, threshold), timeout=120, interval=0.05)
            worker.kill()
            kills += 1
            worker = WorkerProcess(settings, tmp_path / "worker.log").start()
        await eventually(lambda: _all_processed(db, events), timeout=180, interval=0.5)
    finally:
        assert worker.terminate() == 0
    assert kills == 3
    await assert_exact_totals(db, events)
    assert await queue_depth(amqp_url, WORKER_QUEUE) == 0
    assert await queue_depth(amqp_url, DEAD_LETTER_QUEUE) == 0


async def _processed_at_least(db, events: list[dict], threshold: int) -> bool:
    ids = [e["id"] for e in events]
    return await scalar(db, "SELECT count(*) FROM processed_events WHERE event_id = ANY(:ids)", ids=ids) >= threshold
