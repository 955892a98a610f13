"""Inline consumers get every delivery intact from aiormq's reader, without a task each; others keep aiormq's path."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
from aiormq.abc import DeliveredMessage

from tests.support.waiting import eventually
from worker.broker.inline import enable_inline_deliveries, inline_consumer

pytestmark = pytest.mark.integration

# Over RabbitMQ's frame_max (128 KiB), so it arrives as several body frames.
BODIES = [b"", b"x", b"a" * 1000, bytes(range(256)) * 1200]


def _holds(condition):
    async def probe() -> bool:
        return condition()

    return probe


@pytest.fixture
async def inline_channel(amqp_url: str):
    """(aio-pika channel, an exclusive queue, its aiormq channel with inline deliveries enabled)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"inline-{uuid.uuid4().hex[:8]}", exclusive=True)
        raw = await channel.get_underlay_channel()
        assert enable_inline_deliveries(raw)
        yield channel, queue, raw
    finally:
        await connection.close()


async def _publish(channel, queue, bodies: list[bytes]) -> None:
    for body in bodies:
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue.name)


async def test_an_inline_consumer_gets_every_body_in_order_without_a_task_per_delivery(inline_channel) -> None:
    channel, queue, raw = inline_channel
    tasks_started = 0
    create_task = raw.create_task

    def counting_create_task(coro):
        nonlocal tasks_started
        tasks_started += 1
        return create_task(coro)

    raw.create_task = counting_create_task
    got: list[DeliveredMessage] = []
    await raw.basic_consume(queue.name, inline_consumer(got.append), no_ack=True)
    started = tasks_started
    await _publish(channel, queue, BODIES * 5)
    await eventually(_holds(lambda: len(got) == len(BODIES) * 5), timeout=15)
    assert [m.body for m in got] == BODIES * 5
    assert [m.delivery.delivery_tag for m in got] == list(range(1, len(got) + 1))
    assert all(m.channel is raw for m in got)
    assert tasks_started == started


async def test_other_consumers_on_the_channel_keep_aiormqs_own_path(inline_channel) -> None:
    channel, queue, raw = inline_channel
    got: list[bytes] = []

    async def ordinary(message: DeliveredMessage) -> None:
        await asyncio.sleep(0)
        got.append(message.body)

    await raw.basic_consume(queue.name, ordinary, no_ack=True)
    await _publish(channel, queue, BODIES)
    await eventually(_holds(lambda: len(got) == len(BODIES)), timeout=15)
    assert got == BODIES


async def test_a_failing_inline_callback_leaves_the_channel_open_for_the_next_delivery(inline_channel) -> None:
    channel, queue, raw = inline_channel
    got: list[bytes] = []

    def on_message(message: DeliveredMessage) -> None:
        if message.body == b"boom":
            raise RuntimeError("callback failed")
        got.append(message.body)

    await raw.basic_consume(queue.name, inline_consumer(on_message), no_ack=True)
    await _publish(channel, queue, [b"boom", b"after"])
    await eventually(_holds(lambda: got == [b"after"]), timeout=15)
    assert not raw.is_closed


async def test_enabling_twice_wraps_the_channel_once(inline_channel) -> None:
    _, _, raw = inline_channel
    hook = raw._on_deliver_frame
    assert enable_inline_deliveries(raw)
    assert raw._on_deliver_frame is hook
