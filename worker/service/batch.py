"""Applies a batch of events in one transaction, each event all-or-nothing.

Steps: idempotency keys locked (sorted) → users and conversations read → checks → inbox →
prices of the models that need them → new conversations → each type's own rows → the
counter rows locked and grown, conversations then users (sorted, one increment per row with
the batch's sum of tokens and cost) → the users' budget-period rows grown → thresholds
reached recorded, and an outbox event for each limit with new ones → commit. The counters
come last so their row locks, the only ones other batches wait for, are held for the
shortest time; the period rows, crossings and outbox rows of a user are only ever written
while its row is locked, so they add no lock order of their own. A row read at the start and gone by the end makes the batch try again; a conversation
another batch created in the meantime is grown instead of created. Events that fail a check
(unknown user, another user's conversation) are left out of the writes and reported; they
never fail their neighbours.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from worker.contract.events import Event
from worker.contract.reasons import Reason
from worker.contract.types import EventTypes
from worker.errors import EventRejected, RetryLater, UnknownUser
from worker.service.budgets import Budgets, ReachedKey, period_deltas, reached, threshold_events
from worker.service.handlers import BatchConflict, Handler
from worker.service.outcomes import Outcome
from worker.service.ports import AbstractUnitOfWork
from worker.service.pricing import PriceBook, cost_of, models_to_price
from worker.service.rows import (
    ConversationClaim,
    ConversationDelta,
    EventKey,
    NewConversation,
    Usage,
    UserBudget,
    by_id,
    by_uuid,
)

DEFAULT_BUDGETS = Budgets()
NO_PRICES = PriceBook(())

Result = Outcome | EventRejected | RetryLater


def owner_mismatch() -> EventRejected:
    return EventRejected(Reason.CONVERSATION_OWNER_MISMATCH, "conversation_id belongs to another user")


@dataclass
class _BatchState:
    """Per-batch bookkeeping, by position in the batch."""

    events: Sequence[Event]
    results: dict[int, Result] = field(default_factory=dict)
    keys: dict[int, EventKey] = field(default_factory=dict)

    def pending(self) -> list[int]:
        return [i for i in range(len(self.events)) if i not in self.results]


async def apply_batch(
    events: Sequence[Event], uow: AbstractUnitOfWork, types: EventTypes[Handler], budgets: Budgets = DEFAULT_BUDGETS
) -> list[Result]:
    """Apply `events` (of the known `types`) in one Unit of Work; return one result per event, in order."""
    unpriced = published = 0
    reached_marks: list[tuple[ReachedKey, int]] = []
    plan = _BatchState(events)
    handlers: list[Handler] = [types.handler(event.type) for event in events]
    _mark_duplicates_within_batch(plan, handlers)
    async with uow:
        candidates = plan.pending()
        await uow.inbox.lock([plan.keys[i] for i in candidates])
        existing_users = await uow.users.existing([handlers[i].user_id(events[i]) for i in candidates])
        claims = {i: handlers[i].conversation(events[i]) for i in candidates}
        owners = await uow.conversations.owners(list({c.id for c in claims.values() if c is not None}))
        refused = _check_users_and_owners(plan, handlers, candidates, existing_users, owners, claims)
        fresh = await uow.inbox.record_new([plan.keys[i] for i in plan.pending()])
        # A refused event that was applied before is a duplicate: the contract checks that first.
        seen = await uow.inbox.seen([plan.keys[i] for i in refused]) if refused else set()
        for i in refused:
            if plan.keys[i].pair in seen:
                plan.results[i] = Outcome.DUPLICATE
        applied = []
        for i in plan.pending():
            if plan.keys[i].pair in fresh:
                applied.append(i)
                plan.results[i] = Outcome.APPLIED
            else:
                plan.results[i] = Outcome.DUPLICATE
        if applied:
            costs = await _costs(uow, plan, handlers, applied)
            unpriced = sum(1 for cost in costs.values() if cost is None)
            usage = {i: Usage(handlers[i].tokens(events[i]), costs[i] or Decimal(0)) for i in applied}
            counters = _count(plan, handlers, applied, owners, claims, usage)
            grown = await _create_conversations(uow, counters)
            for event_type in types:
                of_type = [i for i in applied if events[i].type == event_type.name]
                if of_type:
                    await event_type.handler.store([events[i] for i in of_type], [costs[i] for i in of_type], uow)
            if len(await uow.conversations.grow(grown)) != len(grown):
                raise BatchConflict("a conversation was deleted concurrently")
            users = await uow.users.add_usage(counters.by_user)
            if len(users) != len({u for u, n in counters.by_user.items() if n}):
                raise BatchConflict("a user was deleted concurrently")
            charges = [(handlers[i].user_id(events[i]), events[i].time, usage[i]) for i in applied]
            published = await _budgets(uow, users, charges, budgets, reached_marks)
            await uow.commit()
            budgets.memory.remember(reached_marks)
    if budgets.observer is not None and (unpriced or published):
        budgets.observer.committed(unpriced=unpriced, threshold_events=published)
    return [plan.results[i] for i in range(len(events))]


async def _costs(
    uow: AbstractUnitOfWork, plan: _BatchState, handlers: list[Handler], applied: list[int]
) -> dict[int, Decimal | None]:
    """Each applied event's cost; one read of the price table for the models that need it."""
    charges = {i: handlers[i].charge(plan.events[i]) for i in applied}
    models = models_to_price(list(charges.values()))
    book = PriceBook(await uow.prices.for_models(models)) if models else NO_PRICES
    return {i: cost_of(*charge, plan.events[i].time, book) for i, charge in charges.items()}


