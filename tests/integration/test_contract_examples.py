"""The contract's example events, fed by an ordinary AMQP client, leave exactly the rows the contract says."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import text

from tests.support.amqp import Gateway, queue_depth
from tests.support.db import create_user, rows, scalar, tokens_used
from tests.support.events import example
from tests.support.waiting import eventually

EXAMPLE_USER = uuid.UUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")


async def test_example_events_store_message_usage_and_counters(db, worker, amqp_url) -> None:
    message, usage = example("message.created"), example("usage.recorded")
    # The examples share fixed ids; give them this test's own so reruns and other tests never collide.
    user_id = await create_user(db)
    key_id = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO api_keys (id, user_id, key_hash, name) VALUES (:id, :user, :hash, 'ci')"),
            {"id": key_id, "user": user_id, "hash": f"hash-{key_id}"},
        )
    for event in (message, usage):
        event["id"] = f"{event['id']}-{uuid.uuid4()}"
        event["data"]["user_id"] = str(user_id)
    message["data"]["message_id"] = str(uuid.uuid4())
    message["data"]["conversation_id"] = str(uuid.uuid4())
    usage["data"]["api_key_id"] = str(key_id)

    async with Gateway(amqp_url) as gateway:
        await gateway.publish(message)
        await gateway.publish(usage)

    await eventually(lambda: _used(db, user_id, 599 + 2048))
    [stored] = await rows(db, "SELECT * FROM messages WHERE id = :id", id=uuid.UUID(message["data"]["message_id"]))
    assert stored["role"] == "assistant" and stored["model"] == "gpt-4o"
    assert (stored["prompt_tokens"], stored["completion_tokens"]) == (412, 187)
    assert stored["metadata"] == {"finish_reason": "stop", "latency_ms": 1834, "tool_calls": []}
    assert stored["created_at"] == datetime(2026, 11, 28, 7, 0, 0, 100000, tzinfo=UTC)
    [conversation] = await rows(
        db, "SELECT * FROM conversations WHERE id = :id", id=uuid.UUID(message["data"]["conversation_id"])
    )
    assert conversation["title"] == "JSONB vs JSON" and conversation["model"] == "gpt-4o"
    assert conversation["total_tokens"] == 599 and conversation["user_id"] == user_id
    assert conversation["updated_at"] == stored["created_at"]
    [record] = await rows(db, "SELECT * FROM usage_records WHERE event_id = :id", id=usage["id"])
    assert record["model"] == "text-embedding-3-small" and record["prompt_tokens"] == 2048
    assert record["request_id"] == "req-2026-11-28-000042" and record["conversation_id"] is None
    assert record["cost_usd"] == Decimal("0.00004096")
    assert record["recorded_at"] == datetime(2026, 11, 28, 7, 0, 1, tzinfo=UTC)
    last_used = await scalar(db, "SELECT last_used_at FROM api_keys WHERE id = :id", id=key_id)
    assert last_used == datetime(2026, 11, 28, 7, 0, 1, tzinfo=UTC)
    assert await scalar(
        db, "SELECT count(*) FROM processed_events WHERE event_id IN (:a, :b)", a=message["id"], b=usage["id"]
    ) == 2
    assert await queue_depth(amqp_url, "llm.events.worker.dlq") == 0


async def _used(db, user_id, expected):
    return await tokens_used(db, user_id) == expected
