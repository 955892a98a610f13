"""Confirmed, persistent publishing with many confirms outstanding: as fast as possible, or at a fixed rate."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable, Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

from worker.bench.workload import EventSpec, Workload
from worker.broker.publisher import ConfirmedPublisher, PublishFailed
from worker.commands.publish import CONTENT_TYPE

Progress = Callable[[int], None]


class PipelinedPublisher:
    """Keeps up to `window` publishes awaiting their confirm; the first failure fails the whole publish."""

    def __init__(self, channel: AbstractChannel, window: int, timeout_s: float) -> None:
        self._publisher = ConfirmedPublisher(channel, timeout_s)
        self._slots = asyncio.Semaphore(max(1, window))
        self._pending: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self.confirmed = 0

    async def publish(self, message: aio_pika.Message, routing_key: str, exchange: AbstractExchange | None) -> None:
        """Send now; the confirm is awaited in the background (raises an earlier failure, if any)."""
        if self._failure is not None:
            raise self._failure
        await self._slots.acquire()
        task = asyncio.create_task(self._publisher.publish(message, routing_key, exchange=exchange))
        self._pending.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        self._slots.release()
        if task.cancelled():
            return
        if task.exception() is not None:
            self._failure = self._failure or task.exception()
        else:
            self.confirmed += 1

    async def flush(self) -> int:
        """Wait for every outstanding confirm; return how many publishes were confirmed in all."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        if self._failure is not None:
            raise PublishFailed(str(self._failure)) from self._failure
        return self.confirmed

    def cancel(self) -> None:
        for task in list(self._pending):
            task.cancel()


def event_message(body: bytes, spec: EventSpec) -> aio_pika.Message:
    """The gateway's message: persistent, structured-mode CloudEvent."""
    return aio_pika.Message(
        body=body,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=spec.event_id,
        type=spec.type,
    )


async def publish_all(
    publisher: PipelinedPublisher,
    workload: Workload,
    specs: Sequence[EventSpec],
    exchange: AbstractExchange | None,
    routing_key: str | None = None,
    rate: float | None = None,
    progress: Progress | None = None,
) -> array:
    """Publish every event (at `rate` per second when given); return each event's publish time (epoch s).

    `routing_key=None` routes by event type, as the gateway does; a fixed key sends to one queue
    through the default exchange (raw baseline).
    """
    published = array("d", bytes(8 * len(specs)))
    started = time.monotonic()
    try:
        for n, spec in enumerate(specs):
            if rate:
                # A fixed schedule, not a fixed gap: a late publish does not push back the rest.
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            now = time.time()
            published[n] = now
            await publisher.publish(event_message(workload.body(spec, now), spec), routing_key or spec.type, exchange)
            if progress is not None and n % 200 == 0:
                progress(n)
        await publisher.flush()
    except BaseException:
        publisher.cancel()
        raise
    if progress is not None:
        progress(len(specs))
    return published
