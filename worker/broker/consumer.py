"""The consumer: a subscription feeds a batch assembler; batch workers run each batch through the pipeline.

Each piece has one job: `Subscription` (the AMQP side), `BatchAssembler` (grouping and
backpressure), `Pipeline` (decode → apply → settle), `ConsumerTelemetry` (metrics and
logs). This module wires them and runs the batch workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue
from aiormq.abc import DeliveredMessage

from worker.broker.batching import BatchAssembler, Batching, FlowControl
from worker.broker.delivery import Delivery
from worker.broker.pipeline import Pipeline
from worker.broker.settlement import Settler
from worker.broker.subscription import Subscription
from worker.broker.telemetry import ConsumerTelemetry
from worker.contract.decoding import Limits
from worker.observability.metrics import Metrics
from worker.service.applier import EventApplier

log = structlog.get_logger(__name__)

class Consumer:
    """Owns the consuming channel's subscription and every delivery received on it until settled."""

    def __init__(
        self,
        channel: AbstractChannel,
        queue: AbstractQueue,
        applier: EventApplier,
        settler: Settler,
        limits: Limits,
        metrics: Metrics,
        batching: Batching,
        flow: FlowControl | None = None,
        fast_path: bool = True,
    ) -> None:
        self.settler = settler
        self.metrics = metrics
        self.batching = batching
        self.assembler = BatchAssembler(batching, flow, on_paused=metrics.backpressure_seconds.inc)
        self.pipeline = Pipeline(applier, settler, limits)
        self.telemetry = ConsumerTelemetry(metrics)
        self.subscription = Subscription(
            channel, queue.name, self._on_delivery, on_subscribed=metrics.consumer_restarts.inc, fast_path=fast_path
        )
        self._workers: list[asyncio.Task[None]] = []
        # Read at scrape time: no gauge arithmetic per delivery.
        metrics.in_flight.set_function(lambda: self.assembler.in_flight)
        metrics.in_flight_bytes.set_function(lambda: self.assembler.in_flight_bytes)

    @property
    def consuming(self) -> bool:
        return self.subscription.consuming

    @property
    def workers_alive(self) -> bool:
        return bool(self._workers) and not any(task.done() for task in self._workers)

    @property
    def in_flight(self) -> int:
        return self.assembler.in_flight

    async def start(self) -> None:
        """Start the batch workers and subscribe (idempotent)."""
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"batch-worker-{n}") for n in range(self.batching.concurrency)
            ]
        await self.subscription.start()

    async def stop(self) -> None:
        """Unsubscribe (idempotent); deliveries already received stay in flight."""
        await self.subscription.stop()

    async def on_gate_change(self, is_open: bool) -> None:
        """Take no new deliveries while the database is down; resume when it is back."""
        await (self.start() if is_open else self.stop())

    async def drain(self, timeout_s: float) -> int:
        """Stop consuming for good, finish what was received within `timeout_s`; return how many were left."""
        await self.subscription.close()
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        left = self.in_flight
        for task in self._workers:
            # Cancelled work is never settled: the broker redelivers it once the channel closes.
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        return left

    def _on_delivery(self, message: DeliveredMessage) -> Awaitable[None] | None:
        delivery = Delivery(message)
        self.settler.received(delivery)
        if delivery.redelivered:
            self.metrics.redeliveries.inc()
        return self.assembler.add(delivery)

    async def _work(self) -> None:
        while True:
            batch = await self.assembler.next_batch()
            try:
                self.telemetry.record(await self.pipeline.process(batch))
            except Exception:  # noqa: BLE001 - the worker keeps going; the unsettled deliveries go back
                unsettled = [d for d in batch if not d.settled]
                log.exception("batch_failed_unexpectedly", size=len(batch), unsettled=len(unsettled))
                await asyncio.gather(*(self.settler.requeue(d) for d in unsettled))
            finally:
                self.assembler.finished(batch)
