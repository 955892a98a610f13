"""Every row of the contract's failure table, against the real broker and database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from tests.conftest import make_settings
from tests.support.amqp import Gateway, drain_queue, queue_depth
from tests.support.bad_inputs import corpus
from tests.support.db import create_user, scalar, tokens_used
from tests.support.events import message_created, usage_recorded
from tests.support.waiting import eventually
from worker.contract.names import DEAD_LETTER_QUEUE, WORKER_QUEUE
from worker.runtime.app import start_worker, stop_worker


class DeadLetters:
    """Collects what reaches the dead-letter queue, by AMQP message id."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.by_id: dict[str, object] = {}

    async def wait_for(self, count: int, timeout: float = 30) -> dict[str, object]:
        async def collected() -> bool:
            for message in await drain_queue(self.amqp_url, DEAD_LETTER_QUEUE):
                self.by_id[message.message_id or f"#{len(self.by_id)}"] = message
            return len(self.by_id) >= count

        await eventually(collected, timeout=timeout, interval=0.2)
        return self.by_id


@pytest.mark.parametrize("batch_size", [1, 16], ids=["per-event", "batched"])
async def test_every_bad_input_is_dead_lettered_with_its_reason_while_valid_events_flow(
    db, amqp_url, database_url, batch_size
) -> None:
    settings = make_settings(database_url, amqp_url, batch_size=batch_size, batch_wait_ms=20)
    running = await start_worker(settings)
    try:
        await _bad_inputs_flow(db, amqp_url)
    finally:
        await stop_worker(running, settings)


async def _bad_inputs_flow(db, amqp_url) -> None:
    user_id = await create_user(db)
    cases = corpus(user_id)
    assert len(cases) >= 25
    async with Gateway(amqp_url) as gateway:
        for case in cases:
            await gateway.publish_raw(
                case.body, routing_key=case.routing_key, content_type=case.content_type, message_id=case.name,
                headers={"x-origin": "test"},
            )
            await gateway.publish(message_created(user_id, prompt_tokens=1, completion_tokens=1))
    dead = await DeadLetters(amqp_url).wait_for(len(cases))
    await eventually(lambda: _equals(tokens_used(db, user_id), 2 * len(cases)))
    for case in cases:
        message = dead[case.name]
        assert message.headers["x-error-reason"] == case.reason, case.name
        assert message.body == case.body, f"{case.name}: body not kept byte for byte"
        assert message.headers["x-attempts"] == 1
        assert message.headers["x-origin"] == "test"
        assert abs((datetime.now(UTC) - message.headers["x-dead-lettered-at"].replace(tzinfo=UTC)).total_seconds()) < 120
        assert message.content_type == case.content_type
        detail = message.headers["x-error-detail"]
        assert detail and b"\x00" not in detail.encode() and "hello from a test" not in detail
        assert case.detail in (None, detail), f"{case.name}: {detail}"
    assert set(dead) == {case.name for case in cases}
    assert await queue_depth(amqp_url, WORKER_QUEUE) == 0


async def test_another_users_conversation_is_dead_lettered_for_both_types(db, worker, amqp_url) -> None:
    owner, intruder = await create_user(db), await create_user(db)
    conversation = uuid.uuid4()
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(message_created(owner, conversation_id=conversation))
        await eventually(lambda: _equals(tokens_used(db, owner), 15))
        await gateway.publish(message_created(intruder, conversation_id=conversation), message_id="m")
        await gateway.publish(usage_recorded(intruder, conversation_id=conversation), message_id="u")
    dead = await DeadLetters(amqp_url).wait_for(2)
    assert {m.headers["x-error-reason"] for m in dead.values()} == {"conversation_owner_mismatch"}
    assert await tokens_used(db, intruder) == 0
    assert await scalar(db, "SELECT total_tokens FROM conversations WHERE id = :id", id=conversation) == 15


async def test_an_unknown_user_is_retried_on_its_schedule_then_dead_lettered(db, worker, amqp_url, settings) -> None:
    event = message_created(uuid.uuid4())
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(event, message_id="ghost")
    dead = await DeadLetters(amqp_url).wait_for(1, timeout=30)
    message = dead["ghost"]
    assert message.headers["x-error-reason"] == "unknown_user"
    # One try per pass: the first delivery, then one per step of the schedule.
    assert message.headers["x-attempts"] == 1 + len(settings.unknown_user_delays_s)
    assert "x-death" not in message.headers
    assert await scalar(db, "SELECT count(*) FROM processed_events WHERE event_id = :id", id=event["id"]) == 0


async def test_an_event_for_a_user_created_later_is_applied_by_a_retry(db, amqp_url, database_url) -> None:
    settings = make_settings(database_url, amqp_url, unknown_user_delays_s=[2, 2, 2])
    running = await start_worker(settings)
    try:
        user_id = uuid.uuid4()
        async with Gateway(amqp_url) as gateway:
            await gateway.publish(usage_recorded(user_id, prompt_tokens=77))
        await eventually(lambda: _in_delay_queue(amqp_url), timeout=10)
        await _create_user_with_id(db, user_id)
        await eventually(lambda: _equals(tokens_used(db, user_id), 77), timeout=20)
    finally:
        await stop_worker(running, settings)
    assert await queue_depth(amqp_url, DEAD_LETTER_QUEUE) == 0


async def test_a_row_lock_that_never_clears_ends_as_retries_exhausted(db, amqp_url, database_url) -> None:
    settings = make_settings(database_url, amqp_url, db_lock_timeout_ms=100, retry_delays_s=[1], retry_in_place=1)
    user_id = await create_user(db)
    running = await start_worker(settings)
    try:
        async with db.connect() as blocker:
            await blocker.execute(text("BEGIN"))
            await blocker.execute(text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"), {"id": user_id})
            async with Gateway(amqp_url) as gateway:
                await gateway.publish(message_created(user_id), message_id="locked")
            dead = await DeadLetters(amqp_url).wait_for(1, timeout=30)
            await blocker.execute(text("ROLLBACK"))
    finally:
        await stop_worker(running, settings)
    message = dead["locked"]
    assert message.headers["x-error-reason"] == "retries_exhausted"
    assert "lock" in message.headers["x-error-detail"]
    # (in place: 1 try + 1 retry) × (first pass + one delay step)
    assert message.headers["x-attempts"] == 4
    assert await tokens_used(db, user_id) == 0


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected


async def _in_delay_queue(amqp_url: str) -> bool:
    return await queue_depth(amqp_url, "llm.events.worker.delay.2s") == 1


async def _create_user_with_id(db, user_id: uuid.UUID) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, email, hashed_password) VALUES (:id, :email, '!')"),
            {"id": user_id, "email": f"{user_id}@late.test"},
        )
