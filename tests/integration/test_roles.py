"""ops/postgres roles on a real cluster: the worker runs as its restricted role and can do nothing more."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.amqp import Gateway, queue_depth
from tests.support.config import make_settings
from tests.support.db import create_user, rows, scalar, tokens_used
from tests.support.events import message_created, usage_recorded
from tests.support.roles import Roles, apply_roles, apply_worker_grants, drop_roles, new_roles
from tests.support.services import create_database, drop_database, unique_name
from tests.support.waiting import eventually
from worker.db import schema
from worker.db.inbox_partitions import ensure_inbox_partitions
from worker.runtime.app import start_worker, stop_worker
from worker.settings import Settings

TABLES = ("users", "conversations", "messages", "usage_records", "api_keys", "processed_events", "alembic_version")


@pytest.fixture(scope="module")
async def roles() -> AsyncIterator[Roles]:
    """A database migrated as the owner, in the deploy order: roles → migrate → worker grants."""
    name = unique_name("aiworker_roles")
    made = new_roles(name)
    try:
        await create_database(name)
        await apply_roles(made)
        owner = Settings(_env_file=None, database_url=made.sqlalchemy_url(made.owner))
        await asyncio.to_thread(schema.upgrade, owner)
        engine = create_async_engine(owner.database_url, pool_size=1)
        try:
            await ensure_inbox_partitions(engine, owner, drop_expired=True)
        finally:
            await engine.dispose()
        await apply_worker_grants(made)
        yield made
    finally:
        await drop_database(name)
        await drop_roles(made.worker, made.owner)


@pytest.fixture(scope="module")
async def owner_db(roles: Roles) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(roles.sqlalchemy_url(roles.owner), pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def as_worker(roles: Roles) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(roles.libpq_url(roles.worker))
    yield conn
    await conn.close()


async def test_the_migrated_tables_belong_to_the_owner_role(roles: Roles, owner_db: AsyncEngine) -> None:
    owners = await rows(
        owner_db,
        "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(:names)",
        names=list(TABLES),
    )
    assert {row["tablename"]: row["tableowner"] for row in owners} == dict.fromkeys(TABLES, roles.owner)


async def test_roles_sql_can_run_again_on_a_migrated_database(roles: Roles) -> None:
    await apply_roles(roles)
    await apply_worker_grants(roles)


async def test_a_worker_running_as_the_restricted_role_applies_events_exactly_once(
    roles: Roles, owner_db: AsyncEngine, amqp_url: str
) -> None:
    # `worker users create` is an admin tool: it runs as the owner.
    user_id = await create_user(owner_db)
    key_id = uuid.uuid4()
    async with owner_db.begin() as conn:
        await conn.execute(
            text("INSERT INTO api_keys (id, user_id, key_hash, name) VALUES (:id, :user, :hash, 'ci')"),
            {"id": key_id, "user": user_id, "hash": f"hash-{key_id}"},
        )
    conversation_id = uuid.uuid4()
    message = message_created(user_id, conversation_id=conversation_id, prompt_tokens=30, completion_tokens=12)
    usage = usage_recorded(user_id, prompt_tokens=100, conversation_id=conversation_id, api_key_id=key_id)
    # More days ahead than `worker migrate` made: start-up maintenance tries DDL the role lacks.
    settings = make_settings(
        roles.sqlalchemy_url(roles.worker), amqp_url, inbox_days_ahead=10, require_queue_policy=False
    )

    worker = await start_worker(settings)
    try:
        async with Gateway(amqp_url) as gateway:
            for event in (message, usage, message, usage):
                await gateway.publish(event)
        await eventually(lambda: _applied_count(owner_db, message["id"], usage["id"]))
        await eventually(lambda: _all_settled(amqp_url))
    finally:
        await stop_worker(worker, settings)

    assert await tokens_used(owner_db, user_id) == 42 + 100
    [conversation] = await rows(owner_db, "SELECT * FROM conversations WHERE id = :id", id=conversation_id)
    assert conversation["total_tokens"] == 142 and conversation["user_id"] == user_id
    assert await scalar(owner_db, "SELECT count(*) FROM messages WHERE conversation_id = :id", id=conversation_id) == 1
    assert await scalar(owner_db, "SELECT count(*) FROM usage_records WHERE event_id = :id", id=usage["id"]) == 1
    last_used = await scalar(owner_db, "SELECT last_used_at FROM api_keys WHERE id = :id", id=key_id)
    assert last_used == datetime.fromisoformat(usage["time"]).astimezone(UTC)
    assert await queue_depth(amqp_url, "llm.events.worker.dlq") == 0


async def _applied_count(db: AsyncEngine, *event_ids: str) -> bool:
    found = await scalar(db, "SELECT count(*) FROM processed_events WHERE event_id = ANY(:ids)", ids=list(event_ids))
    return found == len(event_ids)


async def _all_settled(amqp_url: str) -> bool:
    return await queue_depth(amqp_url, "llm.events.worker") == 0


@pytest.mark.parametrize("table", TABLES)
async def test_the_worker_role_cannot_delete_from_any_table(as_worker: asyncpg.Connection, table: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_worker.execute(f"DELETE FROM {table}")


@pytest.mark.parametrize("table", TABLES)
async def test_the_worker_role_cannot_truncate_any_table(as_worker: asyncpg.Connection, table: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_worker.execute(f"TRUNCATE {table}")


@pytest.mark.parametrize("table", TABLES)
async def test_the_worker_role_cannot_alter_or_drop_any_table(as_worker: asyncpg.Connection, table: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_worker.execute(f"ALTER TABLE {table} ADD COLUMN intruder int")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_worker.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE users SET email = 'someone@else.test'",
        "UPDATE users SET hashed_password = 'x'",
        "UPDATE users SET tokens_limit = 0",
        "UPDATE users SET tier = 'enterprise'",
        "UPDATE conversations SET user_id = gen_random_uuid()",
        "UPDATE messages SET content = 'rewritten'",
        "UPDATE usage_records SET prompt_tokens = 0",
        "UPDATE api_keys SET is_active = false",
        "UPDATE processed_events SET processed_on = current_date",
    ],
)
async def test_the_worker_role_cannot_update_columns_it_has_no_business_with(
    as_worker: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_worker.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT email FROM users",
        "SELECT hashed_password FROM users",
        "SELECT key_hash FROM api_keys",
        "SELECT content FROM messages",
        "INSERT INTO users (id, email, hashed_password) VALUES (gen_random_uuid(), 'x@y.test', '!')",
        "INSERT INTO api_keys (id, user_id, key_hash, name) VALUES (gen_random_uuid(), gen_random_uuid(), 'h', 'n')",
        "CREATE TABLE intruder (id int)",
    ],
)
async def test_the_worker_role_cannot_read_secrets_create_users_keys_or_tables(
    as_worker: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_worker.execute(statement)


async def test_the_worker_role_cannot_take_the_owner_role(as_worker: asyncpg.Connection, roles: Roles) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_worker.execute(f'SET ROLE "{roles.owner}"')


async def test_a_partition_the_owner_creates_later_is_usable_but_not_deletable_by_the_worker(
    roles: Roles, owner_db: AsyncEngine, as_worker: asyncpg.Connection
) -> None:
    async with owner_db.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE processed_events_p20991231 PARTITION OF processed_events "
                "FOR VALUES FROM ('2099-12-31') TO ('2100-01-01')"
            )
        )
    await as_worker.execute(
        "INSERT INTO processed_events_p20991231 (source, event_id, processed_on, event_type) "
        "VALUES ('test', $1, '2099-12-31', 'usage.recorded')",
        str(uuid.uuid4()),
    )
    assert await as_worker.fetchval("SELECT count(*) FROM processed_events_p20991231") == 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_worker.execute("DELETE FROM processed_events_p20991231")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_worker.execute("DROP TABLE processed_events_p20991231")
