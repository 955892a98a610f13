"""Conditions that once stalled the worker or churned its channel: each one now settles cleanly."""

from __future__ import annotations

import asyncio

import aio_pika
import orjson
import pytest
from sqlalchemy import text

from tests.support.amqp import Gateway, declare_worker_topology, drain_queue, queue_depth
from tests.support.bad_properties import BAD_UTF8_MARKER, TIMESTAMP_MARKER, undecodable_properties
from tests.support.config import make_settings
from tests.support.db import create_user, tokens_used
from tests.support.events import body, message_created
from tests.support.waiting import eventually
from worker.contract.names import DEAD_LETTER_QUEUE, HEADER_DETAIL, HEADER_REASON
from worker.runtime.app import start_worker, stop_worker


def _value(counter) -> float:
    return counter._value.get()


async def test_an_unexpected_failure_after_the_acknowledgement_settles_nothing_twice(db, worker, amqp_url) -> None:
    user_id = await create_user(db)
    consumer = worker.consumer
    channel_before = consumer.subscription.raw_channel
    record = consumer.telemetry.record
    failures = {"left": 1}

    def failing_once(settlements):
        # Fails after the batch was committed and acknowledged, like a bug in the bookkeeping would.
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("bookkeeping failed")
        return record(settlements)

    consumer.telemetry.record = failing_once
    events = [message_created(user_id, prompt_tokens=3, completion_tokens=2) for _ in range(40)]
    async with Gateway(amqp_url) as gateway:
        await gateway.publish_many(events)

    async def all_applied() -> bool:
        return await tokens_used(db, user_id) == 200

    await eventually(all_applied, timeout=30)
    await asyncio.sleep(1.5)  # a requeue of acknowledged deliveries would close the channel within this
    assert failures["left"] == 0
    assert consumer.subscription.raw_channel is channel_before and not channel_before.is_closed
    assert _value(worker.metrics.redeliveries) == 0
    assert await tokens_used(db, user_id) == 200


