"""The producer's Prometheus metrics, on prometheus_client's default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SPOOL_EVENTS = Gauge("worker_producer_spool_events", "Events in the producer's spool, not yet confirmed by the broker.")
SPOOL_BYTES = Gauge("worker_producer_spool_bytes", "Body bytes in the producer's spool.")
SPOOL_REFUSED = Counter(
    "worker_producer_spool_refused_events_total", "Events refused because the spool held its maximum of bytes."
)
PUBLISHED = Counter("worker_producer_published_events_total", "Events the broker confirmed.")
PUBLISH_FAILURES = Counter(
    "worker_producer_publish_failures_total",
    "Publish attempts that failed (returned, nacked, timed out, broker unreachable); the events stay spooled.",
)
