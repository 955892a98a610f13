"""The consumer's metrics and log lines for settled deliveries; never message content."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import structlog

from worker.broker.settled import WARNING_OUTCOMES, Settled, Settlement
from worker.observability.metrics import Metrics, observe_many
from worker.service.outcomes import Outcome

log = structlog.get_logger("worker.broker.consumer")

# A delivery whose body never became an event is counted under this type.
UNDECODABLE = "undecodable"


class ConsumerTelemetry:
    """Turns a batch's settlements into metrics and log lines: one line per commit, one per event settled alone."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # A concrete logger (not structlog's lazy proxy) and metric children looked up once:
        # both are paid for every event otherwise.
        self._log = log.bind()
        is_enabled_for = getattr(self._log, "is_enabled_for", None)
        self._log_each = bool(is_enabled_for and is_enabled_for(logging.DEBUG))
        """Each committed event gets a DEBUG line of its own besides its batch's line."""
        self._events: dict[tuple[str, str], Any] = {}
        self._seconds: dict[str, Any] = {}

    def record(self, settlements: list[Settlement]) -> None:
        committed = [s for s in settlements if s.by_commit]
        if committed:
            self._record_committed(committed)
        for settlement in settlements:
            if not settlement.by_commit and settlement.settled is not Settled.VOID:
                self._record_alone(settlement)

    def _record_committed(self, committed: list[Settlement]) -> None:
        now = datetime.now(UTC)
        tokens: dict[str, int] = {}
        latencies: list[float] = []
        counts: Counter[tuple[str, str]] = Counter()
        durations: dict[str, list[float]] = {}
        ids: dict[str, list[str]] = {}
        for settlement in committed:
            event, outcome = settlement.event, settlement.settled
            assert event is not None
            if outcome is Settled.APPLIED:
                tokens[event.type] = tokens.get(event.type, 0) + event.data.total_tokens
                if event.published_at is not None:
                    latencies.append(max(0.0, (now - event.published_at).total_seconds()))
            duration = settlement.settled_at - settlement.delivery.received
            counts[(event.type, outcome)] += 1
            durations.setdefault(event.type, []).append(duration)
            if outcome is Settled.ACK_DROPPED:
                self._log_settled(settlement, duration)
                continue
            ids.setdefault(outcome.value, []).append(event.id)
            if self._log_each:
                self._log_settled(settlement, duration, write=self._log.debug)
        if ids:
            oldest = min(s.delivery.received for s in committed)
            self._log_committed(ids, committed[0].settled_at - oldest)
        # The batch's metrics in one go: per event they cost more than the rest of its bookkeeping.
        observe_many(self.metrics.publish_to_commit_seconds, latencies)
        for (event_type, outcome), count in counts.items():
            self._events_counter(event_type, outcome).inc(count)
        for event_type, seconds in durations.items():
            observe_many(self._seconds_histogram(event_type), seconds)
        for event_type, count in tokens.items():
            self.metrics.tokens.labels(event_type).inc(count)

    def _record_alone(self, settlement: Settlement) -> None:
        """The log line and the metrics of one event settled on its own (refused, retried, requeued)."""
        event_type = settlement.event.type if settlement.event is not None else UNDECODABLE
        duration = settlement.settled_at - settlement.delivery.received
        if settlement.settled is Settled.RETRIED:
            self.metrics.retries.labels(settlement.reason).inc()
        elif settlement.settled is Settled.DEAD_LETTERED:
            self.metrics.dead_lettered.labels(settlement.reason).inc()
        self._events_counter(event_type, settlement.settled).inc()
        self._seconds_histogram(event_type).observe(duration)
        self._log_settled(settlement, duration, reason=settlement.reason, detail=settlement.detail)

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

    def _log_settled(self, settlement: Settlement, duration: float, write: Any = None, **extra: object) -> None:
        """The log line of one settled event. Never its content."""
        event = settlement.event
        fields = {"event_id": event.id, "source": event.source, "type": event.type} if event is not None else {}
        if write is None:
            write = self._log.warning if settlement.settled in WARNING_OUTCOMES else self._log.info
        write(
            "event",
            outcome=str(settlement.settled),
            attempts=settlement.attempts,
            duration_ms=round(duration * 1000, 2),
            delivery_tag=settlement.delivery.delivery_tag,
            **fields,
            **extra,
        )

    def _events_counter(self, event_type: str, outcome: str) -> Any:
        counter = self._events.get((event_type, outcome))
        if counter is None:
            counter = self._events[(event_type, outcome)] = self.metrics.events.labels(event_type, str(outcome))
        return counter

    def _seconds_histogram(self, event_type: str) -> Any:
        histogram = self._seconds.get(event_type)
        if histogram is None:
            histogram = self._seconds[event_type] = self.metrics.processing_seconds.labels(event_type)
        return histogram


assert {o.value for o in Outcome} <= {s.value for s in Settled}, "every applier outcome is a settlement value"
