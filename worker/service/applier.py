"""Applies batches with the contract's retry rules: conflicts again at once, transient errors in place
with jittered backoff, failing batches split until the bad event stands alone, outages waited out."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker.contract.events import Event
from worker.contract.types import EventTypes
from worker.errors import Outage, RetryLater, TransientError
from worker.service.batch import DEFAULT_BUDGETS, Result, apply_batch
from worker.service.budgets import Budgets
from worker.service.handlers import BatchConflict, Handler
from worker.service.outcomes import Outcome
from worker.service.ports import AbstractUnitOfWork, ClassifyError, Gate

# A conflict means another worker committed first; the next try sees its rows.
CONFLICT_RETRIES = 5
# An outage error raised again by the same events after the database answered its probe this
# many times is theirs (a statement too big, too slow or too hungry), not the database's.
OUTAGES_BEFORE_BLAMING_THE_BATCH = 2


@dataclass(frozen=True)
class EventResult:
    """One event's result and how many times it was tried in this delivery."""

    result: Result
    tries: int

    @property
    def settled_by_commit(self) -> bool:
        return isinstance(self.result, Outcome)


class EventApplier:
    """Runs `apply_batch` in a fresh Unit of Work per try."""

    def __init__(
        self,
        uow_factory: Callable[[], AbstractUnitOfWork],
        types: EventTypes[Handler],
        gate: Gate,
        classify: ClassifyError,
        retries_in_place: int,
        backoff_ms: int,
        on_batch: Callable[[int], None] | None = None,
        budgets: Budgets = DEFAULT_BUDGETS,
    ) -> None:
        self.uow_factory = uow_factory
        self.types = types
        self.gate = gate
        self.classify = classify
        self.retries_in_place = retries_in_place
        self.backoff_ms = backoff_ms
        self.on_batch = on_batch or (lambda size: None)
        self.budgets = budgets

    async def apply(
        self, events: Sequence[Event], outages_allowed: int = OUTAGES_BEFORE_BLAMING_THE_BATCH
    ) -> list[EventResult]:
        """One `EventResult` per event, in order. Outages are waited out and not counted as tries,
        unless the same events raise them again once the database answers: then they are transient."""
        tries = 0
        conflicts = 0
        outages = 0
        while True:
            await self.gate.wait_open()
            tries += 1
            try:
                results = await apply_batch(events, self.uow_factory(), self.types, self.budgets)
            except BatchConflict as exc:
                conflicts += 1
                if conflicts <= CONFLICT_RETRIES:
                    continue
                intent: Exception = exc
            except Exception as exc:  # noqa: BLE001 - classified below
                intent = self.classify(exc)
            else:
                self.on_batch(len(events))
                return [EventResult(result, tries) for result in results]
            if isinstance(intent, Outage):
                outages += 1
                if outages <= outages_allowed:
                    tries -= 1
                    await self.gate.close(str(intent))
                    continue
                # NOTE: the gate reopened, so the database answered its probe in between: the
                # events themselves make it fail. Isolate them and let their retry schedule decide.
                intent = TransientError(f"{intent}; again after the database answered its probe")
                outages_allowed = 0
            if len(events) > 1:
                return await self._isolate(events, tries, outages_allowed)
            assert isinstance(intent, RetryLater)
            if tries > self.retries_in_place:
                return [EventResult(intent, tries)]
            await asyncio.sleep(self._backoff(tries))

    async def _isolate(self, events: Sequence[Event], tries: int, outages_allowed: int) -> list[EventResult]:
        """Split a failing batch so that one bad event cannot hold back its neighbours."""
        middle = len(events) // 2
        halves = await asyncio.gather(
            self.apply(events[:middle], outages_allowed), self.apply(events[middle:], outages_allowed)
        )
        return [EventResult(a.result, a.tries + tries) for half in halves for a in half]

    def _backoff(self, tries: int) -> float:
        # Full jitter: workers that collided once do not collide again in step.
        return random.uniform(0, self.backoff_ms * 2 ** (tries - 1)) / 1000
