"""The bench's AMQP side: connection to the private vhost, the worker's topology, the queue's backlog."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from worker.broker.settlement import RetrySchedules
from worker.broker.topology import declare_topology
from worker.contract.names import DEAD_LETTER_QUEUE, WORKER_QUEUE
from worker.settings import Settings


def retry_delays(settings: Settings) -> list[int]:
    return RetrySchedules(transient=settings.retry_delays_s, unknown_user=settings.unknown_user_delays_s).all_delays()


async def declare_worker_topology(connection: AbstractConnection, settings: Settings) -> AbstractExchange:
    """What the worker declares at start-up, so that a backlog can be published before it runs."""
    channel = await connection.channel()
    topology = await declare_topology(channel, retry_delays(settings))
    return topology.exchange


async def ready_messages(channel: AbstractChannel) -> int:
    """Messages ready in the worker queue (not counting deliveries in flight)."""
    queue = await channel.declare_queue(WORKER_QUEUE, passive=True)
    return queue.declaration_result.message_count or 0


async def purge_worker_queues(connection: AbstractConnection) -> None:
    """Leftovers of a failed run must not count in the next one."""
    channel = await connection.channel()
    try:
        for name in (WORKER_QUEUE, DEAD_LETTER_QUEUE):
            await (await channel.declare_queue(name, passive=True)).purge()
    finally:
        await channel.close()


def server_version(connection: AbstractConnection) -> str | None:
    """The broker's version string from the connection handshake, when the client exposes it."""
    try:
        properties = connection.transport.connection.server_properties  # type: ignore[union-attr]
        version = properties.get("version")
        return version.decode() if isinstance(version, bytes) else version
    except AttributeError:
        return None


async def connect(amqp_url: str) -> AbstractConnection:
    return await aio_pika.connect(amqp_url)
