"""One handler per event type: what the event claims of the shared counters, and how its own rows are stored.

A new event type needs: its pydantic model (worker.contract.events), a handler here, and
its line in `worker.service.event_types`. `worker.service.batch` does the rest —
idempotency, user and owner checks, counters — the same way for every type.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol

from worker.contract.events import Event, MessageCreatedData, UsageRecordedData
from worker.errors import TransientError
from worker.service.ports import AbstractUnitOfWork
from worker.service.rows import ConversationClaim, MessageRow, UsageRow

UNKNOWN_MODEL = "unknown"


class BatchConflict(TransientError):
    """A concurrent transaction stored a row this batch assumed new: retry the batch at once."""


Charge = tuple[str | None, int, int, Decimal | None]
"""What an event charges: model, prompt tokens, completion tokens, and the cost it was sent with."""


class Handler(Protocol):
    def user_id(self, event: Event) -> uuid.UUID: ...

    def tokens(self, event: Event) -> int: ...

    def charge(self, event: Event) -> Charge: ...

    def message_id(self, event: Event) -> uuid.UUID | None: ...

    def conversation(self, event: Event) -> ConversationClaim | None: ...

    async def store(self, events: Sequence[Event], costs: Sequence[Decimal | None], uow: AbstractUnitOfWork) -> None:
        """Store the events' own rows; `costs[i]` is the cost of `events[i]` (None: unknown)."""


class MessageCreatedHandler:
    """`message.created`: a message row in its conversation."""

    def user_id(self, event: Event) -> uuid.UUID:
        return _message(event).user_id

    def tokens(self, event: Event) -> int:
        return _message(event).total_tokens

    def charge(self, event: Event) -> Charge:
        data = _message(event)
        return (data.model, data.prompt_tokens, data.completion_tokens, data.cost_usd)

    def message_id(self, event: Event) -> uuid.UUID | None:
        return _message(event).message_id

    def conversation(self, event: Event) -> ConversationClaim:
        data = _message(event)
        created_at = data.created_at or event.time
        return ConversationClaim(
            id=data.conversation_id,
            model=data.model or UNKNOWN_MODEL,
            title=data.conversation_title,
            at=created_at,
            touch_at=created_at,
        )

    async def store(self, events: Sequence[Event], costs: Sequence[Decimal | None], uow: AbstractUnitOfWork) -> None:
        rows = [
            MessageRow(
                id=data.message_id,
                conversation_id=data.conversation_id,
                role=data.role,
                content=data.content,
                model=data.model,
                prompt_tokens=data.prompt_tokens,
                completion_tokens=data.completion_tokens,
                metadata_json=event.metadata_json,
                created_at=data.created_at or event.time,
                cost_usd=cost,
            )
            for event, cost in zip(events, costs, strict=True)
            for data in (_message(event),)
        ]
        stored = await uow.messages.add_all(rows)
        if len(stored) != len(rows):
            raise BatchConflict("a message was stored concurrently under another event id")


class UsageRecordedHandler:
    """`usage.recorded`: a usage record, and the API key's `last_used_at`."""

    def user_id(self, event: Event) -> uuid.UUID:
        return _usage(event).user_id

    def tokens(self, event: Event) -> int:
        return _usage(event).total_tokens

    def charge(self, event: Event) -> Charge:
        data = _usage(event)
        return (data.model, data.prompt_tokens, data.completion_tokens, data.cost_usd)

    def message_id(self, event: Event) -> uuid.UUID | None:
        return None  # a reference only, never an identity

    def conversation(self, event: Event) -> ConversationClaim | None:
        data = _usage(event)
        if data.conversation_id is None:
            return None
        return ConversationClaim(id=data.conversation_id, model=data.model, title=None, at=event.time, touch_at=None)

    async def store(self, events: Sequence[Event], costs: Sequence[Decimal | None], uow: AbstractUnitOfWork) -> None:
        rows = [
            UsageRow(
                source=event.source,
                event_id=event.id,
                user_id=data.user_id,
                conversation_id=data.conversation_id,
                message_id=data.message_id,
                api_key_id=data.api_key_id,
                model=data.model,
                prompt_tokens=data.prompt_tokens,
                completion_tokens=data.completion_tokens,
                request_id=data.request_id,
                recorded_at=event.time,
                cost_usd=cost,
            )
            for event, cost in zip(events, costs, strict=True)
            for data in (_usage(event),)
        ]
        await uow.usage_records.add_all(rows)
        await uow.api_keys.touch([(r.api_key_id, r.user_id, r.recorded_at) for r in rows if r.api_key_id])


def _message(event: Event) -> MessageCreatedData:
    assert isinstance(event.data, MessageCreatedData)
    return event.data


def _usage(event: Event) -> UsageRecordedData:
    assert isinstance(event.data, UsageRecordedData)
    return event.data
