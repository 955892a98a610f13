"""The one place that declares exchanges, queues and bindings (idempotent; run at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from worker.contract.names import (
    DEAD_LETTER_QUEUE,
    EXCHANGE,
    WORKER_QUEUE,
    delay_queue_name,
)
from worker.contract.types import EventTypes
from worker.service.event_types import EVENT_TYPES

QUORUM = {"x-queue-type": "quorum"}


@dataclass
class Topology:
    """Handles to what was declared."""

    exchange: AbstractExchange
    worker_queue: AbstractQueue
    dead_letter_queue: AbstractQueue
    delay_queues: dict[int, AbstractQueue]


async def declare_exchange(channel: AbstractChannel) -> AbstractExchange:
    """The gateway's exchange; both sides declare it."""
    return await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare_topology(
    channel: AbstractChannel, delays_s: list[int], types: EventTypes[Any] = EVENT_TYPES
) -> Topology:
    """Exchange, worker quorum queue bound to every known type's routing key, dead-letter queue, delay queues."""
    exchange = await declare_exchange(channel)
    # NOTE: only the queue type is an argument; limits and dead-letter strategy belong in
    # a policy, because a declared queue's arguments can never change.
    worker_queue = await channel.declare_queue(WORKER_QUEUE, durable=True, arguments=QUORUM)
    for routing_key in types.routing_keys:
        await worker_queue.bind(exchange, routing_key)
    dead_letter_queue = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True, arguments=QUORUM)
    delay_queues = {}
    for delay in sorted(set(delays_s)):
        delay_queues[delay] = await channel.declare_queue(
            delay_queue_name(delay),
            durable=True,
            arguments={
                **QUORUM,
                # A queue-level TTL: every message waits the same, so none waits behind the head.
                "x-message-ttl": delay * 1000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": WORKER_QUEUE,
                # At-least-once dead-lettering back to the worker queue (needs reject-publish).
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
    return Topology(exchange, worker_queue, dead_letter_queue, delay_queues)
