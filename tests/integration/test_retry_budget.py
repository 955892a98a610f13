"""Retries have one total budget: an event that used it up under other reasons is dead-lettered at once."""

from __future__ import annotations

import uuid

from tests.support.amqp import Gateway, drain_queue
from tests.support.events import message_created
from tests.support.waiting import eventually
from worker.contract.names import DEAD_LETTER_QUEUE


async def test_an_event_whose_retry_budget_is_spent_is_dead_lettered_with_the_reason_at_hand(
    worker, amqp_url, settings
) -> None:
    # As if it had already gone round every delay queue, the last time for a transient error.
    budget = len(settings.retry_delays_s) + len(settings.unknown_user_delays_s)
    event = message_created(uuid.uuid4())
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(event, message_id=event["id"], headers={
            "x-retry-cycles": budget, "x-retry-reason": "retries_exhausted", "x-retry-step": 0,
        })

    [dead] = await eventually(lambda: drain_queue(amqp_url, DEAD_LETTER_QUEUE), timeout=30)
    assert dead.message_id == event["id"]
    assert dead.headers["x-error-reason"] == "unknown_user"
    assert dead.headers["x-error-detail"].endswith(f"retry budget spent ({budget} delay-queue cycles in all)")
    assert worker.metrics.registry.get_sample_value("worker_retries_total", {"reason": "unknown_user"}) is None