async def _budgets(
    uow: AbstractUnitOfWork,
    users: dict[uuid.UUID, UserBudget],
    charges: list[tuple[uuid.UUID, datetime, Usage]],
    budgets: Budgets,
    marks: list[tuple[ReachedKey, int]],
) -> int:
    """Grow the period rows, record the thresholds newly reached, write their events; return how many.
    `marks` receives what to remember once the transaction commits."""
    periods = await uow.usage_periods.grow(period_deltas(users, charges))
    candidates, reached_marks = reached(users, periods, budgets)
    marks.extend(reached_marks)
    if not candidates:
        return 0
    recorded = await uow.quota.record(candidates)
    new = [c for c in candidates if c.event_id in recorded]
    if not new or not budgets.announce:
        return 0
    rows = threshold_events(new, budgets, datetime.now(UTC))
    await uow.outbox.add(rows)
    return len(rows)


async def _create_conversations(uow: AbstractUnitOfWork, counters: _Counters) -> list[ConversationDelta]:
    """Insert the batch's new conversations; return every conversation delta to lock and grow.

    A conversation another transaction created first (the insert waited for it to commit) is
    grown instead, as if it had existed when the batch read the owners, provided it belongs to
    the same user; only then does the batch have to start again (its owner check was wrong).
    """
    if not counters.created:
        return counters.grown
    inserted = await uow.conversations.create(counters.created)
    lost = [c for c in counters.created if c.id not in inserted]
    if not lost:
        return counters.grown
    owners = await uow.conversations.owners([c.id for c in lost])
    if any(owners.get(c.id) != c.user_id for c in lost):
        raise BatchConflict("a conversation created concurrently belongs to another user or is gone")
    return sorted([*counters.grown, *(counters.if_existing[c.id] for c in lost)], key=by_id)


def _mark_duplicates_within_batch(plan: _BatchState, handlers: list[Handler]) -> None:
    seen_keys: set[tuple[str, str]] = set()
    seen_messages: set[uuid.UUID] = set()
    for i, event in enumerate(plan.events):
        key = EventKey(event.source, event.id, event.type, handlers[i].message_id(event))
        plan.keys[i] = key
        if key.pair in seen_keys or (key.message_id is not None and key.message_id in seen_messages):
            plan.results[i] = Outcome.DUPLICATE
            continue
        seen_keys.add(key.pair)
        if key.message_id is not None:
            seen_messages.add(key.message_id)


def _check_users_and_owners(
    plan: _BatchState,
    handlers: list[Handler],
    candidates: list[int],
    existing_users: set[uuid.UUID],
    owners: dict[uuid.UUID, uuid.UUID],
    claims: dict[int, ConversationClaim | None],
) -> list[int]:
    """Refuse events of unknown users and events on another user's conversation, in batch order."""
    refused = []
    owner_of = dict(owners)
    for i in candidates:
        user_id = handlers[i].user_id(plan.events[i])
        claim = claims[i]
        if user_id not in existing_users:
            plan.results[i] = UnknownUser()
        elif claim is not None and owner_of.setdefault(claim.id, user_id) != user_id:
            plan.results[i] = owner_mismatch()
        else:
            continue
        refused.append(i)
    return refused


@dataclass
class _Counters:
    """What the applied events add up to: one entry per counter row, sorted by id."""

    by_user: dict[uuid.UUID, Usage]
    grown: list[ConversationDelta]
    created: list[NewConversation]
    if_existing: dict[uuid.UUID, ConversationDelta]
    """For each conversation in `created`: its delta, should another transaction create it first."""


def _count(
    plan: _BatchState,
    handlers: list[Handler],
    applied: list[int],
    owners: dict[uuid.UUID, uuid.UUID],
    claims: dict[int, ConversationClaim | None],
    usage: dict[int, Usage],
) -> _Counters:
    by_user: dict[uuid.UUID, Usage] = {}
    deltas: dict[uuid.UUID, ConversationDelta] = {}
    # A new conversation is its merged delta plus what its first claim says (owner, model, time).
    if_existing: dict[uuid.UUID, ConversationDelta] = {}
    first_claims: dict[uuid.UUID, tuple[ConversationClaim, uuid.UUID]] = {}
    for i in applied:
        user_id, used = handlers[i].user_id(plan.events[i]), usage[i]
        by_user[user_id] = by_user[user_id] + used if user_id in by_user else used
        claim = claims[i]
        if claim is None:
            continue
        if claim.id in owners:
            deltas[claim.id] = _merge_delta(deltas.get(claim.id), claim, used)
        else:
            first_claims.setdefault(claim.id, (claim, user_id))
            if_existing[claim.id] = _merge_delta(if_existing.get(claim.id), claim, used)
    created = [_new_conversation(*first_claims[d.id], d) for d in sorted(if_existing.values(), key=by_id)]
    return _Counters(dict(sorted(by_user.items(), key=by_uuid)), sorted(deltas.values(), key=by_id), created, if_existing)


def _merge_delta(delta: ConversationDelta | None, claim: ConversationClaim, used: Usage) -> ConversationDelta:
    if delta is None:
        return ConversationDelta(claim.id, used.tokens, claim.title, claim.touch_at, used.cost)
    return ConversationDelta(
        claim.id,
        delta.tokens + used.tokens,
        delta.title or claim.title,
        _later(delta.touch_at, claim.touch_at),
        delta.cost + used.cost,
    )


def _new_conversation(first: ConversationClaim, user_id: uuid.UUID, delta: ConversationDelta) -> NewConversation:
    """The row to insert: created when its first event says, touched by the latest message."""
    return NewConversation(
        delta.id, user_id, first.model, delta.title, delta.tokens, first.at, _later(first.at, delta.touch_at), delta.cost
    )


def _later(a, b):  # noqa: ANN001, ANN202 - datetimes or None
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
