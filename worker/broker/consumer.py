"""Consumes the worker queue: decode → apply → settle, one task per delivery, pausable and drainable."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from worker.broker.settlement import Settler, prior_attempts
from worker.contract.decoding import Limits, decode_event
from worker.errors import EventRejected, RetryLater
from worker.service.applier import ApplyFailed, EventApplier

log = structlog.get_logger(__name__)


class Consumer:
    """Owns the consuming channel's subscription and the deliveries in flight on it."""

    def __init__(
        self, channel: AbstractChannel, queue: AbstractQueue, applier: EventApplier, settler: Settler, limits: Limits
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.applier = applier
        self.settler = settler
        self.limits = limits
        self._consumer_tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    @property
    def consuming(self) -> bool:
        return self._consumer_tag is not None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def start(self) -> None:
        """Subscribe (idempotent)."""
        async with self._lock:
            if self._consumer_tag is None:
                self._consumer_tag = await self.queue.consume(self._on_delivery)
                log.info("consumer_started", queue=self.queue.name)

    async def stop(self) -> None:
        """Unsubscribe (idempotent); deliveries already received stay in flight."""
        async with self._lock:
            tag, self._consumer_tag = self._consumer_tag, None
            if tag is not None:
                try:
                    await self.queue.cancel(tag)
                except Exception as exc:  # noqa: BLE001 - a dead channel has no consumer anyway
                    log.warning("consumer_cancel_failed", error=type(exc).__name__)
                log.info("consumer_stopped", queue=self.queue.name)

    async def on_gate_change(self, is_open: bool) -> None:
        """Take no new deliveries while the database is down; resume when it is back."""
        await (self.start() if is_open else self.stop())

    async def drain(self, timeout_s: float) -> int:
        """Stop consuming and wait for in-flight deliveries; return how many were left unfinished."""
        await self.stop()
        if not self._in_flight:
            return 0
        _, pending = await asyncio.wait(set(self._in_flight), timeout=timeout_s)
        for task in pending:
            # Cancelled work is never settled: the broker redelivers it after the channel closes.
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    async def _on_delivery(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await self.handle(message)
        except Exception:  # noqa: BLE001 - the worker keeps going; the delivery goes back
            log.exception("delivery_failed_unexpectedly", delivery_tag=message.delivery_tag)
            await self.settler.requeue(message)
        finally:
            self._in_flight.discard(task)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Process one delivery to the end: it is settled, or left for redelivery on shutdown."""
        started = time.perf_counter()
        attempts = prior_attempts(message)
        fields: dict[str, object] = {"delivery_tag": message.delivery_tag}
        try:
            event = decode_event(message.body, message.content_type, datetime.now(UTC), self.limits)
        except EventRejected as rejected:
            outcome = await self.settler.dead_letter(message, rejected.reason, rejected.detail, attempts + 1)
            self._log(outcome, started, attempts + 1, reason=str(rejected.reason), detail=rejected.detail, **fields)
            return
        fields.update(event_id=event.id, source=event.source, type=event.type)
        try:
            applied = await self.applier.apply(event)
        except ApplyFailed as failed:
            attempts += failed.tries
            error = failed.error
            if isinstance(error, RetryLater):
                outcome = await self.settler.retry(message, error, attempts)
            else:
                outcome = await self.settler.dead_letter(message, error.reason, error.detail, attempts)
            self._log(outcome, started, attempts, reason=str(error.reason), detail=error.detail, **fields)
            return
        acked = await self.settler.ack(message)
        self._log(applied.outcome.value if acked else "ack_dropped", started, attempts + applied.tries, **fields)

    @staticmethod
    def _log(outcome: str, started: float, attempts: int, **fields: object) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        level = "warning" if outcome in ("dead_lettered", "requeued", "ack_dropped") else "info"
        getattr(log, level)("event", outcome=outcome, attempts=attempts, duration_ms=duration_ms, **fields)
