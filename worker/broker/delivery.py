"""One delivery from the worker queue, read straight off aiormq's frames.

aio-pika builds an `IncomingMessage` (fourteen properties copied one by one) and starts a
second task for every delivery; on the hot path the worker keeps aiormq's
`DeliveredMessage` as it is and reads a property only when something asks for it. The
attribute names are aio-pika's, so settlement and the dead-letter tools treat both alike.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from aiormq.abc import DeliveredMessage


class Delivery:
    """A received, not yet settled delivery and the moment it arrived."""

    __slots__ = ("_message", "_properties", "received", "delivery_tag", "redelivered", "settled")

    def __init__(self, message: DeliveredMessage) -> None:
        self._message = message
        self._properties = message.header.properties
        self.received = time.perf_counter()
        self.delivery_tag: int = message.delivery.delivery_tag  # type: ignore[union-attr]
        self.redelivered: bool = bool(message.delivery.redelivered)  # type: ignore[union-attr]
        self.settled = False
        """Handed to the broker's settlement (ack, possibly with a later prefix, or nack): never again."""

    @property
    def channel(self) -> Any | None:
        """The aiormq channel it came on, or None once that is closed (the delivery is void then)."""
        channel = self._message.channel
        return None if channel.is_closed else channel

    @property
    def unreadable_properties(self) -> tuple[str, ...]:
        """Names of AMQP properties that could not be decoded (`worker.broker.frames`); empty as a rule."""
        return getattr(self._properties, "unreadable", ())

    @property
    def body(self) -> bytes:
        return self._message.body

    @property
    def routing_key(self) -> str | None:
        return self._message.delivery.routing_key  # type: ignore[union-attr]

    @property
    def headers(self) -> dict[str, Any]:
        return self._properties.headers or {}

    @property
    def content_type(self) -> str | None:
        return self._properties.content_type

    @property
    def content_encoding(self) -> str | None:
        return self._properties.content_encoding

    @property
    def delivery_mode(self) -> int | None:
        return self._properties.delivery_mode

    @property
    def priority(self) -> int | None:
        return self._properties.priority

    @property
    def correlation_id(self) -> str | None:
        return self._properties.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self._properties.reply_to

    @property
    def message_id(self) -> str | None:
        return self._properties.message_id

    @property
    def timestamp(self) -> datetime | None:
        return self._properties.timestamp

    @property
    def type(self) -> str | None:
        return self._properties.message_type

    @property
    def app_id(self) -> str | None:
        return self._properties.app_id

    async def ack(self, multiple: bool = False) -> None:
        await self._message.channel.basic_ack(self.delivery_tag, multiple=multiple)

    async def nack(self, requeue: bool = True) -> None:
        await self._message.channel.basic_nack(self.delivery_tag, requeue=requeue)
