"""Fault: threshold events wait out an unbound routing key and a broker outage, then all go out.

A worker on a private RabbitMQ node writes threshold events while no queue is bound to
`quota.threshold_crossed` (the broker returns every publish), then the node is stopped and
started; once a queue is bound, every event is published, under the id it was written with.
"""

from __future__ import annotations

import asyncio

import aio_pika
import orjson
from sqlalchemy import text

from tests.support.db import create_users, rows, scalar
from tests.support.events import usage_recorded
from tests.support.waiting import eventually
from worker.contract.names import EXCHANGE, QUOTA_THRESHOLD_CROSSED

USERS = 3
THRESHOLD_QUEUE = "test.quota.thresholds"


async def _outbox(db, users) -> list[dict]:
    return await rows(db, "SELECT event_id, sent_at FROM outbox WHERE ordering_key = ANY(:u) ORDER BY seq", u=users)


async def test_threshold_events_wait_for_a_bound_queue_and_a_restarted_broker_then_all_go_out(
    db, database_url, rabbit_node, new_scenario
) -> None:
    users = await create_users(db, USERS)
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET tokens_limit = 100 WHERE id = ANY(:u)"), {"u": users})
    scenario = await new_scenario(db, database_url, rabbit_node.amqp_url, heartbeat_s=5, consumer_watchdog_s=60,
                                  outbox_poll_interval_s=0.2)
    scenario.spawn()
    await scenario.wait_consumers(1, timeout=30)
    # Each user: 85 tokens (80 % reached), then 20 more (100 %): two events each.
    events = [usage_recorded(u, prompt_tokens=85) for u in users] + [usage_recorded(u, prompt_tokens=20) for u in users]
    async with scenario.publisher() as publisher:
        assert await publisher.publish_many(events[:USERS]) == USERS
        await scenario.wait_applied(USERS)
        assert await publisher.publish_many(events[USERS:]) == USERS
    await scenario.wait_applied(len(events))

    async def written() -> bool:
        return len(await _outbox(db, users)) == 2 * USERS

    await eventually(written, timeout=30)
    scenario.fault("no queue bound to quota.threshold_crossed: every publish returned")
    await scenario.wait_logged("outbox_not_published", 2)
    assert all(row["sent_at"] is None for row in await _outbox(db, users))

    await asyncio.to_thread(rabbit_node.stop)
    scenario.fault("RabbitMQ node stopped with the threshold events unsent")
    await asyncio.sleep(3)
    await asyncio.to_thread(rabbit_node.start)
    scenario.recover("RabbitMQ node started")
    await scenario.wait_consumers(1, interval=0.5)
    connection = await aio_pika.connect(rabbit_node.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(THRESHOLD_QUEUE, durable=True)
        await queue.bind(exchange, QUOTA_THRESHOLD_CROSSED)
        scenario.recover("a queue bound to quota.threshold_crossed")

        async def all_sent() -> bool:
            return all(row["sent_at"] is not None for row in await _outbox(db, users))

        # The relay backs off up to 30 s between failed rounds.
        await eventually(all_sent, timeout=90, interval=0.5)
        received = []
        # The session's fault tests share the database: the relay also publishes threshold events that
        # earlier tests (with no queue bound) left unsent. Only this test's users' events are compared.
        ours = {str(user) for user in users}
        others = 0
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            event = orjson.loads(message.body)
            assert message.message_id == event["id"]
            if event["data"]["user_id"] in ours:
                received.append(event)
            else:
                others += 1
        print(f"threshold events: {len(received)} of this test's users received, {others} left by earlier tests")
        # The node outlives this test: the next one must find the routing key unbound again.
        await queue.delete(if_unused=False, if_empty=False)
    finished = await scenario.finish(settle_timeout=60, workers=1, applied=len(events))
    assert not finished.report.dead_lettered
    written_ids = [row["event_id"] for row in await _outbox(db, users)]
    assert sorted({m["id"] for m in received}) == sorted(written_ids)
    for user in users:
        mine = [m for m in received if m["data"]["user_id"] == str(user)]
        # Per user, in the order written: 80 % first, then 100 %.
        assert [m["data"]["thresholds"] for m in dict((m["id"], m) for m in mine).values()] == [[80], [100]]
    assert await scalar(db, "SELECT count(*) FROM quota_crossings WHERE user_id = ANY(:u)", u=users) == 2 * USERS
