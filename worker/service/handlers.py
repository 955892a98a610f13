"""Handlers: `apply_<event>(event, uow)`; each runs the contract's effects in one transaction.

Order inside the transaction: inbox record (duplicate check) → user counter (user check,
locks the user row) → conversation upsert with its counter (owner check) → the event's
own row → commit. The user row is always locked before any conversation row, so two
transactions can never wait on each other in opposite orders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from worker.contract.events import Event, MessageCreatedData, UsageRecordedData
from worker.contract.names import MESSAGE_CREATED, USAGE_RECORDED
from worker.contract.reasons import Reason
from worker.errors import EventRejected, UnknownUser
from worker.service.outcomes import Outcome
from worker.service.ports import AbstractUnitOfWork

UNKNOWN_MODEL = "unknown"


async def apply_message_created(event: Event, uow: AbstractUnitOfWork) -> Outcome:
    """Store a chat message, create or update its conversation, and count its tokens."""
    data = event.data
    assert isinstance(data, MessageCreatedData)
    created_at = data.created_at or event.time
    async with uow:
        if not await uow.inbox.record(
            source=event.source, event_id=event.id, event_type=event.type, message_id=data.message_id
        ):
            return Outcome.DUPLICATE
        if not await uow.users.add_tokens(data.user_id, data.total_tokens):
            raise UnknownUser()
        if not await uow.conversations.upsert_with_tokens(
            conversation_id=data.conversation_id,
            user_id=data.user_id,
            model=data.model or UNKNOWN_MODEL,
            tokens=data.total_tokens,
            at=created_at,
            title=data.conversation_title,
            touch=True,
        ):
            raise _owner_mismatch()
        if not await uow.messages.add_if_new(
            {
                "id": data.message_id,
                "conversation_id": data.conversation_id,
                "role": data.role,
                "content": data.content,
                "model": data.model,
                "prompt_tokens": data.prompt_tokens,
                "completion_tokens": data.completion_tokens,
                "metadata": data.metadata,
                "created_at": created_at,
            }
        ):
            # The same message under another event id, committed while we were running.
            return Outcome.DUPLICATE
        await uow.commit()
    return Outcome.APPLIED


async def apply_usage_recorded(event: Event, uow: AbstractUnitOfWork) -> Outcome:
    """Store a usage record and count its tokens for the user (and conversation, if any)."""
    data = event.data
    assert isinstance(data, UsageRecordedData)
    async with uow:
        if not await uow.inbox.record(source=event.source, event_id=event.id, event_type=event.type):
            return Outcome.DUPLICATE
        if not await uow.users.add_tokens(data.user_id, data.total_tokens):
            raise UnknownUser()
        if data.conversation_id is not None and not await uow.conversations.upsert_with_tokens(
            conversation_id=data.conversation_id,
            user_id=data.user_id,
            model=data.model,
            tokens=data.total_tokens,
            at=event.time,
        ):
            raise _owner_mismatch()
        await uow.usage_records.add_values(
            {
                "event_source": event.source,
                "event_id": event.id,
                "user_id": data.user_id,
                "conversation_id": data.conversation_id,
                "message_id": data.message_id,
                "api_key_id": data.api_key_id,
                "model": data.model,
                "prompt_tokens": data.prompt_tokens,
                "completion_tokens": data.completion_tokens,
                "request_id": data.request_id,
                "recorded_at": event.time,
            }
        )
        if data.api_key_id is not None:
            await uow.api_keys.touch(data.api_key_id, data.user_id, event.time)
        await uow.commit()
    return Outcome.APPLIED


def _owner_mismatch() -> EventRejected:
    return EventRejected(Reason.CONVERSATION_OWNER_MISMATCH, "conversation_id belongs to another user")


HANDLERS: dict[str, Callable[[Event, AbstractUnitOfWork], Awaitable[Outcome]]] = {
    MESSAGE_CREATED: apply_message_created,
    USAGE_RECORDED: apply_usage_recorded,
}