async def test_an_outage_error_the_batch_causes_itself_isolates_the_event_instead_of_looping(
    db, database_url, amqp_url
) -> None:
    # A client-side deadline shorter than the server's lock timeout: a held row lock makes the
    # statement time out in the client, which is classified as an outage, while the probe passes.
    settings = make_settings(
        database_url, amqp_url, db_command_timeout_s=1.0, db_lock_timeout_ms=60_000, db_statement_timeout_ms=60_000,
        retry_delays_s=[1], retry_in_place=1, batch_size=16, batch_wait_ms=200,
    )
    locked_user, other_user = await create_user(db), await create_user(db)
    await declare_worker_topology(amqp_url, settings.retry_delays_s + settings.unknown_user_delays_s)
    async with db.connect() as holder:
        transaction = await holder.begin()
        await holder.execute(text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"), {"id": locked_user})
        async with Gateway(amqp_url) as gateway:
            await gateway.publish(message_created(locked_user, prompt_tokens=1, completion_tokens=1))
            await gateway.publish_many(message_created(other_user, prompt_tokens=2, completion_tokens=3) for _ in range(9))
        running = await start_worker(settings)
        try:

            async def neighbours_applied() -> bool:
                return await tokens_used(db, other_user) == 45

            await eventually(neighbours_applied, timeout=30)
            dead = await eventually(lambda: _dead_letters(amqp_url), timeout=40)
            outages = _value(running.metrics.outages.labels("database"))
        finally:
            await stop_worker(running, settings)
            await transaction.rollback()
    assert [m.headers[HEADER_REASON] for m in dead] == ["retries_exhausted"]
    assert "answered its probe" in dead[0].headers[HEADER_DETAIL]
    assert outages <= 2 * 2  # two waits per try of the event (its first delivery and its one retry)
    assert await tokens_used(db, locked_user) == 0


async def _dead_letters(amqp_url: str, expected: int = 1):
    """Every dead letter once `expected` are there (None before, so `eventually` looks again)."""
    return await drain_queue(amqp_url) if await queue_depth(amqp_url, DEAD_LETTER_QUEUE) >= expected else None


@pytest.mark.fast_path
async def test_a_delivery_whose_properties_cannot_be_decoded_is_dead_lettered_and_the_connection_kept(
    db, worker, amqp_url
) -> None:
    user_id = await create_user(db)
    channel_before = worker.consumer.subscription.raw_channel
    good = [message_created(user_id, prompt_tokens=1, completion_tokens=1) for _ in range(20)]
    bad_id, bad_time = message_created(user_id), message_created(user_id)
    async with Gateway(amqp_url) as gateway:
        await gateway.publish_many(good[:10])
        with undecodable_properties():
            await gateway.publish(bad_id, message_id=BAD_UTF8_MARKER)
            await gateway.exchange.publish(
                aio_pika.Message(body(bad_time), content_type="application/cloudevents+json",
                                 timestamp=TIMESTAMP_MARKER, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                "message.created", mandatory=True,
            )
        await gateway.publish_many(good[10:])

    async def good_applied() -> bool:
        return await tokens_used(db, user_id) == 40

    await eventually(good_applied, timeout=30)
    dead = await eventually(lambda: _dead_letters(amqp_url, 2), timeout=30)
    assert sorted(orjson.loads(m.body)["id"] for m in dead) == sorted([bad_id["id"], bad_time["id"]])
    assert {m.headers[HEADER_REASON] for m in dead} == {"invalid_event"}
    assert sorted(m.headers[HEADER_DETAIL] for m in dead) == [
        "AMQP properties that cannot be decoded: message_id",
        "AMQP properties that cannot be decoded: timestamp",
    ]
    assert worker.consumer.subscription.raw_channel is channel_before and not channel_before.is_closed
    assert _value(worker.metrics.broker_reconnects) == 0
    assert _value(worker.metrics.redeliveries) == 0


@pytest.mark.fast_path
async def test_the_worker_holds_no_more_message_bytes_than_its_budget_and_refuses_no_delivery(
    db, database_url, amqp_url
) -> None:
    size = 200 * 1024
    settings = make_settings(
        database_url, amqp_url, prefetch=64, batch_size=8, max_in_flight_bytes=1024 * 1024,
        batch_max_bytes=256 * 1024,
    )
    user_id = await create_user(db)
    running = await start_worker(settings)
    consumer = running.consumer
    held = {"max": 0}
    add, apply = consumer.assembler.add, consumer.pipeline.applier.apply

    def counting(delivery):
        waiter = add(delivery)
        held["max"] = max(held["max"], consumer.in_flight)
        return waiter

    async def slow_apply(events, *args):
        await asyncio.sleep(0.1)  # a database slower than the broker: deliveries pile up unless held back
        return await apply(events, *args)

    consumer.assembler.add, consumer.pipeline.applier.apply = counting, slow_apply
    try:
        async with Gateway(amqp_url) as gateway:
            await gateway.publish_many(
                message_created(user_id, prompt_tokens=1, completion_tokens=1, content="x" * size) for _ in range(40)
            )

        async def all_applied() -> bool:
            return await tokens_used(db, user_id) == 80

        await eventually(all_applied, timeout=60)
        bytes_left = consumer.assembler.in_flight_bytes
    finally:
        await stop_worker(running, settings)
    # The budget holds five of these bodies; the one that crosses it is the last read before the pause.
    assert held["max"] <= 6
    assert bytes_left == 0
    assert await queue_depth(amqp_url, DEAD_LETTER_QUEUE) == 0


async def test_a_draining_consumer_does_not_subscribe_again_when_the_database_comes_back(worker) -> None:
    consumer = worker.consumer
    draining = asyncio.create_task(consumer.drain(2.0))
    await asyncio.sleep(0.1)
    await consumer.on_gate_change(True)  # the outage probe reopening the gate mid-drain
    assert not consumer.consuming
    await draining
    assert not consumer.consuming


@pytest.mark.fast_path
async def test_a_long_backpressure_pause_keeps_the_broker_connection(db, database_url, amqp_url) -> None:
    user_id = await create_user(db)
    # A one-second heartbeat: aiormq takes a connection that received nothing for six seconds for dead.
    settings = make_settings(
        database_url, amqp_url, heartbeat_s=1, prefetch=64, batch_size=8, max_in_flight_bytes=256 * 1024
    )
    running = await start_worker(settings)
    consumer = running.consumer
    apply, stalled = consumer.pipeline.applier.apply, asyncio.Event()

    async def stalled_apply(events, *args):
        await stalled.wait()  # nothing settles: a database that hangs, say
        return await apply(events, *args)

    consumer.pipeline.applier.apply = stalled_apply
    try:
        async with Gateway(amqp_url) as gateway:
            await gateway.publish_many(
                message_created(user_id, prompt_tokens=1, completion_tokens=1, content="y" * 50_000)
                for _ in range(30)
            )
        await asyncio.sleep(10)  # the reader waits on the budget well past six seconds
        stalled.set()

        async def all_applied() -> bool:
            return await tokens_used(db, user_id) == 60

        await eventually(all_applied, timeout=60)
        reconnects = _value(running.metrics.broker_reconnects)
        paused = _value(running.metrics.backpressure_seconds)
    finally:
        await stop_worker(running, settings)
    assert paused > 8
    assert reconnects == 0
