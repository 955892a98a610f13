"""A type declared in the registry is bound to the worker queue: its events reach the worker."""

from __future__ import annotations

import uuid

import aio_pika

from tests.support.amqp import Gateway, queue_depth
from tests.support.events import envelope
from tests.support.waiting import eventually
from tests.unit.test_event_types import _with_ping
from worker.broker.topology import declare_topology
from worker.contract.names import WORKER_QUEUE


async def test_the_worker_queue_is_bound_to_a_newly_declared_type(amqp_url: str) -> None:
    types, _ = _with_ping()
    connection = await aio_pika.connect(amqp_url)
    try:
        await declare_topology(await connection.channel(), [1], types)
    finally:
        await connection.close()
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(envelope("ping.recorded", {"user_id": str(uuid.uuid4()), "tokens": 1}))

    async def arrived() -> bool:
        return await queue_depth(amqp_url, WORKER_QUEUE) == 1

    await eventually(arrived, timeout=10)
