"""What the service layer needs from storage; the database adapter and the unit-test fakes provide it."""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol

from worker.service.rows import (
    ConversationDelta,
    Crossing,
    EventKey,
    MessageRow,
    NewConversation,
    OutboxRow,
    PeriodDelta,
    PeriodUsage,
    Price,
    Usage,
    UsageRow,
    UserBudget,
)


class Inbox(Protocol):
    async def lock(self, keys: Sequence[EventKey]) -> None: ...

    async def record_new(self, keys: Sequence[EventKey]) -> set[tuple[str, str]]: ...

    async def seen(self, keys: Sequence[EventKey]) -> set[tuple[str, str]]: ...


class Users(Protocol):
    async def existing(self, user_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]: ...

    async def add_usage(self, usage_by_user: dict[uuid.UUID, Usage]) -> dict[uuid.UUID, UserBudget]:
        """Lock (sorted) and grow the users with usage; return them as grown."""


class Conversations(Protocol):
    async def owners(self, conversation_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]: ...

    async def grow(self, deltas: Sequence[ConversationDelta]) -> set[uuid.UUID]: ...

    async def create(self, conversations: Sequence[NewConversation]) -> set[uuid.UUID]: ...


class Messages(Protocol):
    async def add_all(self, messages: Sequence[MessageRow]) -> set[uuid.UUID]: ...


class UsageRecords(Protocol):
    async def add_all(self, records: Sequence[UsageRow]) -> None: ...


class ApiKeys(Protocol):
    async def touch(self, uses: Sequence[tuple[uuid.UUID, uuid.UUID, datetime]]) -> None: ...


class Prices(Protocol):
    async def for_models(self, models: Sequence[str]) -> list[Price]: ...


class UsagePeriods(Protocol):
    async def grow(self, deltas: Sequence[PeriodDelta]) -> list[PeriodUsage]:
        """Create or grow each period row; return the rows as grown."""


class Quota(Protocol):
    async def record(self, crossings: Sequence[Crossing]) -> set[uuid.UUID]:
        """Record the crossings not recorded before; return their event ids."""


class Outbox(Protocol):
    async def add(self, rows: Sequence[OutboxRow]) -> None: ...


class Gate(Protocol):
    """Whether the database is usable: appliers wait while it is closed and close it on an outage."""

    async def wait_open(self) -> None: ...

    async def close(self, reason: str) -> None: ...


ClassifyError = Callable[[BaseException], Exception]
"""Turns what storage raised into an intent of `worker.errors` (`Outage`, `TransientError`, ...)."""


class AbstractUnitOfWork(abc.ABC):
    """One transaction; leaving the `async with` block without `commit()` rolls back."""

    inbox: Inbox
    users: Users
    conversations: Conversations
    messages: Messages
    usage_records: UsageRecords
    api_keys: ApiKeys
    prices: Prices
    usage_periods: UsagePeriods
    quota: Quota
    outbox: Outbox
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
