"""Publishing with publisher confirms and `mandatory`: a return, a nack or a timeout is a failure."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from aiormq.exceptions import AMQPError
from pamqp import commands as spec


class PublishFailed(Exception):
    """The broker did not confirm the publish (returned, nacked, timed out or channel lost)."""


class ConfirmedPublisher:
    """Publishes on a channel opened with publisher confirms and `on_return_raises`."""

    def __init__(self, channel: AbstractChannel, timeout_s: float) -> None:
        self.channel = channel
        self.timeout_s = timeout_s

    async def publish(self, message: aio_pika.Message, routing_key: str, exchange: AbstractExchange | None = None) -> None:
        target = exchange or self.channel.default_exchange
        try:
            confirmation = await target.publish(message, routing_key, mandatory=True, timeout=self.timeout_s)
        except TimeoutError as exc:
            raise PublishFailed(f"no confirm within {self.timeout_s}s for {routing_key!r}") from exc
        except aio_pika.exceptions.DeliveryError as exc:
            raise PublishFailed(f"broker returned the message for {routing_key!r} (unroutable)") from exc
        except (AMQPError, ConnectionError, RuntimeError) as exc:
            raise PublishFailed(f"channel failed while publishing to {routing_key!r}: {type(exc).__name__}") from exc
        if not isinstance(confirmation, spec.Basic.Ack):
            raise PublishFailed(f"broker did not acknowledge the publish to {routing_key!r}")


async def open_publisher_channel(connection: aio_pika.abc.AbstractConnection) -> AbstractChannel:
    """A channel whose publishes are confirmed and whose returned messages raise."""
    return await connection.channel(publisher_confirms=True, on_return_raises=True)
