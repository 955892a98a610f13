"""The worker queue's subscription: the only code that consumes through the AMQP fast path.

aio-pika owns the connection, the channel and the topology (and restores them after a
reconnect); the subscription itself is made on the channel's aiormq layer, so a delivery
costs one small object (see `worker.broker.delivery`), filed from inside aiormq's channel
reader without a task of its own (`worker.broker.inline`), not aio-pika's message copy
and two tasks. Because aio-pika does not know about that subscription, it is renewed here
when the channel is reopened or the broker cancels it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel

from worker.broker.inline import OnMessage, cancel_consumer, enable_inline_deliveries, inline_consumer

log = structlog.get_logger(__name__)

# After the broker cancels the subscription (its queue was deleted or moved), try again after this.
RESUBSCRIBE_PAUSE_S = 1.0


class Subscription:
    """Consumes one queue on one channel into `on_message`, and keeps doing so while wanted."""

    def __init__(
        self,
        channel: AbstractChannel,
        queue_name: str,
        on_message: OnMessage,
        on_subscribed: Callable[[], Any] | None = None,
        fast_path: bool = True,
    ) -> None:
        self.channel = channel
        self.queue_name = queue_name
        self._on_message = on_message
        self._on_subscribed = on_subscribed or (lambda: None)
        self._fast_path = fast_path
        self._raw_channel: Any = None
        self._consumer_tag: str | None = None
        self._wanted = False
        self._closed = False
        self._lock = asyncio.Lock()
        self._resubscribing: asyncio.Task[None] | None = None
        reopened = getattr(channel, "reopen_callbacks", None)
        if reopened is not None:
            reopened.add(self._on_channel_reopened)

    @property
    def consuming(self) -> bool:
        """Subscribed on an open channel."""
        return self._consumer_tag is not None and self._raw_channel is not None and not self._raw_channel.is_closed

    @property
    def consumer_tag(self) -> str | None:
        return self._consumer_tag

    @property
    def raw_channel(self) -> Any:
        """The aiormq channel of the current subscription (None before the first)."""
        return self._raw_channel

    async def start(self) -> None:
        """Subscribe (idempotent); never again once closed."""
        async with self._lock:
            if self._closed:
                return
            self._wanted = True
            if self.consuming:
                return
            raw = await self.channel.get_underlay_channel()
            if raw is not self._raw_channel:
                raw.on_consumer_cancel_callbacks.add(self._on_cancelled_by_broker)
                if self._fast_path:
                    enable_inline_deliveries(raw)
            consume_ok = await raw.basic_consume(self.queue_name, inline_consumer(self._on_message))
            self._raw_channel, self._consumer_tag = raw, consume_ok.consumer_tag
            self._on_subscribed()
            log.info("consumer_started", queue=self.queue_name)

    async def stop(self) -> None:
        """Unsubscribe (idempotent); deliveries the broker already sent still arrive."""
        async with self._lock:
            self._wanted = False
            tag, self._consumer_tag = self._consumer_tag, None
            if tag is None:
                return
            try:
                await cancel_consumer(self._raw_channel, tag)
            except Exception as exc:  # noqa: BLE001 - a dead channel has no consumer anyway
                log.warning("consumer_cancel_failed", error=type(exc).__name__)
            log.info("consumer_stopped", queue=self.queue_name)

    async def close(self) -> None:
        """Unsubscribe for good (a draining worker): a later `start` does nothing."""
        self._closed = True
        await self.stop()
        if self._resubscribing is not None:
            self._resubscribing.cancel()

    async def _on_channel_reopened(self, *_: Any) -> None:
        """aio-pika reopened the channel after a reconnect: the old subscription died with the old one."""
        self._consumer_tag = None
        if self._wanted:
            self._resubscribe_soon(0.0)

    def _on_cancelled_by_broker(self, frame: Any) -> None:
        if frame.consumer_tag != self._consumer_tag:
            return
        log.warning("consumer_cancelled_by_broker", queue=self.queue_name)
        self._consumer_tag = None
        if self._wanted:
            self._resubscribe_soon(RESUBSCRIBE_PAUSE_S)

    def _resubscribe_soon(self, pause_s: float) -> None:
        if self._resubscribing is None or self._resubscribing.done():
            self._resubscribing = asyncio.create_task(self._resubscribe(pause_s), name="consumer-resubscribe")

    async def _resubscribe(self, pause_s: float) -> None:
        """Subscribe again until it works or is no longer wanted (the watchdog bounds how long)."""
        while self._wanted and not self.consuming:
            await asyncio.sleep(pause_s)
            try:
                if self._wanted:
                    await self.start()
            except Exception as exc:  # noqa: BLE001 - the channel may be mid-recovery; try again
                log.warning("consumer_resubscribe_failed", error=type(exc).__name__)
            pause_s = RESUBSCRIBE_PAUSE_S
