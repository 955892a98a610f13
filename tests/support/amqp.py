"""Plain AMQP client helpers for tests: publish like the gateway does, read queues like an operator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from tests.support.events import body as encode
from worker.broker.topology import declare_topology
from worker.contract.names import DEAD_LETTER_QUEUE, EXCHANGE


class Gateway:
    """A confirmed publisher to `llm.events`, as the gateway would be."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url

    async def __aenter__(self) -> Gateway:
        self.connection = await aio_pika.connect(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        self.exchange = await self.channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def publish_raw(
        self,
        body: bytes,
        routing_key: str = "message.created",
        content_type: str | None = "application/cloudevents+json",
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> None:
        message = aio_pika.Message(
            body=body,
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers or {},
            message_id=message_id,
        )
        await self.exchange.publish(message, routing_key, mandatory=True)

    async def publish(self, event: dict[str, Any], **kwargs: Any) -> None:
        await self.publish_raw(encode(event), routing_key=event["type"], **kwargs)

    async def publish_many(self, events: Iterable[dict[str, Any]], window: int = 200) -> int:
        """Publish with at most `window` confirms outstanding; returns how many were confirmed."""
        return await in_windows((self.publish(event) for event in events), window)


async def in_windows(publishes: Iterable[Awaitable[Any]], window: int) -> int:
    """Run `publishes` `window` at a time (confirms outstanding); how many completed, all of them or an error."""
    pending: list[asyncio.Future[Any]] = []
    count = 0
    for publish in publishes:
        pending.append(asyncio.ensure_future(publish))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            count, pending = count + len(pending), []
    await asyncio.gather(*pending)
    return count + len(pending)


async def drain_queue(amqp_url: str, queue: str = DEAD_LETTER_QUEUE) -> list[AbstractIncomingMessage]:
    """Take (and acknowledge) every message now in `queue`."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.get_queue(queue, ensure=True)
        messages = []
        while (message := await declared.get(fail=False, no_ack=True)) is not None:
            messages.append(message)
        return messages
    finally:
        await connection.close()


async def queue_depth(amqp_url: str, queue: str) -> int:
    """Ready messages in `queue` (passive declare)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await connection.close()


async def declare_worker_topology(amqp_url: str, delays_s: list[int]) -> None:
    """Declare what the worker declares at start-up, so events can be published before it runs."""
    connection = await aio_pika.connect(amqp_url)
    try:
        await declare_topology(await connection.channel(), delays_s)
    finally:
        await connection.close()


async def bind_queue(amqp_url: str, queue_name: str, routing_key: str) -> None:
    """A durable queue of a subscriber, bound to `llm.events` with `routing_key`."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(exchange, routing_key)


async def take_all(amqp_url: str, queue_name: str) -> list[AbstractIncomingMessage]:
    """Every message ready in the queue, taken off it."""
    connection = await aio_pika.connect(amqp_url)
    taken = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name)
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            taken.append(message)
    return taken
