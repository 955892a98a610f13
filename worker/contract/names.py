"""Fixed AMQP names and header keys of the contract (docs/CONTRACT.md)."""

EXCHANGE = "llm.events"
WORKER_QUEUE = "llm.events.worker"
DEAD_LETTER_QUEUE = "llm.events.worker.dlq"
DELAY_QUEUE_PREFIX = "llm.events.worker.delay."

MESSAGE_CREATED = "message.created"
USAGE_RECORDED = "usage.recorded"
QUOTA_THRESHOLD_CROSSED = "quota.threshold_crossed"
"""The one event the worker publishes (from its outbox) to `llm.events`."""

CONTENT_TYPE = "application/cloudevents+json"
"""What the worker's own tools publish (structured-mode CloudEvents)."""
ACCEPTED_CONTENT_TYPES = frozenset({CONTENT_TYPE, "application/json"})

HEADER_REASON = "x-error-reason"
HEADER_DETAIL = "x-error-detail"
HEADER_ATTEMPTS = "x-attempts"
HEADER_DEATH = "x-death"
HEADER_DELIVERY_COUNT = "x-delivery-count"


def delay_queue_name(delay_s: int) -> str:
    """Name of the delay queue that holds a retried event for `delay_s` seconds."""
    return f"{DELAY_QUEUE_PREFIX}{delay_s}s"
