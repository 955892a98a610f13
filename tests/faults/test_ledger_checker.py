"""The ledger checker itself: every kind of discrepancy planted in a real database and vhost is found."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import aio_pika
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from structlog.testing import capture_logs

from tests.faults.scenario import fault_settings, mixed_events
from tests.support.amqp import declare_worker_topology
from tests.support.config import migrated_database
from tests.support.db import create_user, create_users, scalar, tokens_used
from tests.support.events import usage_recorded
from tests.support.publisher import EventLedger, RecordingPublisher
from tests.support.services import drop_database, unique_name
from worker.contract.names import DEAD_LETTER_QUEUE, HEADER_REASON, MESSAGE_CREATED, USAGE_RECORDED, WORKER_QUEUE
from worker.runtime.app import start_worker, stop_worker
from worker.testkit.ledger import LedgerChecker

EVENTS = 40
DELAYS = [1]


@pytest.fixture(autouse=True)
def batch_mode() -> int:
    """The checker does not depend on how the worker batches: once, with the default."""
    return 1


@pytest.fixture
async def own_db() -> AsyncIterator[AsyncEngine]:
    """A database of this test's own: the whole-database checks see nothing of other tests."""
    name = unique_name("aiworker_ledger")
    engine = create_async_engine(await migrated_database(name))
    yield engine
    await engine.dispose()
    await drop_database(name)


async def test_the_ledger_checker_passes_a_clean_run_and_finds_every_discrepancy_planted_after_it(
    own_db, amqp_url
) -> None:
    db, database_url = own_db, own_db.url.render_as_string(hide_password=False)
    users = await create_users(db, 3)
    await declare_worker_topology(amqp_url, DELAYS)
    ledger = EventLedger()
    async with RecordingPublisher(amqp_url, ledger) as publisher:
        assert await publisher.publish_many(mixed_events(users, EVENTS, random.Random(12))) == EVENTS
    checker = LedgerChecker(db, amqp_url, ledger, delays_s=DELAYS, whole_database=True)
    settings = fault_settings(database_url, amqp_url, retry_delays_s=DELAYS)
    with capture_logs():  # the in-process worker's log stays out of the test's output
        worker = await start_worker(settings)
        try:
            assert await checker.wait_settled(timeout=60)
        finally:
            await stop_worker(worker, settings)

    clean = await checker.check("clean")
    assert clean.ok and clean.problems() == [], clean.problems()
    assert clean.applied == clean.confirmed == EVENTS and not clean.dead_lettered

    counted = await tokens_used(db, users[1])
    spent = await scalar(db, "SELECT cost_used FROM users WHERE id = :u", u=users[2])
    assert spent == sum(e.cost for e in ledger.entries.values() if e.user_id == str(users[2])) > 0
    entries = list(ledger.entries.values())
    usage = next(e for e in entries if e.type == USAGE_RECORDED)
    dead = next(e for e in entries if e.type == MESSAGE_CREATED)
    # Lost: confirmed (as far as the ledger knows) and never published.
    lost = ledger.add_event(usage_recorded(users[0], prompt_tokens=3))
    lost.confirmed = 1
    outsider = await create_user(db, tokens_used=7)
    stray_conversation = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(text("DELETE FROM usage_records WHERE event_id = :id"), {"id": usage.key})
        await conn.execute(text("UPDATE users SET tokens_used = tokens_used + 5 WHERE id = :id"), {"id": users[1]})
        # A cost off by its last digit, the tokens right.
        await conn.execute(text("UPDATE users SET cost_used = cost_used + 0.000000000001 WHERE id = :id"),
                           {"id": users[2]})
        await conn.execute(text("INSERT INTO processed_events (source, event_id, event_type) VALUES ('x', 'stray', 't')"))
        await conn.execute(text("INSERT INTO conversations (id, user_id, model, total_tokens) VALUES (:c, :u, 'm', 0)"),
                           {"c": stray_conversation, "u": outsider})
    async with RecordingPublisher(amqp_url, ledger) as publisher:
        # Stranded: confirmed, with no worker left to take it.
        stranded = await publisher.publish(usage_recorded(users[2], prompt_tokens=4))
    connection = await aio_pika.connect(amqp_url)
    try:
        # A dead letter of an event that was applied, and one of an event nobody sent.
        channel = await connection.channel()
        for key in (dead.key, "never-sent"):
            message = aio_pika.Message(b"{}", message_id=key, headers={HEADER_REASON: "invalid_event"})
            await channel.default_exchange.publish(message, DEAD_LETTER_QUEUE)
    finally:
        await connection.close()

    report = await checker.check("planted")
    assert not report.ok
    assert report.lost == [lost.key]
    assert report.stranded == [stranded.key] and report.left_in_queues == {WORKER_QUEUE: 1}
    assert f"{usage.key} inbox=1 but rows=0" in report.double_applied
    assert any(line.startswith(f"{dead.key} inbox=1 rows=1 dlq=") for line in report.double_applied)
    assert report.wrong_dead_letters == [
        f"{dead.key} (valid) dead-lettered as ['invalid_event']",
        "never-sent: dead-lettered as ['invalid_event'], not in the ledger",
    ]
    assert sorted(report.counter_drift) == sorted([
        f"user {users[1]}: expected {counted}, stored {counted + 5}", f"user {outsider}: expected 0, stored 7",
        f"user {users[2]}: cost expected {spent}, stored {spent + Decimal('0.000000000001')}",
    ])
    assert report.double_counted_tokens == 5 + 7 and report.missing_tokens == 0
    drifted = " ".join(report.row_sum_drift)
    assert all(str(user) in drifted for user in (users[1], users[2], outsider, uuid.UUID(usage.user_id)))
    assert "1 inbox row(s) of events not sent, e.g. ['stray']" in report.unexpected
    assert f"conversation {stray_conversation} exists, but no event sent names it" in report.unexpected
    assert any(line.startswith("usage_records: ") for line in report.unexpected)
    assert len(report.problems()) == 9  # the seven kinds of list above, the tokens, the queue

