"""`worker dlq stats|peek|replay|discard` against the real broker (and the real worker where it matters)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import aiormq
import pytest
from sqlalchemy import text

from tests.integration.test_policy import policy_in_force, reject_until_dead_lettered
from tests.support.amqp import Gateway, declare_worker_topology, drain_queue, queue_depth
from tests.support.db import create_user, scalar, tokens_used
from tests.support.events import body as encode
from tests.support.events import message_created, usage_recorded
from tests.support.processes import REPO, settings_env
from tests.support.waiting import eventually
from tests.support.wire import RawProperties, double, long_string, publish_raw_properties, table
from worker.broker.policy import apply_policy
from worker.commands.dlq import discard, peek, replay, stats
from worker.contract.names import DEAD_LETTER_QUEUE, EXCHANGE, WORKER_QUEUE
from worker.service.event_types import EVENT_TYPES
from worker.settings import Settings

SECRET = "the user's private words"
FAILURE_HEADERS = ("x-error-reason", "x-error-detail", "x-attempts", "x-death", "x-retry-reason", "x-retry-step",
                   "x-original-routing-key", "x-delivery-count")


async def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "worker", *args], cwd=REPO, env=settings_env(settings),
        capture_output=True, timeout=120,
    )


def dead_letter(
    event_id: str,
    reason: str | None,
    *,
    event: dict[str, Any] | None = None,
    body: bytes | None = None,
    routing_key: str | None = "message.created",
    timestamp: datetime | None = None,
    headers: dict[str, Any] | None = None,
) -> aio_pika.Message:
    """A message as it sits in the dead-letter queue after the worker (or the broker) put it there."""
    all_headers: dict[str, Any] = {"x-origin": "gateway-eu"}
    if reason is not None:
        all_headers.update({"x-error-reason": reason, "x-error-detail": f"{reason} (test)", "x-attempts": 3,
                            "x-retry-reason": reason, "x-retry-step": 1})
    if routing_key is not None:
        all_headers["x-original-routing-key"] = routing_key
    all_headers.update(headers or {})
    if body is None:
        body = encode(event or message_created(uuid.uuid4(), event_id=event_id, content=SECRET))
    return aio_pika.Message(
        body=body,
        headers=all_headers,
        content_type="application/cloudevents+json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event_id,
        timestamp=timestamp,
        type="message.created",
        app_id="llm-gateway",
        correlation_id=f"corr-{event_id}",
    )


async def put_dead_letters(amqp_url: str, *messages: aio_pika.Message) -> None:
    """Publish straight into the dead-letter queue (default exchange, confirmed)."""
    await declare_worker_topology(amqp_url, [1])
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        for message in messages:
            await channel.default_exchange.publish(message, DEAD_LETTER_QUEUE, mandatory=True)
    finally:
        await connection.close()


async def broker_dead_letter(settings: Settings, amqp_url: str, event: dict[str, Any]) -> None:
    """Make the broker itself dead-letter `event` (delivery limit), as after a crash loop."""
    await declare_worker_topology(amqp_url, [1])
    await apply_policy(settings)
    await eventually(lambda: policy_in_force(settings))
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(event, message_id=event["id"])
    depth_before = await queue_depth(amqp_url, DEAD_LETTER_QUEUE)
    assert await reject_until_dead_lettered(amqp_url) > 20

    async def arrived() -> bool:
        return await queue_depth(amqp_url, DEAD_LETTER_QUEUE) > depth_before

    await eventually(arrived)


async def dead_letter_ids(amqp_url: str) -> list[str | None]:
    """Ids in the dead-letter queue, head first (this empties it)."""
    return [m.message_id for m in await drain_queue(amqp_url, DEAD_LETTER_QUEUE)]


async def test_stats_counts_by_reason_including_one_the_broker_dead_lettered(settings, amqp_url) -> None:
    await broker_dead_letter(settings, amqp_url, message_created(uuid.uuid4(), event_id="crash-loop"))
    await put_dead_letters(
        amqp_url,
        dead_letter("a", "invalid_json", body=b"not json"),
        dead_letter("b", "unknown_user"),
        dead_letter("c", "invalid_json", body=b"{also not json"),
    )
    assert await stats(settings) == {"delivery_limit": 1, "invalid_json": 2, "unknown_user": 1}

    result = await cli(settings, "dlq", "stats")
    assert result.returncode == 0, result.stderr.decode()
    lines = [line.split() for line in result.stdout.decode().splitlines()]
    assert lines == [["invalid_json", "2"], ["delivery_limit", "1"], ["unknown_user", "1"], ["total", "4"]]
    assert await dead_letter_ids(amqp_url) == ["crash-loop", "a", "b", "c"]


async def test_stats_and_peek_leave_the_queue_content_and_order_as_they_were(settings, amqp_url) -> None:
    ids = [f"e{i}" for i in range(6)]
    await put_dead_letters(amqp_url, *(dead_letter(i, "invalid_event") for i in ids))
    assert sum((await stats(settings)).values()) == 6
    assert [v.event_id for v in await peek(settings, 2)] == ids[:2]
    assert [v.event_id for v in await peek(settings, 100)] == ids
    assert sum((await stats(settings)).values()) == 6
    messages = await drain_queue(amqp_url, DEAD_LETTER_QUEUE)
    assert [m.message_id for m in messages] == ids
    assert all(m.body and m.headers["x-error-reason"] == "invalid_event" for m in messages)


async def test_peek_shows_headers_ids_and_sizes_but_bodies_only_when_asked(settings, amqp_url) -> None:
    letter = dead_letter("evt-peek-1", "unknown_user")
    await put_dead_letters(amqp_url, letter, dead_letter("evt-peek-2", "invalid_event"))

    result = await cli(settings, "dlq", "peek", "-n", "1")
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "event_id=evt-peek-1 reason=unknown_user routing_key=message.created" in out
    assert f"size={len(letter.body)}B" in out
    assert "header x-error-detail: unknown_user (test)" in out and "header x-origin: gateway-eu" in out
    assert "evt-peek-2" not in out
    assert SECRET not in out + result.stderr.decode()

    shown = await cli(settings, "dlq", "peek", "--show-body")
    assert shown.returncode == 0 and SECRET in shown.stdout.decode() and "evt-peek-2" in shown.stdout.decode()
    assert await dead_letter_ids(amqp_url) == ["evt-peek-1", "evt-peek-2"]


async def test_replay_republishes_only_the_selected_reason_and_removes_what_was_confirmed(settings, amqp_url) -> None:
    sent = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    letters = [
        dead_letter("u1", "unknown_user", timestamp=sent),
        dead_letter("j1", "invalid_json", body=b"\x00not json"),
        dead_letter("u2", "unknown_user", routing_key="usage.recorded",
                    event=usage_recorded(uuid.uuid4(), event_id="u2"), headers={"x-delivery-count": 4}),
        dead_letter("j2", "invalid_json", body=b"[]"),
    ]
    await put_dead_letters(amqp_url, *letters)

    report = await replay(settings, reason="unknown_user")
    assert report.replayed == ["u1", "u2"] and report.failed == [] and report.kept == 2
    assert await dead_letter_ids(amqp_url) == ["j1", "j2"]

    copies = {m.message_id: m for m in await drain_queue(amqp_url, WORKER_QUEUE)}
    assert set(copies) == {"u1", "u2"}
    for original in (letters[0], letters[2]):
        copy = copies[original.message_id]
        assert copy.body == original.body
        # x-delivery-count 0: the broker's own count of this (first) delivery from the worker queue.
        assert copy.headers == {"x-origin": "gateway-eu", "x-delivery-count": 0,
                                "x-original-routing-key": original.headers["x-original-routing-key"]}
        assert (copy.content_type, copy.delivery_mode, copy.type, copy.app_id, copy.correlation_id) == (
            original.content_type, 2, original.type, original.app_id, original.correlation_id,
        )
        # Straight to the worker queue, not through the exchange.
        assert (copy.exchange, copy.routing_key) == ("", WORKER_QUEUE)
    assert copies["u2"].headers["x-original-routing-key"] == "usage.recorded"
    assert copies["u1"].timestamp.replace(tzinfo=UTC) == sent


async def test_a_dry_run_changes_nothing(settings, amqp_url) -> None:
    await put_dead_letters(amqp_url, *(dead_letter(f"d{i}", "retries_exhausted") for i in range(3)))
    result = await cli(settings, "dlq", "replay", "--dry-run")
    assert result.returncode == 0, result.stderr.decode()
    assert b"would replay d0" in result.stdout and b"would replay 3" in result.stdout
    assert await queue_depth(amqp_url, WORKER_QUEUE) == 0
    assert await dead_letter_ids(amqp_url) == ["d0", "d1", "d2"]


async def test_replay_stops_at_the_limit_and_never_revisits_what_it_put_back(settings, amqp_url) -> None:
    await put_dead_letters(
        amqp_url, dead_letter("k1", "invalid_event"), dead_letter("r1", "retries_exhausted"),
        dead_letter("k2", "invalid_event"), dead_letter("r2", "retries_exhausted"), dead_letter("r3", "retries_exhausted"),
        dead_letter("k3", "invalid_event"),
    )
    report = await asyncio.wait_for(replay(settings, reason="retries_exhausted", limit=2), timeout=30)
    assert report.replayed == ["r1", "r2"] and report.kept == 4
    assert await queue_depth(amqp_url, WORKER_QUEUE) == 2
    assert await dead_letter_ids(amqp_url) == ["k1", "k2", "r3", "k3"]


async def test_replay_routes_by_x_death_and_then_by_the_bodys_type(settings, amqp_url) -> None:
    await broker_dead_letter(settings, amqp_url, usage_recorded(uuid.uuid4(), event_id="crashed"))
    typed = usage_recorded(uuid.uuid4(), event_id="typed")
    await put_dead_letters(amqp_url, dead_letter("typed", "invalid_event", event=typed, routing_key=None))

    report = await replay(settings)
    assert report.replayed == ["crashed", "typed"]
    copies = {m.message_id: m for m in await drain_queue(amqp_url, WORKER_QUEUE)}
    assert copies["crashed"].headers.pop("x-original-routing-key") == "usage.recorded"
    assert copies["typed"].headers["x-original-routing-key"] == "usage.recorded"
    assert copies["crashed"].headers.pop("x-delivery-count") == 0
    assert not set(FAILURE_HEADERS) & set(copies["crashed"].headers)
    assert await queue_depth(amqp_url, DEAD_LETTER_QUEUE) == 0


async def test_a_replay_whose_routing_key_the_worker_queue_is_not_bound_to_stays_in_the_queue(
    settings, amqp_url
) -> None:
    await put_dead_letters(
        amqp_url, dead_letter("lost", "unknown_type", routing_key="message.deleted"),
        dead_letter("fine", "unknown_type"),
    )
    result = await cli(settings, "dlq", "replay", "--reason", "unknown_type")
    assert result.returncode == 1
    assert b"kept lost: routing key 'message.deleted' is not bound to the worker queue" in result.stderr
    assert b"replayed fine" in result.stdout
    assert await dead_letter_ids(amqp_url) == ["lost"]
    assert [m.message_id for m in await drain_queue(amqp_url, WORKER_QUEUE)] == ["fine"]


async def test_replaying_an_event_that_was_already_applied_changes_no_counter(db, worker, amqp_url, settings) -> None:
    user_id = await create_user(db)
    event = message_created(user_id, prompt_tokens=20, completion_tokens=2)
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(event, message_id=event["id"])
        await eventually(lambda: has_tokens(db, user_id, 22))
        await put_dead_letters(amqp_url, dead_letter(event["id"], "retries_exhausted", event=event))

        report = await replay(settings, reason="retries_exhausted")
        assert report.replayed == [event["id"]]
        # The replayed copy is delivered before this later event; once both are done, the copy was handled.
        sentinel = usage_recorded(user_id, prompt_tokens=1)
        await gateway.publish(sentinel)
    await eventually(lambda: has_tokens(db, user_id, 23))
    await eventually(lambda: idle(worker, amqp_url))
    assert await tokens_used(db, user_id) == 23
    assert await scalar(db, "SELECT total_tokens FROM conversations WHERE user_id = :u", u=user_id) == 22
    assert await scalar(db, "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                            " WHERE c.user_id = :u", u=user_id) == 1
    assert await queue_depth(amqp_url, DEAD_LETTER_QUEUE) == 0


async def test_replaying_an_unknown_user_event_after_the_user_exists_applies_it(db, worker, amqp_url, settings) -> None:
    user_id = uuid.uuid4()
    event = message_created(user_id, prompt_tokens=30, completion_tokens=3)
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(event, message_id=event["id"])
    await eventually(lambda: queue_depth(amqp_url, DEAD_LETTER_QUEUE), timeout=60)
    assert await stats(settings) == {"unknown_user": 1}

    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO users (id, email, hashed_password) VALUES (:id, :email, '!')"),
                           {"id": user_id, "email": f"{user_id}@late.test"})
    result = await cli(settings, "dlq", "replay", "--reason", "unknown_user")
    assert result.returncode == 0, result.stderr.decode()
    assert f"replayed {event['id']}".encode() in result.stdout
    await eventually(lambda: has_tokens(db, user_id, 33))
    assert await queue_depth(amqp_url, DEAD_LETTER_QUEUE) == 0


async def test_discard_removes_only_the_reason_and_age_asked_for(settings, amqp_url) -> None:
    now = datetime.now(UTC)
    broker_death = {"x-death": [{"count": 21, "reason": "delivery_limit", "queue": WORKER_QUEUE, "exchange": "llm.events",
                                 "time": now - timedelta(days=20), "routing-keys": ["message.created"]}]}
    await put_dead_letters(
        amqp_url,
        dead_letter("old", "invalid_json", timestamp=now - timedelta(days=10)),
        dead_letter("recent", "invalid_json", timestamp=now - timedelta(hours=1)),
        dead_letter("ageless", "invalid_json"),
        dead_letter("crashed", None, routing_key=None, headers=broker_death),
        dead_letter("ghost", "unknown_user", timestamp=now - timedelta(days=30)),
    )
    result = await cli(settings, "dlq", "discard", "--reason", "invalid_json", "--older-than", "7d")
    assert result.returncode == 0, result.stderr.decode()
    assert b"discarded 1" in result.stdout
    assert re.search(rb'"event_id": ?"old"', result.stderr) and b"dead_letter_discarded" in result.stderr
    assert SECRET.encode() not in result.stdout + result.stderr

    assert (await discard(settings, reason="delivery_limit", older_than=timedelta(days=21))).discarded == []
    assert (await discard(settings, reason="delivery_limit", older_than=timedelta(days=14))).discarded == ["crashed"]
    assert (await discard(settings, reason="unknown_user")).discarded == ["ghost"]
    assert await dead_letter_ids(amqp_url) == ["recent", "ageless"]


async def test_the_tools_say_so_when_there_is_no_dead_letter_queue(settings) -> None:
    result = await cli(settings, "dlq", "stats")
    assert result.returncode == 1 and b"does not exist" in result.stderr


async def has_tokens(db, user_id: uuid.UUID, expected: int) -> bool:
    return await tokens_used(db, user_id) == expected


async def idle(worker, amqp_url: str) -> bool:
    return worker.consumer.in_flight == 0 and await queue_depth(amqp_url, WORKER_QUEUE) == 0


async def test_retention_counts_from_when_the_worker_dead_lettered_the_event(settings, amqp_url) -> None:
    now = datetime.now(UTC)
    await put_dead_letters(
        amqp_url,
        # Published long ago, dead-lettered recently: kept.
        dead_letter("late", "invalid_event", timestamp=now - timedelta(days=30),
                    headers={"x-dead-lettered-at": now - timedelta(hours=2)}),
        # No publish time from the gateway, dead-lettered long ago: discarded.
        dead_letter("stale", "invalid_event", headers={"x-dead-lettered-at": now - timedelta(days=20)}),
    )
    assert (await discard(settings, reason="invalid_event", older_than=timedelta(days=14))).discarded == ["stale"]
    assert await dead_letter_ids(amqp_url) == ["late"]


async def test_replayed_event_goes_to_the_worker_queue_alone(db, worker, amqp_url, settings) -> None:
    user_id = await create_user(db)
    event = message_created(user_id, prompt_tokens=7, completion_tokens=1)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        other = await channel.declare_queue("another-subscriber", durable=True)
        # Every type the gateway publishes (not "#": the worker's relay publishes threshold events
        # there, of whichever test's users crossed one in this session's shared database).
        for routing_key in EVENT_TYPES.routing_keys:
            await other.bind(EXCHANGE, routing_key)
        await put_dead_letters(amqp_url, dead_letter(event["id"], "retries_exhausted", event=event))

        report = await replay(settings)
        assert report.replayed == [event["id"]] and report.failed == []
        await eventually(lambda: has_tokens(db, user_id, 8))
        await eventually(lambda: idle(worker, amqp_url))
        assert await queue_depth(amqp_url, "another-subscriber") == 0
        assert await queue_depth(amqp_url, DEAD_LETTER_QUEUE) == 0
    finally:
        await connection.close()


async def test_a_replay_without_a_worker_queue_fails_and_keeps_the_dead_letter(settings, amqp_url) -> None:
    await put_dead_letters(amqp_url, dead_letter("orphan", "unknown_user"))
    connection = await aio_pika.connect(amqp_url)
    try:
        await (await connection.channel()).queue_delete(WORKER_QUEUE)
    finally:
        await connection.close()

    result = await cli(settings, "dlq", "replay")
    assert result.returncode == 1
    assert b"kept orphan: broker returned the message for 'llm.events.worker' (unroutable)" in result.stderr
    assert await dead_letter_ids(amqp_url) == ["orphan"]


async def put_odd_dead_letter(amqp_url: str, event_id: str, reason: str, body: bytes, delivery_mode: int = 2) -> None:
    """A dead letter whose headers pamqp decodes but would not encode."""
    await declare_worker_topology(amqp_url, [1])
    headers = table(
        {"x-error-reason": reason, "x-error-detail": f"{reason} (test)", "x-attempts": 1,
         "x-original-routing-key": "message.created"},
        {"x-origin": long_string(b"gateway-\xff\xfe"), "x-score": double(1e300)},
    )
    properties = RawProperties(headers, content_type="application/cloudevents+json", message_id=event_id,
                               delivery_mode=delivery_mode, timestamp=datetime.now(UTC))
    await publish_raw_properties(amqp_url, DEAD_LETTER_QUEUE, body, properties)


async def test_dead_letters_with_headers_pamqp_cannot_write_are_shown_replayed_and_discarded(
    db, worker, amqp_url, settings
) -> None:
    user_id = await create_user(db)
    event = message_created(user_id, prompt_tokens=4, completion_tokens=1, content=SECRET)
    await put_odd_dead_letter(amqp_url, event["id"], "unknown_user", encode(event))
    await put_odd_dead_letter(amqp_url, "odd-json", "invalid_json", b"not json")

    peeked = await cli(settings, "dlq", "peek")
    assert peeked.returncode == 0, peeked.stderr.decode()
    out = peeked.stdout.decode()
    assert f"event_id={event['id']} reason=unknown_user routing_key=message.created" in out
    assert "header x-score: 1e+300" in out and "header x-origin: gateway-" in out
    assert b"Traceback" not in peeked.stderr and SECRET not in out
    assert await stats(settings) == {"unknown_user": 1, "invalid_json": 1}

    replayed = await cli(settings, "dlq", "replay", "--reason", "unknown_user")
    assert replayed.returncode == 0, replayed.stderr.decode()
    assert f"replayed {event['id']}".encode() in replayed.stdout
    await eventually(lambda: has_tokens(db, user_id, 5))

    discarded = await cli(settings, "dlq", "discard", "--reason", "invalid_json")
    assert discarded.returncode == 0, discarded.stderr.decode()
    assert b"discarded 1" in discarded.stdout and b"Traceback" not in discarded.stderr
    await eventually(lambda: idle(worker, amqp_url))
    assert await queue_depth(amqp_url, DEAD_LETTER_QUEUE) == 0


async def test_the_broker_refuses_a_delivery_mode_other_than_1_or_2(amqp_url) -> None:
    # So no dead letter can carry one; the worker's copies would replace it by 2 anyway.
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="delivery_mode_unknown"):
        await put_odd_dead_letter(amqp_url, "odd-mode", "invalid_json", b"not json", delivery_mode=3)
