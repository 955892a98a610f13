"""In-memory fakes of the storage ports, for unit tests of the service layer only."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from worker.service.ports import AbstractUnitOfWork
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


@dataclass
class FakeBudget:
    """A user's budget columns (the counters are `FakeStore.users` and `FakeStore.costs`)."""

    tier: str = "free"
    budget_period: str = "none"
    tokens_limit: int = 100_000
    cost_limit_usd: Decimal | None = None
    created_at: datetime | None = None


@dataclass
class FakeStore:
    """Committed state shared by every FakeUnitOfWork of one test."""

    inbox: set[tuple[str, str]] = field(default_factory=set)
    users: dict[uuid.UUID, int] = field(default_factory=dict)
    conversations: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    committed_during_create: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    """Conversations a concurrent transaction commits just as this one inserts its new ones."""
    messages: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    usage_records: list[dict[str, Any]] = field(default_factory=list)
    api_keys: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    costs: dict[uuid.UUID, Decimal] = field(default_factory=dict)
    budgets: dict[uuid.UUID, FakeBudget] = field(default_factory=dict)
    prices: list[Price] = field(default_factory=list)
    periods: dict[tuple[uuid.UUID, str, Any], list[Any]] = field(default_factory=dict)
    crossings: dict[uuid.UUID, Crossing] = field(default_factory=dict)
    outbox: list[OutboxRow] = field(default_factory=list)


class FakeInbox:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    def _seen(self, key: EventKey) -> bool:
        return key.pair in self.state.inbox or key.message_id in self.state.messages

    async def lock(self, keys: Sequence[EventKey]) -> None:
        pass

    async def record_new(self, keys: Sequence[EventKey]) -> set[tuple[str, str]]:
        fresh = {k.pair for k in keys if not self._seen(k)}
        self.state.inbox |= fresh
        return fresh

    async def seen(self, keys: Sequence[EventKey]) -> set[tuple[str, str]]:
        return {k.pair for k in keys if self._seen(k)}


class FakeUsers:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def existing(self, user_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return {u for u in user_ids if u in self.state.users}

    async def add_usage(self, usage_by_user: dict[uuid.UUID, Usage]) -> dict[uuid.UUID, UserBudget]:
        grown = {}
        for user, usage in usage_by_user.items():
            if not usage or user not in self.state.users:
                continue
            self.state.users[user] += usage.tokens
            self.state.costs[user] = self.state.costs.get(user, Decimal(0)) + usage.cost
            budget = self.state.budgets.setdefault(user, FakeBudget())
            grown[user] = UserBudget(
                user, self.state.users[user], self.state.costs[user], budget.tier, budget.budget_period,
                budget.tokens_limit, budget.cost_limit_usd, budget.created_at,
            )
        return grown


class FakePrices:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def for_models(self, models: Sequence[str]) -> list[Price]:
        return [p for p in self.state.prices if p.model in models]


class FakeUsagePeriods:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def grow(self, deltas: Sequence[PeriodDelta]) -> list[PeriodUsage]:
        grown = []
        for d in deltas:
            row = self.state.periods.setdefault((d.user_id, d.period, d.period_start), [0, Decimal(0)])
            row[0] += d.usage.tokens
            row[1] += d.usage.cost
            grown.append(PeriodUsage(d.user_id, d.period, d.period_start, row[0], row[1]))
        return grown


class FakeQuota:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def record(self, crossings: Sequence[Crossing]) -> set[uuid.UUID]:
        new = {c.event_id: c for c in crossings if c.event_id not in self.state.crossings}
        self.state.crossings.update(new)
        return set(new)


class FakeOutbox:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def add(self, rows: Sequence[OutboxRow]) -> None:
        self.state.outbox.extend(rows)


class FakeConversations:
    def __init__(self, state: FakeStore, committed: FakeStore | None = None) -> None:
        self.state = state
        self.committed = committed or state

    async def owners(self, conversation_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        return {c: self.state.conversations[c]["user_id"] for c in conversation_ids if c in self.state.conversations}

    async def grow(self, deltas: Sequence[ConversationDelta]) -> set[uuid.UUID]:
        deltas = [d for d in deltas if d.id in self.state.conversations]
        for delta in deltas:
            row = self.state.conversations[delta.id]
            row["total_tokens"] += delta.tokens
            row["cost_used"] = row.get("cost_used", Decimal(0)) + delta.cost
            row["title"] = row["title"] or delta.title
            if delta.touch_at is not None:
                row["updated_at"] = max(row["updated_at"], delta.touch_at)
        return {d.id for d in deltas}

    async def create(self, conversations: Sequence[NewConversation]) -> set[uuid.UUID]:
        # Rows another transaction commits while this one inserts (ON CONFLICT waits, then skips).
        # Committed by the other transaction: it stays whether this one commits or not.
        for store in {id(self.state): self.state, id(self.committed): self.committed}.values():
            store.conversations.update(self.committed.committed_during_create)
        self.state.committed_during_create = self.committed.committed_during_create = {}
        inserted = set()
        for new in conversations:
            if new.id in self.state.conversations:
                continue
            row = asdict(new)
            row["total_tokens"] = row.pop("tokens")
            row["cost_used"] = row.pop("cost")
            self.state.conversations[new.id] = row
            inserted.add(new.id)
        return inserted


class FakeMessages:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def add_all(self, messages: Sequence[MessageRow]) -> set[uuid.UUID]:
        stored = set()
        for message in messages:
            if message.id not in self.state.messages:
                self.state.messages[message.id] = asdict(message)
                stored.add(message.id)
        return stored


class FakeUsageRecords:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def add_all(self, records: Sequence[UsageRow]) -> None:
        self.state.usage_records.extend(asdict(r) for r in records)


class FakeApiKeys:
    def __init__(self, state: FakeStore) -> None:
        self.state = state

    async def touch(self, uses: Sequence[tuple[uuid.UUID, uuid.UUID, datetime]]) -> None:
        for key_id, user_id, at in uses:
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
        self.conversations = FakeConversations(self.working, self.store)
        self.messages = FakeMessages(self.working)
        self.usage_records = FakeUsageRecords(self.working)
        self.api_keys = FakeApiKeys(self.working)
        self.prices = FakePrices(self.working)
        self.usage_periods = FakeUsagePeriods(self.working)
        self.quota = FakeQuota(self.working)
        self.outbox = FakeOutbox(self.working)
        return await super().__aenter__()

    async def commit(self) -> None:
        self.store.__dict__.update(self.working.__dict__)
        self.committed = True

    async def rollback(self) -> None:
        self.rolled_back = True
