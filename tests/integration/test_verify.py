"""`worker verify`: counters recomputed from rows, drift reported by id and number only."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.amqp import Gateway
from tests.support.config import migrated_database
from tests.support.db import create_user, scalar, tokens_used
from tests.support.events import message_created, usage_recorded
from tests.support.processes import REPO, settings_env
from tests.support.services import drop_database, unique_name
from tests.support.waiting import eventually
from worker.db.counter_drift import Drift, find_drift
from worker.settings import Settings


async def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "worker", *args], cwd=REPO, env=settings_env(settings),
        capture_output=True, timeout=120,
    )


async def has_tokens(db, user_id: uuid.UUID, expected: int) -> bool:
    return await tokens_used(db, user_id) == expected


async def user_with_real_events(db, amqp_url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A user whose counters the worker built: two messages and two usage records (one in the conversation)."""
    user_id, conversation = await create_user(db), uuid.uuid4()
    events = [
        message_created(user_id, conversation_id=conversation, prompt_tokens=11, completion_tokens=7),
        message_created(user_id, conversation_id=conversation, prompt_tokens=3, completion_tokens=2),
        usage_recorded(user_id, conversation_id=conversation, prompt_tokens=100, completion_tokens=1),
        usage_recorded(user_id, prompt_tokens=40),
    ]
    async with Gateway(amqp_url) as gateway:
        for event in events:
            await gateway.publish(event)
    await eventually(lambda: has_tokens(db, user_id, 18 + 5 + 101 + 40))
    return user_id, conversation


async def test_no_drift_after_real_events(db, worker, amqp_url) -> None:
    user_id, conversation = await user_with_real_events(db, amqp_url)
    assert await scalar(db, "SELECT total_tokens FROM conversations WHERE id = :id", id=conversation) == 18 + 5 + 101
    assert await find_drift(db, user_id) == []
    assert [d for d in await find_drift(db) if d.user_id == user_id] == []


async def test_a_corrupted_counter_is_reported_with_ids_and_numbers(db, worker, amqp_url) -> None:
    user_id, conversation = await user_with_real_events(db, amqp_url)
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET tokens_used = tokens_used + 7 WHERE id = :id"), {"id": user_id})
        await conn.execute(text("UPDATE conversations SET total_tokens = total_tokens - 3 WHERE id = :id"), {"id": conversation})
    expected = [
        Drift("user", user_id, user_id, expected=164, actual=171),
        Drift("conversation", conversation, user_id, expected=124, actual=121),
    ]
    assert await find_drift(db, user_id) == expected
    everything = await find_drift(db)
    assert all(d in everything for d in expected)


async def test_a_cost_counter_off_its_rows_is_drift_of_its_own(db, worker, amqp_url) -> None:
    user_id = await create_user(db)
    conversation = uuid.uuid4()
    events = [
        usage_recorded(user_id, conversation_id=conversation, cost_usd="0.25"),
        usage_recorded(user_id, cost_usd="1.5"),
        usage_recorded(user_id, model="no-price", prompt_tokens=3),  # unpriced: NULL, counted as 0
    ]
    async with Gateway(amqp_url) as gateway:
        for event in events:
            await gateway.publish(event)
    await eventually(lambda: has_tokens(db, user_id, 203))
    assert await find_drift(db, user_id) == []
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET cost_used = cost_used + 0.000000000001 WHERE id = :id"),
                           {"id": user_id})
        await conn.execute(text("UPDATE conversations SET cost_used = 0 WHERE id = :id"), {"id": conversation})
    assert await find_drift(db, user_id) == [
        Drift("user", user_id, user_id, expected=Decimal("1.75"), actual=Decimal("1.750000000001"), counter="cost"),
        Drift("conversation", conversation, user_id, expected=Decimal("0.25"), actual=Decimal(0), counter="cost"),
    ]
    assert (await find_drift(db, user_id))[0].describe().endswith(
        "users.cost_used is 1.750000000001, rows add up to 1.750000000000 (off by +0.000000000001)")


async def test_rows_without_a_counter_and_a_counter_without_rows_are_both_drift(db) -> None:
    user_id = await create_user(db, tokens_used=50)
    conversation = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO conversations (id, user_id, model, total_tokens) VALUES (:c, :u, 'm', 0)"),
            {"c": conversation, "u": user_id},
        )
        await conn.execute(
            text("INSERT INTO messages (id, conversation_id, role, content, prompt_tokens, completion_tokens)"
                 " VALUES (gen_random_uuid(), :c, 'user', 'secret words', 2147483647, 2147483647)"),
            {"c": conversation},
        )
    drifts = await find_drift(db, user_id)
    # 2 * (2^31 - 1): the sum is taken in BIGINT, not in the columns' INTEGER.
    assert [(d.kind, d.expected, d.actual) for d in drifts] == [("user", 4294967294, 50), ("conversation", 4294967294, 0)]
    assert "secret words" not in " ".join(d.describe() for d in drifts)


async def test_the_cli_exits_1_on_drift_and_0_when_counters_match(db, worker, amqp_url, settings) -> None:
    clean, _ = await user_with_real_events(db, amqp_url)
    corrupt, conversation = await user_with_real_events(db, amqp_url)
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET tokens_used = 1 WHERE id = :id"), {"id": corrupt})

    ok = await cli(settings, "verify", "--user", str(clean))
    assert ok.returncode == 0, ok.stdout.decode() + ok.stderr.decode()
    assert b"ok" in ok.stdout

    bad = await cli(settings, "verify", "--user", str(corrupt))
    assert bad.returncode == 1
    assert f"user {corrupt}: users.tokens_used is 1, rows add up to 164".encode() in bad.stdout
    assert str(conversation).encode() not in bad.stdout  # the conversation itself is still right
    assert b"hello from a test" not in bad.stdout + bad.stderr

    everything = await cli(settings, "verify")
    assert everything.returncode == 1 and str(corrupt).encode() in everything.stdout


async def test_verify_is_set_based_and_fast_on_many_rows() -> None:
    name = unique_name("aiworker_verify")
    url = await migrated_database(name)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL statement_timeout = 0"))
            await conn.execute(text(
                "INSERT INTO users (id, email, hashed_password, tokens_used)"
                " SELECT gen_random_uuid(), 'u' || i || '@x.test', '!', 300 FROM generate_series(1, 20000) i"
            ))
            await conn.execute(text(
                "INSERT INTO conversations (id, user_id, model, total_tokens)"
                " SELECT gen_random_uuid(), id, 'm', 150 FROM users, generate_series(1, 2)"
            ))
            await conn.execute(text(
                "INSERT INTO messages (id, conversation_id, role, content, prompt_tokens, completion_tokens)"
                " SELECT gen_random_uuid(), id, 'user', 'x', 10, 5 FROM conversations, generate_series(1, 10)"
            ))
            await conn.execute(text("UPDATE users SET tokens_used = 301 WHERE email = 'u7@x.test'"))
            await conn.execute(text("ANALYZE"))
        started = time.perf_counter()
        drifts = await find_drift(engine)
        elapsed = time.perf_counter() - started
        assert [(d.kind, d.expected, d.actual) for d in drifts] == [("user", 300, 301)]
        # 400k messages: a per-user loop would take minutes; set-based aggregation takes about a second.
        assert elapsed < 10, f"verify took {elapsed:.1f}s on 400k messages"
    finally:
        await engine.dispose()
        await drop_database(name)
