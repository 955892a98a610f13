"""Applies one event through its handler: in-place retries for transient errors, waiting out outages."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from worker.contract.events import Event
from worker.db.failures import classify
from worker.errors import EventRejected, Outage, RetryLater
from worker.runtime.gate import DependencyGate
from worker.service.handlers import HANDLERS
from worker.service.outcomes import Outcome
from worker.service.ports import AbstractUnitOfWork


class ApplyFailed(Exception):
    """The event was not applied; `error` says why and `tries` how often it was tried."""

    def __init__(self, error: EventRejected | RetryLater, tries: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.tries = tries


@dataclass
class Applied:
    outcome: Outcome
    tries: int


class EventApplier:
    """Runs the handler for an event type in a fresh Unit of Work per try."""

    def __init__(
        self,
        uow_factory: Callable[[], AbstractUnitOfWork],
        gate: DependencyGate,
        retries_in_place: int,
        backoff_ms: int,
    ) -> None:
        self.uow_factory = uow_factory
        self.gate = gate
        self.retries_in_place = retries_in_place
        self.backoff_ms = backoff_ms

    async def apply(self, event: Event) -> Applied:
        """Apply the event, or raise `ApplyFailed`. Outages are waited out, not counted as tries."""
        handler = HANDLERS[event.type]
        tries = 0
        while True:
            await self.gate.wait_open()
            tries += 1
            try:
                return Applied(await handler(event, self.uow_factory()), tries)
            except (EventRejected, RetryLater) as exc:
                raise ApplyFailed(exc, tries) from None
            except Exception as exc:  # noqa: BLE001 - classified below
                intent = classify(exc)
            if isinstance(intent, Outage):
                tries -= 1
                await self.gate.close(str(intent))
                continue
            assert isinstance(intent, RetryLater)
            if tries > self.retries_in_place:
                raise ApplyFailed(intent, tries)
            await asyncio.sleep(self._backoff(tries))

    def _backoff(self, tries: int) -> float:
        # Full jitter: concurrent workers that collided do not collide again in step.
        return random.uniform(0, self.backoff_ms * 2 ** (tries - 1)) / 1000
