"""One batch's way: decode → apply → settle, returning one `Settlement` per delivery."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from worker.broker.acks import channel_of
from worker.broker.delivery import Delivery
from worker.broker.settled import Settled, Settlement
from worker.broker.settlement import Settler, prior_attempts
from worker.contract.decoding import Limits, decode_event
from worker.contract.events import Event
from worker.contract.reasons import Reason
from worker.errors import EventRejected, RetryLater
from worker.service.applier import EventApplier, EventResult
from worker.service.outcomes import Outcome

# An applier outcome as a settlement value, without an Enum lookup by value per event.
BY_OUTCOME = {Outcome.APPLIED: Settled.APPLIED, Outcome.DUPLICATE: Settled.DUPLICATE}


class Pipeline:
    """Decodes a batch, applies what is valid in one Unit of Work, and settles every delivery by its result."""

    def __init__(self, applier: EventApplier, settler: Settler, limits: Limits) -> None:
        self.applier = applier
        self.settler = settler
        self.limits = limits
        self.types = applier.types

    async def process(self, batch: list[Delivery]) -> list[Settlement]:
        """Settle every delivery of `batch`; committed ones are acknowledged together, the rest one by one."""
        results: list[Settlement] = []
        valid: list[tuple[Delivery, Event]] = []
        alone = []
        received_at = datetime.now(UTC)
        for delivery in batch:
            if channel_of(delivery) is None:
                # Its channel died: the broker has already put it back for redelivery.
                results.append(Settlement(delivery, None, Settled.VOID, 0, time.perf_counter()))
                continue
            try:
                event = self._decode(delivery, received_at)
            except EventRejected as rejected:
                alone.append(self._dead_letter(delivery, None, rejected, 1))
                continue
            valid.append((delivery, event))
        if valid:
            applied = await self.applier.apply([event for _, event in valid])
            committed = [(d, e, a) for (d, e), a in zip(valid, applied, strict=True) if a.settled_by_commit]
            results += await self._ack_committed(committed)
            alone += [
                self._settle_failure(d, e, a) for (d, e), a in zip(valid, applied, strict=True) if not a.settled_by_commit
            ]
        results += await asyncio.gather(*alone)
        return results

    def _decode(self, delivery: Delivery, received_at: datetime) -> Event:
        if delivery.unreadable_properties:
            raise EventRejected(
                Reason.INVALID_EVENT,
                "AMQP properties that cannot be decoded: " + ", ".join(delivery.unreadable_properties),
            )
        return decode_event(delivery.body, delivery.content_type, received_at, self.limits, self.types)

    async def _ack_committed(self, committed: list[tuple[Delivery, Event, EventResult]]) -> list[Settlement]:
        if not committed:
            return []
        acked = await self.settler.ack_many([d for d, _, _ in committed])
        settled_at = time.perf_counter()
        return [
            Settlement(
                delivery,
                event,
                BY_OUTCOME[applied.result] if id(delivery) in acked else Settled.ACK_DROPPED,
                applied.tries,
                settled_at,
                by_commit=True,
            )
            for delivery, event, applied in committed
        ]

    async def _settle_failure(self, delivery: Delivery, event: Event, applied: EventResult) -> Settlement:
        error = applied.result
        if isinstance(error, RetryLater):
            outcome = await self.settler.retry(delivery, error, prior_attempts(delivery) + applied.tries)
            return Settlement(delivery, event, outcome, applied.tries, time.perf_counter(),
                              reason=str(error.reason), detail=error.detail)
        assert isinstance(error, EventRejected)
        return await self._dead_letter(delivery, event, error, applied.tries)

    async def _dead_letter(
        self, delivery: Delivery, event: Event | None, error: EventRejected, tries: int
    ) -> Settlement:
        attempts = prior_attempts(delivery) + tries
        outcome = await self.settler.dead_letter(delivery, error.reason, error.detail, attempts)
        return Settlement(delivery, event, outcome, tries, time.perf_counter(),
                          reason=str(error.reason), detail=error.detail)
