"""Confirmed, persistent publishing with many confirms outstanding: as fast as possible, or at a fixed rate."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractExchange
from pamqp.commands import Basic

from worker.bench.workload import EventSpec, Workload
from worker.broker.publisher import PublishFailed
from worker.contract.names import CONTENT_TYPE

PERSISTENT = 2
# A fixed-rate publisher wakes at most once a millisecond and sends what is due by then (each
# event keeps its own publish time): a timer per event would cost the bench more CPU than the publish.
SCHEDULE_SLACK_S = 0.001

Progress = Callable[[int], None]


class PipelinedPublisher:
    """Keeps up to `window` publishes awaiting their confirm; the first failure fails the whole publish.

    It stands in for the gateway and shares the machine with the worker, so it publishes on
    the channel's aiormq layer (no aio-pika `Message` or exchange wrapper per event): the
    less CPU the load generator takes, the less it disturbs what is measured.
    """

    def __init__(self, channel: AbstractChannel, window: int, timeout_s: float) -> None:
        self._channel = channel
        self._raw: Any = None
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max(1, window))
        self._pending: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self.confirmed = 0
        self.confirm_s = array("d")
        """Seconds from each publish to its confirm: the broker's own latency, the floor under the worker's."""

    async def publish(self, body: bytes, spec: EventSpec, routing_key: str, exchange: str) -> None:
        """Send now; the confirm is awaited in the background (raises an earlier failure, if any)."""
        if self._failure is not None:
            raise self._failure
        if self._raw is None:
            self._raw = await self._channel.get_underlay_channel()
        await self._slots.acquire()
        task = asyncio.create_task(self._confirmed(body, spec, routing_key, exchange))
        self._pending.add(task)
        task.add_done_callback(self._settled)

    async def _confirmed(self, body: bytes, spec: EventSpec, routing_key: str, exchange: str) -> None:
        properties = Basic.Properties(
            content_type=CONTENT_TYPE, delivery_mode=PERSISTENT, message_id=spec.event_id, message_type=spec.type
        )
        sent = time.perf_counter()
        try:
            confirmation = await self._raw.basic_publish(
                body, exchange=exchange, routing_key=routing_key, properties=properties, mandatory=True,
                timeout=self._timeout_s,
            )
        except TimeoutError as exc:
            raise PublishFailed(f"no confirm within {self._timeout_s}s for {routing_key!r}") from exc
        if not isinstance(confirmation, Basic.Ack):
            raise PublishFailed(f"broker did not acknowledge the publish to {routing_key!r}")
        self.confirm_s.append(time.perf_counter() - sent)

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
                if delay > SCHEDULE_SLACK_S:
                    await asyncio.sleep(delay)
            now = time.time()
            published[n] = now
            await publisher.publish(workload.body(spec, now), spec, routing_key or spec.type,
                                    exchange.name if exchange is not None else "")
            if progress is not None and n % 200 == 0:
                progress(n)
        await publisher.flush()
    except BaseException:
        publisher.cancel()
        raise
    if progress is not None:
        progress(len(specs))
    return published
