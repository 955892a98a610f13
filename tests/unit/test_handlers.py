"""The service layer applies the contract's effects all-or-nothing per event (against in-memory fakes)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.support.events import body, message_created, usage_recorded
from tests.unit.fakes import FakeStore, FakeUnitOfWork
from worker.contract.decoding import Limits, decode_event
from worker.contract.events import Event
from worker.contract.reasons import Reason
from worker.errors import EventRejected, UnknownUser
from worker.service.batch import apply_batch
from worker.service.event_types import EVENT_TYPES
from worker.service.handlers import BatchConflict
from worker.service.outcomes import Outcome

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def decoded(event: dict) -> Event:
    return decode_event(body(event), None, NOW, Limits(), EVENT_TYPES)


async def apply(store: FakeStore, event: dict) -> tuple[Outcome, FakeUnitOfWork]:
    """Apply one event as a batch of one; raise its failure like the worker would settle it."""
    uow = FakeUnitOfWork(store)
    [result] = await apply_batch([decoded(event)], uow, EVENT_TYPES)
    if isinstance(result, Exception):
        raise result
    return result, uow


async def apply_many(store: FakeStore, events: list[dict]) -> list:
    return await apply_batch([decoded(e) for e in events], FakeUnitOfWork(store), EVENT_TYPES)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def user(store: FakeStore) -> uuid.UUID:
    user_id = uuid.uuid4()
    store.users[user_id] = 0
    return user_id


async def test_message_created_stores_the_message_and_counts_its_tokens(store, user) -> None:
    event = message_created(user, prompt_tokens=7, completion_tokens=3, conversation_title="Hi")
    outcome, uow = await apply(store, event)
    assert outcome is Outcome.APPLIED and uow.committed
    conversation = store.conversations[uuid.UUID(event["data"]["conversation_id"])]
    assert store.users[user] == 10 and conversation["total_tokens"] == 10
    assert conversation["title"] == "Hi" and conversation["model"] == "gpt-test"
    assert uuid.UUID(event["data"]["message_id"]) in store.messages


async def test_a_repeated_event_id_is_a_duplicate_with_no_effect(store, user) -> None:
    event = message_created(user)
    await apply(store, event)
    repeat = message_created(user, event_id=event["id"], prompt_tokens=999)
    outcome, uow = await apply(store, repeat)
    assert outcome is Outcome.DUPLICATE and not uow.committed
    assert store.users[user] == 15 and len(store.messages) == 1


async def test_the_same_message_under_a_new_event_id_is_a_duplicate(store, user) -> None:
    event = message_created(user)
    await apply(store, event)
    again = message_created(user, message_id=event["data"]["message_id"], conversation_id=event["data"]["conversation_id"])
    outcome, _ = await apply(store, again)
    assert outcome is Outcome.DUPLICATE and store.users[user] == 15


async def test_an_unknown_user_changes_nothing(store) -> None:
    with pytest.raises(UnknownUser):
        await apply(store, message_created(uuid.uuid4()))
    assert not store.inbox and not store.conversations and not store.messages


async def test_another_users_conversation_is_refused_and_rolled_back(store, user) -> None:
    intruder = uuid.uuid4()
    store.users[intruder] = 0
    first = message_created(user)
    await apply(store, first)
    for event in (
        message_created(intruder, conversation_id=first["data"]["conversation_id"]),
        usage_recorded(intruder, conversation_id=first["data"]["conversation_id"]),
    ):
        with pytest.raises(EventRejected) as caught:
            await apply(store, event)
        assert caught.value.reason is Reason.CONVERSATION_OWNER_MISMATCH
    assert store.users[intruder] == 0 and len(store.inbox) == 1


async def test_a_missing_title_is_filled_in_but_an_existing_one_is_kept(store, user) -> None:
    conversation = str(uuid.uuid4())
    await apply(store, message_created(user, conversation_id=conversation))
    await apply(store, message_created(user, conversation_id=conversation, conversation_title="First"))
    await apply(store, message_created(user, conversation_id=conversation, conversation_title="Second"))
    assert store.conversations[uuid.UUID(conversation)]["title"] == "First"


async def test_usage_recorded_counts_for_user_and_conversation_and_touches_the_key(store, user) -> None:
    key = uuid.uuid4()
    store.api_keys[key] = {"user_id": user, "last_used_at": None}
    conversation = uuid.uuid4()
    event = usage_recorded(user, prompt_tokens=40, completion_tokens=2, conversation_id=conversation, api_key_id=key)
    outcome, _ = await apply(store, event)
    assert outcome is Outcome.APPLIED
    assert store.users[user] == 42 and store.conversations[conversation]["total_tokens"] == 42
    assert store.conversations[conversation]["model"] == "embed-test"
    assert store.api_keys[key]["last_used_at"] == datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    assert store.usage_records[0]["api_key_id"] == key


async def test_another_users_api_key_is_stored_but_not_touched(store, user) -> None:
    key = uuid.uuid4()
    store.api_keys[key] = {"user_id": uuid.uuid4(), "last_used_at": None}
    await apply(store, usage_recorded(user, api_key_id=key))
    assert store.api_keys[key]["last_used_at"] is None and store.users[user] == 100


async def test_a_batch_sums_counters_and_isolates_failing_events(store, user) -> None:
    stranger, conversation = uuid.uuid4(), str(uuid.uuid4())
    events = [
        message_created(user, conversation_id=conversation, prompt_tokens=1, completion_tokens=0),
        message_created(stranger, prompt_tokens=50),
        usage_recorded(user, conversation_id=conversation, prompt_tokens=2),
        message_created(user, conversation_id=conversation, prompt_tokens=4, completion_tokens=0),
    ]
    results = await apply_many(store, events)
    assert results[0] is Outcome.APPLIED and results[2] is Outcome.APPLIED and results[3] is Outcome.APPLIED
    assert isinstance(results[1], UnknownUser)
    assert store.users[user] == 7
    assert store.conversations[uuid.UUID(conversation)]["total_tokens"] == 7


async def test_duplicates_inside_one_batch_count_once(store, user) -> None:
    event = message_created(user, prompt_tokens=3, completion_tokens=0)
    same_message = message_created(user, message_id=event["data"]["message_id"], prompt_tokens=3, completion_tokens=0)
    results = await apply_many(store, [event, event, same_message])
    assert results == [Outcome.APPLIED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert store.users[user] == 3 and len(store.messages) == 1


async def test_a_new_conversation_belongs_to_the_first_user_in_the_batch(store, user) -> None:
    other, conversation = uuid.uuid4(), str(uuid.uuid4())
    store.users[other] = 0
    results = await apply_many(
        store, [message_created(user, conversation_id=conversation), message_created(other, conversation_id=conversation)]
    )
    assert results[0] is Outcome.APPLIED
    assert isinstance(results[1], EventRejected) and results[1].reason is Reason.CONVERSATION_OWNER_MISMATCH
    assert store.users[other] == 0


async def test_updated_at_moves_forward_to_the_latest_message_only(store, user) -> None:
    conversation = str(uuid.uuid4())
    late, early = "2026-11-28T09:00:00Z", "2026-11-28T08:00:00Z"
    await apply_many(store, [message_created(user, conversation_id=conversation, created_at=late)])
    await apply_many(
        store,
        [
            message_created(user, conversation_id=conversation, created_at=early),
            usage_recorded(user, conversation_id=conversation),
        ],
    )
    assert store.conversations[uuid.UUID(conversation)]["updated_at"] == datetime(2026, 11, 28, 9, tzinfo=UTC)


async def test_a_refused_event_seen_before_is_a_duplicate(store, user) -> None:
    event = usage_recorded(user)
    await apply_many(store, [event])
    del store.users[user]
    assert await apply_many(store, [event]) == [Outcome.DUPLICATE]


def concurrent_conversation(owner: uuid.UUID, *, tokens: int, title: str | None, updated_at: datetime) -> dict:
    """The row another transaction commits while this batch inserts the same new conversation."""
    at = datetime(2026, 11, 28, 6, tzinfo=UTC)
    return {"user_id": owner, "model": "theirs", "title": title, "total_tokens": tokens,
            "created_at": at, "updated_at": updated_at}


async def test_a_conversation_created_concurrently_for_the_same_user_is_grown_in_the_same_try(store, user) -> None:
    conversation = uuid.uuid4()
    store.committed_during_create[conversation] = concurrent_conversation(
        user, tokens=7, title=None, updated_at=datetime(2026, 11, 28, 8, 30, tzinfo=UTC)
    )
    events = [
        message_created(user, conversation_id=conversation, prompt_tokens=10, completion_tokens=5,
                        conversation_title="ours", created_at="2026-11-28T09:00:00Z"),
        usage_recorded(user, conversation_id=conversation, prompt_tokens=100),
    ]
    assert await apply_many(store, events) == [Outcome.APPLIED, Outcome.APPLIED]
    row = store.conversations[conversation]
    assert row["total_tokens"] == 7 + 15 + 100
    assert (row["model"], row["title"]) == ("theirs", "ours")
    assert row["updated_at"] == datetime(2026, 11, 28, 9, tzinfo=UTC)
    assert store.users[user] == 115 and len(store.messages) == 1


async def test_a_conversation_created_concurrently_for_another_user_makes_the_batch_start_again(store, user) -> None:
    other, conversation = uuid.uuid4(), uuid.uuid4()
    store.users[other] = 0
    store.committed_during_create[conversation] = concurrent_conversation(
        other, tokens=7, title=None, updated_at=datetime(2026, 11, 28, 6, tzinfo=UTC)
    )
    with pytest.raises(BatchConflict):
        await apply_many(store, [message_created(user, conversation_id=conversation)])
    assert store.users[user] == 0 and not store.messages
    # The next try sees the owner and refuses the event, as the contract's failure table says.
    [result] = await apply_many(store, [message_created(user, conversation_id=conversation)])
    assert isinstance(result, EventRejected) and result.reason is Reason.CONVERSATION_OWNER_MISMATCH
