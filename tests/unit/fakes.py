"""In-memory fakes of the storage ports, for unit tests of handlers only."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.service.ports import AbstractUnitOfWork


@dataclass
class FakeStore:
    """Committed state shared by every FakeUnitOfWork of one test."""

    inbox: set[tuple[str, str]] = field(default_factory=set)
    users: dict[uuid.UUID, int] = field(default_factory=dict)
    conversations: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    messages: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    usage_records: list[dict[str, Any]] = field(default_factory=list)
    api_keys: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)


class FakeInbox:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def record(self, *, source: str, event_id: str, event_type: str, message_id: uuid.UUID | None = None) -> bool:
        if (source, event_id) in self.state.inbox or message_id in self.state.messages:
            return False
        self.state.inbox.add((source, event_id))
        return True


class FakeUsers:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def add_tokens(self, user_id: uuid.UUID, tokens: int) -> bool:
        if user_id not in self.state.users:
            return False
        self.state.users[user_id] += tokens
        return True


class FakeConversations:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def upsert_with_tokens(self, *, conversation_id, user_id, model, tokens, at, title=None, touch=False) -> bool:
        existing = self.state.conversations.get(conversation_id)
        if existing is None:
            self.state.conversations[conversation_id] = {
                "user_id": user_id, "model": model, "title": title, "total_tokens": tokens, "updated_at": at,
            }
            return True
        if existing["user_id"] != user_id:
            return False
        existing["total_tokens"] += tokens
        existing["title"] = existing["title"] or title
        if touch:
            existing["updated_at"] = max(existing["updated_at"], at)
        return True


class FakeMessages:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def add_if_new(self, values: dict[str, Any]) -> bool:
        if values["id"] in self.state.messages:
            return False
        self.state.messages[values["id"]] = values
        return True


class FakeUsageRecords:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def add_values(self, values: dict[str, Any]) -> None:
        self.state.usage_records.append(values)


class FakeApiKeys:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def touch(self, key_id: uuid.UUID, user_id: uuid.UUID, at: datetime) -> None:
        key = self.state.api_keys.get(key_id)
        if key and key["user_id"] == user_id and (key["last_used_at"] is None or key["last_used_at"] < at):
            key["last_used_at"] = at


class FakeUnitOfWork(AbstractUnitOfWork):
    """Works on a copy of the store; `commit()` publishes the copy, anything else discards it."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.rolled_back = False

    async def __aenter__(self) -> FakeUnitOfWork:
        self.working = copy.deepcopy(self.store)
        self.inbox = FakeInbox(self.working)
        self.users = FakeUsers(self.working)
        self.conversations = FakeConversations(self.working)
        self.messages = FakeMessages(self.working)
        self.usage_records = FakeUsageRecords(self.working)
        self.api_keys = FakeApiKeys(self.working)
        return await super().__aenter__()

    async def commit(self) -> None:
        self.store.__dict__.update(self.working.__dict__)
        self.committed = True

    async def rollback(self) -> None:
        self.rolled_back = True
