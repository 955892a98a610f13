"""A new event type is one declaration: decoding, handling and the queue's bindings all follow from it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ConfigDict, Field

from tests.support.events import body, envelope
from tests.unit.fakes import FakeStore, FakeUnitOfWork
from worker.contract.decoding import Limits, decode_event
from worker.contract.events import Event
from worker.contract.reasons import Reason
from worker.contract.types import EventType, EventTypes
from worker.errors import EventRejected
from worker.service.batch import apply_batch
from worker.service.event_types import EVENT_TYPES
from worker.service.outcomes import Outcome
from worker.service.ports import AbstractUnitOfWork

NOW = datetime(2026, 12, 4, tzinfo=UTC)


class PingRecordedData(BaseModel):
    """A throwaway type: a user spent tokens on a ping."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    user_id: uuid.UUID
    tokens: int = Field(strict=True, ge=0)


class PingRecordedHandler:
    """Counts the ping's tokens; stores no row of its own."""

    stored: list[str] = []

    def user_id(self, event: Event) -> uuid.UUID:
        return event.data.user_id

    def tokens(self, event: Event) -> int:
        return event.data.tokens

    def charge(self, event: Event) -> tuple[None, int, int, None]:
        return (None, event.data.tokens, 0, None)  # no model, no cost of its own: an unknown cost

    def message_id(self, event: Event) -> None:
        return None

    def conversation(self, event: Event) -> None:
        return None

    async def store(self, events: Sequence[Event], costs: Sequence[object], uow: AbstractUnitOfWork) -> None:
        self.stored.extend(event.id for event in events)


def _with_ping() -> tuple[EventTypes, PingRecordedHandler]:
    handler = PingRecordedHandler()
    handler.stored = []
    return EventTypes(*EVENT_TYPES, EventType("ping.recorded", PingRecordedData, handler)), handler


async def test_a_type_declared_once_is_decoded_applied_counted_and_bound() -> None:
    types, handler = _with_ping()
    user = uuid.uuid4()
    store = FakeStore(users={user: 5})
    ping = envelope("ping.recorded", {"user_id": str(user), "tokens": 7})
    event = decode_event(body(ping), None, NOW, Limits(), types)
    assert isinstance(event.data, PingRecordedData)
    assert await apply_batch([event], FakeUnitOfWork(store), types) == [Outcome.APPLIED]
    assert store.users[user] == 12 and handler.stored == [ping["id"]]
    # Applied again: the inbox knows it, as for every other type.
    assert await apply_batch([event], FakeUnitOfWork(store), types) == [Outcome.DUPLICATE]
    assert store.users[user] == 12
    assert "ping.recorded" in types.routing_keys


def test_a_type_not_declared_is_unknown() -> None:
    ping = envelope("ping.recorded", {"user_id": str(uuid.uuid4()), "tokens": 7})
    with pytest.raises(EventRejected) as refused:
        decode_event(body(ping), None, NOW, Limits(), EVENT_TYPES)
    assert refused.value.reason is Reason.UNKNOWN_TYPE


def test_two_declarations_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="share a name"):
        EventTypes(*EVENT_TYPES, *EVENT_TYPES)
