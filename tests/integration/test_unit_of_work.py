"""Unit of Work and repositories on the real database: rollback by default, atomic counters."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.config import migrated_database
from tests.support.db import create_user, scalar, tokens_used
from tests.support.events import body, message_created
from tests.support.services import drop_database, unique_name
from tests.support.waiting import eventually
from worker.contract.decoding import Limits, decode_event
from worker.db import repositories
from worker.db.failures import sqlstate_of
from worker.db.inbox_partitions import maintain_partitions, partition_name
from worker.db.models import User
from worker.db.unit_of_work import UnitOfWork
from worker.service.batch import apply_batch
from worker.service.event_types import EVENT_TYPES
from worker.service.handlers import BatchConflict
from worker.service.outcomes import Outcome
from worker.service.rows import EventKey, Usage


async def test_leaving_without_commit_rolls_back(db) -> None:
    user_id = uuid.uuid4()
    async with UnitOfWork(db) as uow:
        uow.users.add(User(id=user_id, email=f"{user_id}@rollback.test", hashed_password="!"))
        await uow.session.flush()
    assert await scalar(db, "SELECT count(*) FROM users WHERE id = :id", id=user_id) == 0


async def test_an_exception_inside_the_unit_rolls_back(db) -> None:
    user_id = await create_user(db)
    with pytest.raises(RuntimeError):
        async with UnitOfWork(db) as uow:
            assert await uow.users.existing([user_id]) == {user_id}
            await uow.users.add_usage({user_id: Usage(500)})
            raise RuntimeError("boom")
    assert await tokens_used(db, user_id) == 0


async def test_commit_persists_and_keeps_attributes_readable(db) -> None:
    user_id = uuid.uuid4()
    async with UnitOfWork(db) as uow:
        user = User(id=user_id, email=f"{user_id}@commit.test", hashed_password="!")
        uow.users.add(user)
        await uow.commit()
    # expire_on_commit=False: no implicit IO after commit.
    assert user.email == f"{user_id}@commit.test"
    assert await scalar(db, "SELECT count(*) FROM users WHERE id = :id", id=user_id) == 1


async def test_concurrent_increments_lose_nothing(db) -> None:
    user_id = await create_user(db)

    async def add(n: int) -> None:
        async with UnitOfWork(db) as uow:
            await uow.users.existing([user_id])
            await asyncio.sleep(0)
            await uow.users.add_usage({user_id: Usage(n)})
            await uow.commit()

    await asyncio.gather(*(add(n) for n in range(1, 41)))
    assert await tokens_used(db, user_id) == sum(range(1, 41))


async def test_counters_pass_two_to_the_thirty_one(db) -> None:
    user_id = await create_user(db, tokens_used=2**31 - 10)
    async with UnitOfWork(db) as uow:
        await uow.users.add_usage({user_id: Usage(2**31 - 1)})
        await uow.commit()
    assert await tokens_used(db, user_id) == 2**32 - 11


async def test_existing_reports_only_users_that_exist(db) -> None:
    present = await create_user(db)
    async with UnitOfWork(db) as uow:
        assert await uow.users.existing([uuid.uuid4(), present]) == {present}


async def test_inbox_recognises_a_key_recorded_on_an_earlier_day(db) -> None:
    source, event_id = "test/inbox", f"evt-{uuid.uuid4()}"
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    async with db.begin() as conn:
        await maintain_partitions(conn, today=yesterday, days_ahead=0, retention_days=None)
        await conn.execute(
            text(
                "INSERT INTO processed_events (source, event_id, event_type, processed_on) "
                "VALUES (:s, :e, 'usage.recorded', :d)"
            ),
            {"s": source, "e": event_id, "d": yesterday},
        )
    old, new = EventKey(source, event_id, "usage.recorded"), EventKey(source, event_id + "-new", "usage.recorded")
    async with UnitOfWork(db) as uow:
        assert await uow.inbox.record_new([old, new]) == {new.pair}
        assert await uow.inbox.seen([old, new]) == {old.pair, new.pair}


@pytest.fixture
async def private_db():
    name = unique_name("aiworker_partitions")
    engine = create_async_engine(await migrated_database(name))
    yield engine
    await engine.dispose()
    await drop_database(name)


async def test_partition_maintenance_creates_ahead_and_drops_only_expired_days(private_db) -> None:
    db = private_db
    today = date(2031, 3, 10)
    async with db.begin() as conn:
        created = await maintain_partitions(conn, today=today, days_ahead=2, retention_days=None)
    assert created.created == [partition_name(today + timedelta(days=n)) for n in range(3)]
    async with db.begin() as conn:
        later = await maintain_partitions(conn, today=today + timedelta(days=32), days_ahead=0, retention_days=30)
    assert set(later.dropped) >= {partition_name(today), partition_name(today + timedelta(days=1))}
    assert partition_name(today + timedelta(days=2)) not in later.dropped


async def test_a_day_already_in_the_default_partition_does_not_stop_maintenance(private_db) -> None:
    day = date(2032, 1, 1)
    async with private_db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO processed_events (source, event_id, event_type, processed_on) "
                "VALUES ('s', 'e', 'usage.recorded', :d)"
            ),
            {"d": day},
        )
    async with private_db.begin() as conn:
        report = await maintain_partitions(conn, today=day, days_ahead=1, retention_days=None)
    assert report.failed == [partition_name(day)]
    assert report.created == [partition_name(day + timedelta(days=1))]


async def _blocked_on_a_lock(db) -> bool:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    return await scalar(db, sql) > 0


@pytest.mark.parametrize("same_owner", [True, False], ids=["same-user", "other-user"])
async def test_a_conversation_another_transaction_creates_meanwhile(db, same_owner) -> None:
    """Same owner: the batch grows it in the same try. Another owner: the batch must start again."""
    user_id, other_id = await create_user(db), await create_user(db)
    conversation = uuid.uuid4()
    event = decode_event(
        body(message_created(user_id, conversation_id=conversation, prompt_tokens=10, completion_tokens=5)),
        None, datetime.now(UTC), Limits(), EVENT_TYPES,
    )
    async with db.connect() as other:
        await other.execute(
            text("INSERT INTO conversations (id, user_id, model, total_tokens) VALUES (:id, :user, 'theirs', 7)"),
            {"id": conversation, "user": user_id if same_owner else other_id},
        )
        applying = asyncio.create_task(apply_batch([event], UnitOfWork(db), EVENT_TYPES))
        await eventually(lambda: _blocked_on_a_lock(db), timeout=10)
        await other.commit()
    if same_owner:
        assert await applying == [Outcome.APPLIED]
        assert await scalar(db, "SELECT total_tokens FROM conversations WHERE id = :id", id=conversation) == 22
        assert await tokens_used(db, user_id) == 15
    else:
        with pytest.raises(BatchConflict):
            await applying
        assert await tokens_used(db, user_id) == 0
        assert await scalar(db, "SELECT total_tokens FROM conversations WHERE id = :id", id=conversation) == 7


_USAGE_ROW = (
    "INSERT INTO usage_records (id, event_source, event_id, user_id, model, prompt_tokens, completion_tokens, "
    "recorded_at) VALUES (gen_random_uuid(), 'test', :event_id, :user, 'm', 1, 0, now())"
)


async def test_storing_a_usage_record_leaves_its_users_row_unlocked_until_commit(db) -> None:
    """The foreign-key check waits for commit, so a hot user's row gets no extra locker (MultiXact)."""
    user_id = await create_user(db)
    async with db.connect() as writer:
        await writer.execute(text(_USAGE_ROW), {"event_id": f"evt-{uuid.uuid4()}", "user": user_id})
        # xmax names the row's locker (or MultiXact of lockers); 0 while nobody holds it.
        assert await scalar(db, "SELECT xmax::text FROM users WHERE id = :id", id=user_id) == "0"
        await writer.commit()


