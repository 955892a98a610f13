"""Prometheus metrics of one worker process, on a registry passed down from the composition root.

Label values are bounded: event types, outcomes and reason codes from the contract;
never a user, conversation or event id.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Every metric the worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "worker_events_total",
            "Events settled, by type and outcome (applied, duplicate, dead_lettered, retried, requeued).",
            ["type", "outcome"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "worker_dead_lettered_total", "Events the worker dead-lettered, by reason.", ["reason"], registry=r
        )
        self.retries = Counter(
            "worker_retries_total", "Events sent round a delay queue, by reason.", ["reason"], registry=r
        )
        self.processing_seconds = Histogram(
            "worker_event_processing_seconds",
            "From delivery to settlement of one event.",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.publish_to_commit_seconds = Histogram(
            "worker_publish_to_commit_seconds",
            "From the event's `time` (set by the publisher) to the commit that applied it.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "worker_batch_size", "Events applied per database transaction.", buckets=BATCH_BUCKETS, registry=r
        )
        self.in_flight = Gauge("worker_in_flight_deliveries", "Deliveries received and not yet settled.", registry=r)
        self.in_flight_bytes = Gauge(
            "worker_in_flight_bytes", "Message bytes received and not yet settled (WORKER_MAX_IN_FLIGHT_BYTES).",
            registry=r,
        )
        self.backpressure_seconds = Counter(
            "worker_backpressure_seconds_total",
            "Time the consuming connection was not read because the in-flight bytes were over their budget.",
            registry=r,
        )
        self.redeliveries = Counter(
            "worker_redeliveries_total", "Deliveries the broker marked as redelivered.", registry=r
        )
        self.tokens = Counter(
            "worker_tokens_counted_total", "Tokens added to users.tokens_used, by event type.", ["type"], registry=r
        )
        self.db_pool_in_use = Gauge("worker_db_pool_in_use", "Database connections checked out.", registry=r)
        self.db_pool_waits = Counter(
            "worker_db_pool_waits_total", "Times a unit of work waited for a pooled connection.", registry=r
        )
        self.broker_reconnects = Counter(
            "worker_broker_reconnects_total", "Times the broker connection was re-established.", registry=r
        )
        self.consumer_restarts = Counter(
            "worker_consumer_restarts_total", "Times consuming resumed after a pause or a reconnect.", registry=r
        )
        self.outages = Counter(
            "worker_outages_total", "Times processing paused because a dependency was down.", ["dependency"], registry=r
        )
        self.unpriced_events = Counter(
            "worker_unpriced_events_total",
            "Applied events with tokens whose cost was unknown (no cost_usd, and no price for their model): "
            "stored with a NULL cost.",
            registry=r,
        )
        self.threshold_events = Counter(
            "worker_quota_threshold_events_total", "quota.threshold_crossed events written to the outbox.", registry=r
        )
        self.outbox_published = Counter(
            "worker_outbox_published_total", "Outbox events the broker confirmed (then marked sent).", registry=r
        )
        self.outbox_failures = Counter(
            "worker_outbox_failures_total",
            "Outbox publishes not confirmed (publish, unroutable) and relay rounds that failed (round).",
            ["reason"],
            registry=r,
        )
        self.ready = Gauge("worker_ready", "1 when connected to broker and database and consuming.", registry=r)


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe(a)` for every amount, with one increment per bucket hit and one for the sum.

    prometheus_client has no batch observe: per event, `observe` is two locked increments and
    a Python loop over the buckets, 1.2 µs, twice an event on the hot path. This goes through
    the histogram's own bucket values (attributes of prometheus_client's `Histogram`, hence its
    pinned major version), so the exposition is the same as with one `observe` each.
    """
    if not amounts:
        return
    histogram._raise_if_not_observable()
    bounds = histogram._upper_bounds
    buckets = histogram._buckets
    # observe() files an amount under the first bound it does not exceed: bisect_left's index.
    for index, count in Tally(bisect_left(bounds, amount) for amount in amounts).items():
        if index < len(buckets):
            buckets[index].inc(count)
    histogram._sum.inc(sum(amounts))
