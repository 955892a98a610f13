"""Consumes the worker queue: buffer deliveries, apply them in micro-batches, settle each by its outcome.

A delivery the broker marks as redelivered is applied on its own, so a message that
kills the worker cannot drag healthy neighbours towards the queue's delivery limit.

Memory is bounded by bytes, not only by the prefetch count: a batch closes at its size or
its byte cap, and once the message bytes held exceed the in-flight budget the consuming
channel's reader waits (and with it the socket: see `worker.broker.inline`) until settled
batches make room. No delivery is refused for its size.

An under-filled batch waits for company only while another batch is being applied (the
database is busy with it anyway), and at most the batch wait: an idle worker applies what
it has at once, so light load costs no added latency and heavy load still fills batches.

aio-pika owns the connection, the channel and the topology (and restores them after a
reconnect); the subscription itself is made on the channel's aiormq layer, so a delivery
costs one small object (see `worker.broker.delivery`), filed from inside aiormq's channel
reader without a task of its own (`worker.broker.inline`), not aio-pika's message copy
and two tasks. Because
aio-pika does not know about that subscription, the consumer renews it itself when the
channel is reopened or the broker cancels it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue
from aiormq.abc import DeliveredMessage

from worker.broker.acks import channel_of
from worker.broker.delivery import Delivery
from worker.broker.inline import cancel_consumer, enable_inline_deliveries, inline_consumer
from worker.broker.settlement import Settler, prior_attempts
from worker.contract.decoding import Limits, decode_event
from worker.contract.events import Event
from worker.contract.reasons import Reason
from worker.errors import EventRejected, RetryLater
from worker.observability.metrics import Metrics, observe_many
from worker.service.applier import Applied, EventApplier
from worker.service.outcomes import Outcome

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Batching:
    """How deliveries are grouped into transactions."""

    size: int = 1
    wait_s: float = 0.005
    concurrency: int = 4
    max_bytes: int = 16 * 1024 * 1024
    """A batch closes before its message bodies exceed this (it always holds at least one)."""


@dataclass(frozen=True)
class FlowControl:
    """How many message bytes one process holds before it stops reading from the broker."""

    max_in_flight_bytes: int = 128 * 1024 * 1024


# After the broker cancels the subscription (its queue was deleted or moved), try again after this.
RESUBSCRIBE_PAUSE_S = 1.0


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
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.applier = applier
        self.settler = settler
        self.limits = limits
        self.metrics = metrics
        self.batching = batching
        self.flow = flow or FlowControl()
        self._consumer_tag: str | None = None
        self._raw_channel: Any = None
        self._wanted = False
        self._draining = False
        self._buffer: deque[Delivery] = deque()
        self._buffer_bytes = 0
        self._bytes = 0
        """Body bytes of every delivery received and not yet through its batch."""
        self._room = asyncio.Event()
        self._room.set()
        self._solo: deque[Delivery] = deque()
        self._changed = asyncio.Event()
        """Set when a delivery arrives or a batch finishes: what an idle or lingering batch worker waits for."""
        self._busy = 0
        """Deliveries in batches being applied (0: no batch is)."""
        self._workers: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._resubscribing: asyncio.Task[None] | None = None
        # A concrete logger (not structlog's lazy proxy) and metric children looked up once:
        # both are paid for every event otherwise.
        self._log = log.bind()
        is_enabled_for = getattr(self._log, "is_enabled_for", None)
        self._log_each = bool(is_enabled_for and is_enabled_for(logging.DEBUG))
        """Each committed event gets a DEBUG line of its own besides its batch's line."""
        self._events: dict[tuple[str, str], Any] = {}
        self._seconds: dict[str, Any] = {}
        # Read at scrape time: no gauge arithmetic per delivery.
        metrics.in_flight.set_function(lambda: self.in_flight)
        metrics.in_flight_bytes.set_function(lambda: self._bytes)
        reopened = getattr(channel, "reopen_callbacks", None)
        if reopened is not None:
            reopened.add(self._on_channel_reopened)

    @property
    def consuming(self) -> bool:
        """Subscribed on an open channel."""
        return self._consumer_tag is not None and self._raw_channel is not None and not self._raw_channel.is_closed

    @property
    def workers_alive(self) -> bool:
        return bool(self._workers) and not any(task.done() for task in self._workers)

    @property
    def in_flight(self) -> int:
        return len(self._buffer) + len(self._solo) + self._busy

    async def start(self) -> None:
        """Subscribe and start the batch workers (idempotent)."""
        async with self._lock:
            if self._draining:
                return
            self._wanted = True
            if not self._workers:
                self._workers = [
                    asyncio.create_task(self._work(), name=f"batch-worker-{n}")
                    for n in range(self.batching.concurrency)
                ]
            if not self.consuming:
                raw = await self.channel.get_underlay_channel()
                if raw is not self._raw_channel:
                    raw.on_consumer_cancel_callbacks.add(self._on_cancelled_by_broker)
                    enable_inline_deliveries(raw)
                consume_ok = await raw.basic_consume(self.queue.name, inline_consumer(self._on_delivery))
                self._raw_channel, self._consumer_tag = raw, consume_ok.consumer_tag
                self.metrics.consumer_restarts.inc()
                self._log.info("consumer_started", queue=self.queue.name)

    async def stop(self) -> None:
        """Unsubscribe (idempotent); deliveries already received stay in flight."""
        async with self._lock:
            self._wanted = False
            tag, self._consumer_tag = self._consumer_tag, None
            if tag is not None:
                try:
                    await cancel_consumer(self._raw_channel, tag)
                except Exception as exc:  # noqa: BLE001 - a dead channel has no consumer anyway
                    self._log.warning("consumer_cancel_failed", error=type(exc).__name__)
                self._log.info("consumer_stopped", queue=self.queue.name)

    async def on_gate_change(self, is_open: bool) -> None:
        """Take no new deliveries while the database is down; resume when it is back."""
        await (self.start() if is_open else self.stop())

    async def drain(self, timeout_s: float) -> int:
        """Stop consuming, finish what was received within `timeout_s`; return how many were left."""
        self._draining = True
        await self.stop()
        if self._resubscribing is not None:
            self._resubscribing.cancel()
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

    async def _on_channel_reopened(self, *_: Any) -> None:
        """aio-pika reopened the channel after a reconnect: the old subscription died with the old one."""
        self._consumer_tag = None
        if self._wanted:
            self._resubscribe_soon(0.0)

    def _on_cancelled_by_broker(self, frame: Any) -> None:
        if frame.consumer_tag != self._consumer_tag:
            return
        self._log.warning("consumer_cancelled_by_broker", queue=self.queue.name)
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
                self._log.warning("consumer_resubscribe_failed", error=type(exc).__name__)
            pause_s = RESUBSCRIBE_PAUSE_S

    def _on_delivery(self, message: DeliveredMessage) -> Awaitable[None] | None:
        delivery = Delivery(message)
        self.settler.received(delivery)
        size = len(message.body)
        self._bytes += size
        if delivery.redelivered:
            self.metrics.redeliveries.inc()
            self._solo.append(delivery)
        else:
            self._buffer.append(delivery)
            self._buffer_bytes += size
        self._changed.set()
        if self._bytes > self.flow.max_in_flight_bytes:
            self._room.clear()
            return self._wait_for_room()
        return None

    async def _wait_for_room(self) -> None:
        """Hold the channel's reader until settled batches bring the bytes back under the budget."""
        started = time.perf_counter()
        try:
            await self._room.wait()
        finally:
            self.metrics.backpressure_seconds.inc(time.perf_counter() - started)

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            self._busy += len(batch)
            size = sum(len(d.body) for d in batch)
            try:
                await self._process(batch)
            except Exception:  # noqa: BLE001 - the worker keeps going; the unsettled deliveries go back
                unsettled = [d for d in batch if not d.settled]
                self._log.exception("batch_failed_unexpectedly", size=len(batch), unsettled=len(unsettled))
                await asyncio.gather(*(self.settler.requeue(d) for d in unsettled))
            finally:
                self._busy -= len(batch)
                self._bytes -= size
                if self._bytes <= self.flow.max_in_flight_bytes:
                    self._room.set()
                self._changed.set()

    async def _next_batch(self) -> list[Delivery]:
        while True:
            while not self._buffer and not self._solo:
                self._changed.clear()
                await self._changed.wait()
            if self._solo:
                return [self._solo.popleft()]
            if self._busy and self.batching.wait_s > 0 and not self._full_batch_buffered():
                try:
                    await asyncio.wait_for(self._linger(), self.batching.wait_s)
                except TimeoutError:
                    pass
            batch = self._take(self.batching.size)
            if batch:
                return batch
            # Another batch worker took them while this one lingered.

    async def _linger(self) -> None:
        """Until the buffer holds a full batch or no other batch is being applied."""
        while self._busy and not self._full_batch_buffered():
            self._changed.clear()
            await self._changed.wait()

    def _full_batch_buffered(self) -> bool:
        return len(self._buffer) >= self.batching.size or self._buffer_bytes >= self.batching.max_bytes

    def _take(self, limit: int) -> list[Delivery]:
        taken: list[Delivery] = []
        taken_bytes = 0
        while self._buffer and len(taken) < limit:
            size = len(self._buffer[0].body)
            if taken and taken_bytes + size > self.batching.max_bytes:
                break
            taken.append(self._buffer.popleft())
            taken_bytes += size
        self._buffer_bytes -= taken_bytes
        return taken

    async def _process(self, batch: list[Delivery]) -> None:
        valid: list[tuple[Delivery, Event]] = []
        settling = []
        received_at = datetime.now(UTC)
        for delivery in batch:
            if channel_of(delivery) is None:
                # Its channel died: the broker has already put it back for redelivery.
                continue
            try:
                if delivery.unreadable_properties:
                    raise EventRejected(
                        Reason.INVALID_EVENT,
                        "AMQP properties that cannot be decoded: " + ", ".join(delivery.unreadable_properties),
                    )
                event = decode_event(delivery.body, delivery.content_type, received_at, self.limits)
            except EventRejected as rejected:
                settling.append(self._dead_letter(delivery, None, rejected, prior_attempts(delivery) + 1))
                continue
            valid.append((delivery, event))
        if valid:
            results = await self.applier.apply([event for _, event in valid])
            committed = [(d, e, a) for (d, e), a in zip(valid, results, strict=True) if a.settled_by_commit]
            await self._ack_committed(committed)
            for (delivery, event), applied in zip(valid, results, strict=True):
                if not applied.settled_by_commit:
                    settling.append(self._settle_failure(delivery, event, applied))
        await asyncio.gather(*settling)

    async def _ack_committed(self, committed: list[tuple[Delivery, Event, Applied]]) -> None:
        if not committed:
            return
        acked = await self.settler.ack_many([d for d, _, _ in committed])
        now, settled = datetime.now(UTC), time.perf_counter()
        tokens: dict[str, int] = {}
        latencies: list[float] = []
        counts: Counter[tuple[str, str]] = Counter()
        durations: dict[str, list[float]] = {}
        ids: dict[str, list[str]] = {}
        for delivery, event, applied in committed:
            assert isinstance(applied.result, Outcome)
            outcome = applied.result.value if id(delivery) in acked else "ack_dropped"
            if applied.result is Outcome.APPLIED:
                tokens[event.type] = tokens.get(event.type, 0) + event.data.total_tokens
                if event.published_at is not None:
                    latencies.append(max(0.0, (now - event.published_at).total_seconds()))
            duration = settled - delivery.received
            counts[(event.type, outcome)] += 1
            durations.setdefault(event.type, []).append(duration)
            if outcome == "ack_dropped":
                self._log_settled(delivery, event, outcome, prior_attempts(delivery) + applied.tries, duration)
                continue
            ids.setdefault(outcome, []).append(event.id)
            if self._log_each:
                self._log_settled(delivery, event, outcome, prior_attempts(delivery) + applied.tries, duration,
                                  write=self._log.debug)
        if ids:
            self._log_committed(ids, settled - min(d.received for d, _, _ in committed))
        # The batch's metrics in one go: per event they cost more than the rest of its bookkeeping.
        observe_many(self.metrics.publish_to_commit_seconds, latencies)
        for (event_type, outcome), count in counts.items():
            self._events_counter(event_type, outcome).inc(count)
        for event_type, seconds in durations.items():
            observe_many(self._seconds_histogram(event_type), seconds)
        for event_type, count in tokens.items():
            self.metrics.tokens.labels(event_type).inc(count)

    async def _settle_failure(self, delivery: Delivery, event: Event, applied: Applied) -> None:
        attempts = prior_attempts(delivery) + applied.tries
        error = applied.result
        if isinstance(error, RetryLater):
            outcome = await self.settler.retry(delivery, error, attempts)
            if outcome == "retried":
                self.metrics.retries.labels(str(error.reason)).inc()
            self._record(delivery, event, outcome, attempts, reason=str(error.reason), detail=error.detail)
        else:
            assert isinstance(error, EventRejected)
            await self._dead_letter(delivery, event, error, attempts)

    async def _dead_letter(self, delivery: Delivery, event: Event | None, error: EventRejected, attempts: int) -> None:
        outcome = await self.settler.dead_letter(delivery, error.reason, error.detail, attempts)
        if outcome == "dead_lettered":
            self.metrics.dead_lettered.labels(str(error.reason)).inc()
        self._record(delivery, event, outcome, attempts, reason=str(error.reason), detail=error.detail)

    def _record(self, delivery: Delivery, event: Event | None, outcome: str, attempts: int, **extra: object) -> None:
        """The log line and the metrics of one event settled on its own (refused, retried, requeued)."""
        event_type = event.type if event is not None else "undecodable"
        duration = time.perf_counter() - delivery.received
        self._events_counter(event_type, outcome).inc()
        self._seconds_histogram(event_type).observe(duration)
        self._log_settled(delivery, event, outcome, attempts, duration, **extra)

    def _log_committed(self, ids: dict[str, list[str]], oldest_s: float) -> None:
        """One line for the events a commit settled: how many of each outcome, and their ids.

        A line per event would be a tenth of the worker's CPU at full load, and thousands of
        lines a second for the log pipeline; each event's own line is written at DEBUG.
        """
        self._log.info(
            "batch_committed",
            events=sum(len(v) for v in ids.values()),
            outcomes={outcome: len(v) for outcome, v in ids.items()},
            duration_ms=round(oldest_s * 1000, 2),
            **{f"{outcome}_ids": v for outcome, v in ids.items()},
        )

    def _log_settled(
        self,
        delivery: Delivery,
        event: Event | None,
        outcome: str,
        attempts: int,
        duration: float,
        write: Any = None,
        **extra: object,
    ) -> None:
        """The log line of one settled event. Never its content."""
        fields = {"event_id": event.id, "source": event.source, "type": event.type} if event is not None else {}
        if write is None:
            write = self._log.warning if outcome in ("dead_lettered", "requeued", "ack_dropped") else self._log.info
        write(
            "event",
            outcome=outcome,
            attempts=attempts,
            duration_ms=round(duration * 1000, 2),
            delivery_tag=delivery.delivery_tag,
            **fields,
            **extra,
        )

    def _events_counter(self, event_type: str, outcome: str) -> Any:
        counter = self._events.get((event_type, outcome))
        if counter is None:
            counter = self._events[(event_type, outcome)] = self.metrics.events.labels(event_type, outcome)
        return counter

    def _seconds_histogram(self, event_type: str) -> Any:
        histogram = self._seconds.get(event_type)
        if histogram is None:
            histogram = self._seconds[event_type] = self.metrics.processing_seconds.labels(event_type)
        return histogram
