"""The outbox relay: publishes the events batches wrote to the outbox, then marks them sent.

Every worker runs one. Each round claims publishable events (`worker.db.outbox`), publishes
them persistent and mandatory to `llm.events` and waits for the broker's confirms, then marks
the confirmed ones sent in the claim's transaction. What was not confirmed (broker down,
returned as unroutable, nacked) stays unsent and is tried again after a backoff; so does a
round the database failed. Delivery on the wire is therefore at least once, each event under
its stable id; the database holds each event exactly once.

A round starts at once when this worker's own batches wrote events (`wake`), else every
`poll_interval_s` (events other workers wrote, or events left by a relay that died).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import aio_pika
import structlog

from worker.broker.publisher import PublishFailed
from worker.contract.names import CONTENT_TYPE
from worker.db.outbox import OutboxStore, PendingEvent
from worker.observability.metrics import Metrics

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 30.0
PRUNE_EVERY_S = 3600.0

Publish = Callable[[aio_pika.Message, str], Awaitable[None]]


class OutboxRelay:
    """Publishes outbox events until stopped; survives broker and database outages by retrying."""

    def __init__(
        self,
        store: OutboxStore,
        publish: Publish,
        metrics: Metrics,
        batch_size: int,
        poll_interval_s: float,
        retention_days: int,
    ) -> None:
        self.store = store
        self.publish = publish
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retention_days = retention_days
        self._wake = asyncio.Event()
        self._failures = 0
        self._pruned_at = 0.0

    def wake(self) -> None:
        """Start a round now: this worker's batch just committed events."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                _, failed, claimed = await self.round()
                if not failed:
                    await self._maybe_prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database or the broker; retried after a backoff
                log.warning("outbox_relay_failed", error=type(exc).__name__)
                self.metrics.outbox_failures.labels("round").inc()
                failed, claimed = 1, 0
            if failed:
                self._failures += 1
                # Not woken early: new events must not cut a backoff short while the broker is down.
                await asyncio.sleep(self._backoff())
            else:
                self._failures = 0
                if claimed < self.batch_size:
                    await self._wait(self.poll_interval_s)

    async def round(self) -> tuple[int, int, int]:
        """Claim, publish, mark sent; return (published, failed, claimed)."""
        async with self.store.claim(self.batch_size) as claim:
            if not claim.events:
                return 0, 0, 0
            failures = await asyncio.gather(*(self._publish(event) for event in claim.events))
            sent = [event.seq for event, failure in zip(claim.events, failures, strict=True) if failure is None]
            await claim.mark_sent(sent)
        self.metrics.outbox_published.inc(len(sent))
        failed = len(claim.events) - len(sent)
        if sent:
            log.info("outbox_published", events=len(sent), failed=failed)
        if failed:
            # One line a round, not one per event: an unbound routing key fails every event alike.
            reasons = sorted({f for f in failures if f is not None})
            log.warning("outbox_not_published", events=failed, reasons=reasons, next_try_within_s=self._next_backoff())
        return len(sent), failed, len(claim.events)

    async def _publish(self, event: PendingEvent) -> str | None:
        """Publish one event; None when confirmed, else why not (`unroutable`, `publish`)."""
        message = aio_pika.Message(
            event.body,
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event.event_id,
        )
        try:
            await self.publish(message, event.routing_key)
        except PublishFailed as exc:
            reason = "unroutable" if "unroutable" in str(exc) else "publish"
            self.metrics.outbox_failures.labels(reason).inc()
            return reason
        return None

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        pruned = await self.store.prune(self.retention_days)
        if pruned:
            log.info("outbox_pruned", events=pruned)

    def _next_backoff(self) -> float:
        return min(MAX_BACKOFF_S, 0.5 * 2 ** min(self._failures + 1, 10))

    def _backoff(self) -> float:
        # Full jitter, capped: relays of many workers do not retry in step.
        return random.uniform(0, min(MAX_BACKOFF_S, 0.5 * 2 ** min(self._failures, 10)))

    async def _wait(self, seconds: float) -> None:
        """Until woken by this worker's commit, or `seconds` at most."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
