"""The consumer's own subscription (made on aiormq, which aio-pika does not restore) comes back by itself."""

from __future__ import annotations

import aio_pika

from tests.support.amqp import Gateway
from tests.support.db import create_user, tokens_used
from tests.support.events import usage_recorded
from tests.support.waiting import eventually
from worker.contract.names import WORKER_QUEUE


def _subscribed_anew(worker, old_tag: str):
    async def probe() -> bool:
        return worker.consumer.consuming and worker.consumer.subscription.consumer_tag not in (None, old_tag)

    return probe


async def test_a_consumer_cancelled_by_the_broker_subscribes_again(db, worker, amqp_url) -> None:
    user_id = await create_user(db)
    tag_before = worker.consumer.subscription.consumer_tag
    # Deleting the queue makes the broker cancel every consumer on it (basic.cancel). The
    # worker's first try to subscribe again fails (no queue: the broker closes the channel),
    # aio-pika reopens the channel and declares the queue and its bindings again, and the
    # consumer subscribes on the new channel.
    connection = await aio_pika.connect(amqp_url)
    try:
        await (await connection.channel()).queue_delete(WORKER_QUEUE)
    finally:
        await connection.close()
    await eventually(_subscribed_anew(worker, tag_before), timeout=30)
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(usage_recorded(user_id, prompt_tokens=7, completion_tokens=5))

    async def applied() -> bool:
        return await tokens_used(db, user_id) == 12

    await eventually(applied, timeout=30)