async def test_a_usage_record_of_a_missing_user_still_fails_at_commit(db) -> None:
    async with db.connect() as writer:
        await writer.execute(text(_USAGE_ROW), {"event_id": f"evt-{uuid.uuid4()}", "user": uuid.uuid4()})
        with pytest.raises(DBAPIError) as raised:
            await writer.commit()
    assert sqlstate_of(raised.value) == "23503"


@pytest.mark.parametrize(
    ("statement", "table", "arguments"),
    [
        (repositories._ADD_USER_USAGE, "users", lambda ids: (ids, [1] * len(ids), ["1"] * len(ids))),
        (repositories._GROW_CONVERSATIONS, "conversations", lambda ids: (ids, [1] * len(ids), [None] * len(ids),
                                                                          [datetime.now(UTC)] * len(ids),
                                                                          ["1"] * len(ids))),
    ],
    ids=["users", "conversations"],
)
async def test_counter_rows_are_locked_in_id_order_whatever_order_they_are_given(
    db, statement: str, table: str, arguments
) -> None:
    """Lock and grow are one statement; its rows are still locked in id order, so it cannot deadlock."""
    users = sorted([await create_user(db) for _ in range(2)], key=lambda u: u.int)
    if table == "users":
        low, high = users
    else:
        low, high = sorted([await _conversation(db, users[0]) for _ in range(2)], key=lambda c: c.int)
    holder, grower, prober = await db.connect(), await db.connect(), await db.connect()
    try:
        await holder.execute(text(f"SELECT 1 FROM {table} WHERE id = :id FOR NO KEY UPDATE"), {"id": high})
        driver = (await grower.get_raw_connection()).driver_connection
        await grower.execute(text("SELECT 1"))  # opens the transaction
        # Given high first: a statement that locked in the order given would wait on `high`
        # before touching `low`.
        growing = asyncio.ensure_future(driver.fetch(statement, *arguments([high, low])))

        async def low_is_locked() -> bool:
            try:
                await prober.execute(text(f"SELECT 1 FROM {table} WHERE id = :id FOR NO KEY UPDATE NOWAIT"),
                                     {"id": low})
            except DBAPIError as error:
                await prober.rollback()
                return sqlstate_of(error) == "55P03"
            await prober.rollback()
            return False

        await eventually(low_is_locked, timeout=10)
        assert not growing.done()
        await holder.rollback()
        assert {row[0] for row in await growing} == {low, high}
        await grower.rollback()
    finally:
        for conn in (holder, grower, prober):
            await conn.close()


async def _conversation(db, user_id: uuid.UUID) -> uuid.UUID:
    conversation_id = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO conversations (id, user_id, model, total_tokens) VALUES (:id, :user, 'm', 0)"),
            {"id": conversation_id, "user": user_id},
        )
    return conversation_id
