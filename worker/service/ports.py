"""What handlers need from storage; the database adapter and the unit-test fakes both provide it."""

from __future__ import annotations

import abc
import uuid
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol


class Inbox(Protocol):
    async def record(
        self, *, source: str, event_id: str, event_type: str, message_id: uuid.UUID | None = None
    ) -> bool: ...


class Users(Protocol):
    async def add_tokens(self, user_id: uuid.UUID, tokens: int) -> bool: ...


class Conversations(Protocol):
    async def upsert_with_tokens(
        self,
        *,
        conversation_id: uuid.UUID,
        user_id: uuid.UUID,
        model: str,
        tokens: int,
        at: datetime,
        title: str | None = None,
        touch: bool = False,
    ) -> bool: ...


class Messages(Protocol):
    async def add_if_new(self, values: dict[str, Any]) -> bool: ...


class UsageRecords(Protocol):
    async def add_values(self, values: dict[str, Any]) -> None: ...


class ApiKeys(Protocol):
    async def touch(self, key_id: uuid.UUID, user_id: uuid.UUID, at: datetime) -> None: ...


class AbstractUnitOfWork(abc.ABC):
    """One transaction; leaving the `async with` block without `commit()` rolls back."""

    inbox: Inbox
    users: Users
    conversations: Conversations
    messages: Messages
    usage_records: UsageRecords
    api_keys: ApiKeys
    committed: bool = False

    async def __aenter__(self) -> AbstractUnitOfWork:
        self.committed = False
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.committed:
            await self.rollback()

    @abc.abstractmethod
    async def commit(self) -> None: ...

    @abc.abstractmethod
    async def rollback(self) -> None: ...
