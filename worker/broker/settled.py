"""What settling a delivery ended in: one enum, and the record the pipeline returns per delivery."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from worker.broker.delivery import Delivery
from worker.contract.events import Event


class Settled(StrEnum):
    """The one set of values a delivery's processing ends in (also the `outcome` label and log field)."""

    APPLIED = "applied"
    """Committed, then acknowledged."""
    DUPLICATE = "duplicate"
    """Applied before (the inbox knew it); acknowledged."""
    DEAD_LETTERED = "dead_lettered"
    """Copied to the dead-letter queue (confirmed), then acknowledged."""
    RETRIED = "retried"
    """Copied to a delay queue (confirmed), then acknowledged."""
    REQUEUED = "requeued"
    """Its copy could not be published: handed back to the broker."""
    ACK_DROPPED = "ack_dropped"
    """Committed, but its channel closed before the acknowledgement: redelivered, then a duplicate."""
    VOID = "void"
    """Its channel closed before it was processed: the broker redelivers it."""


# Outcomes that need an operator's eye in the log.
WARNING_OUTCOMES = frozenset({Settled.DEAD_LETTERED, Settled.REQUEUED, Settled.ACK_DROPPED})


@dataclass(frozen=True, slots=True)
class Settlement:
    """One delivery's result: what it was, what became of it, and when."""

    delivery: Delivery
    event: Event | None
    """None when the body could not be decoded into an event."""
    settled: Settled
    tries: int
    """Tries made in this delivery (in place, batch splits); `attempts` adds the earlier ones."""
    settled_at: float
    """`time.perf_counter()` when it was settled."""
    by_commit: bool = False
    """Settled by a commit (applied or duplicate, acknowledged with its batch), not on its own."""
    reason: str | None = None
    detail: str | None = None

    @property
    def attempts(self) -> int:
        """Every try so far: earlier retry cycles, broker redeliveries and this delivery's.

        Read from the headers only when a log line needs it (not per committed event).
        """
        from worker.broker.settlement import prior_attempts  # here: settlement imports this module

        return prior_attempts(self.delivery) + self.tries
