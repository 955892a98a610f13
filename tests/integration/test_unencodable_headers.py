"""A poison whose headers pamqp cannot write back is dead-lettered alone; its neighbours are applied."""

from __future__ import annotations

import time

from tests.support.amqp import Gateway, drain_queue, queue_depth
from tests.support.db import tokens_used
from tests.support.events import message_created
from tests.support.waiting import eventually
from tests.support.wire import RawProperties, long_string, publish_raw_properties, table
from worker.contract.names import DEAD_LETTER_QUEUE, EXCHANGE, WORKER_QUEUE

NOT_UTF8 = b"gateway-\xff\xfe-eu"


async def test_a_poison_with_a_long_string_header_that_is_not_utf8_is_dead_lettered_alone(
    worker, user_id, db, amqp_url
) -> None:
    poison = RawProperties(
        table({"x-attempt-note": "first"}, {"x-origin": long_string(NOT_UTF8)}),
        content_type="application/cloudevents+json", delivery_mode=2, message_id="poison",
    )
    async with Gateway(amqp_url) as gateway:
        valid = [message_created(user_id, prompt_tokens=1, completion_tokens=1) for _ in range(299)]
        await gateway.publish_many(valid[:150])
        await publish_raw_properties(amqp_url, "message.created", b"not json", poison, exchange=EXCHANGE)
        published = time.monotonic()
        await gateway.publish_many(valid[150:])

    [dead] = await eventually(lambda: drain_queue(amqp_url, DEAD_LETTER_QUEUE), timeout=30)
    took_s = time.monotonic() - published
    await eventually(lambda: _equals(tokens_used(db, user_id), 2 * 299), timeout=60)

    assert dead.message_id == "poison" and dead.body == b"not json"
    assert dead.headers["x-error-reason"] == "invalid_json"
    assert dead.headers["x-origin"] == bytearray(NOT_UTF8)
    assert dead.headers["x-attempt-note"] == "first"
    detail = dead.headers["x-error-detail"]
    assert "x-origin carried as a byte array" in detail and "gateway-" not in detail
    assert took_s < 10
    assert _sample(worker, "worker_redeliveries_total") == 0
    # One subscription all along: a closed channel would have made the consumer subscribe again.
    assert _sample(worker, "worker_consumer_restarts_total") == 1
    assert _sample(worker, "worker_events_total", outcome="dead_lettered") == 1
    assert _sample(worker, "worker_events_total", outcome="requeued") == 0
    assert await queue_depth(amqp_url, WORKER_QUEUE) == 0


async def _equals(value, expected) -> bool:
    return await value == expected


def _sample(worker, name: str, **labels: str) -> float:
    total = 0.0
    for metric in worker.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
