"""Applies a batch of events in one transaction, each event all-or-nothing.

Steps: idempotency keys locked (sorted) → users and conversations read → checks → inbox →
new conversations → each type's own rows → the counter rows locked and grown, conversations
then users (sorted, one increment per row with the batch's sum) → commit. The counters come
last so their row locks, the only ones other batches wait for, are held for the shortest
time. A row read at the start and gone by the end makes the batch try again; a conversation
another batch created in the meantime is grown instead of created. Events that fail a check
(unknown user, another user's conversation) are left out of the writes and reported; they
never fail their neighbours.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.contract.events import Event
from worker.contract.reasons import Reason
from worker.contract.types import EventTypes
from worker.errors import EventRejected, RetryLater, UnknownUser
from worker.service.handlers import BatchConflict, Handler
from worker.service.outcomes import Outcome
from worker.service.ports import AbstractUnitOfWork
from worker.service.rows import ConversationClaim, ConversationDelta, EventKey, NewConversation, by_id, by_uuid

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
    events: Sequence[Event], uow: AbstractUnitOfWork, types: EventTypes[Handler]
) -> list[Result]:
    """Apply `events` (of the known `types`) in one Unit of Work; return one result per event, in order."""
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
            counters = _count(plan, handlers, applied, owners, claims)
            grown = await _create_conversations(uow, counters)
            for event_type in types:
                of_type = [events[i] for i in applied if events[i].type == event_type.name]
                if of_type:
                    await event_type.handler.store(of_type, uow)
            if len(await uow.conversations.grow(grown)) != len(grown):
                raise BatchConflict("a conversation was deleted concurrently")
            if len(await uow.users.add_tokens(counters.by_user)) != len({u for u, n in counters.by_user.items() if n}):
                raise BatchConflict("a user was deleted concurrently")
            await uow.commit()
    return [plan.results[i] for i in range(len(events))]


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

    by_user: dict[uuid.UUID, int]
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
) -> _Counters:
    by_user: dict[uuid.UUID, int] = {}
    deltas: dict[uuid.UUID, ConversationDelta] = {}
    # A new conversation is its merged delta plus what its first claim says (owner, model, time).
    if_existing: dict[uuid.UUID, ConversationDelta] = {}
    first_claims: dict[uuid.UUID, tuple[ConversationClaim, uuid.UUID]] = {}
    for i in applied:
        event, handler = plan.events[i], handlers[i]
        user_id, tokens = handler.user_id(event), handler.tokens(event)
        by_user[user_id] = by_user.get(user_id, 0) + tokens
        claim = claims[i]
        if claim is None:
            continue
        if claim.id in owners:
            deltas[claim.id] = _merge_delta(deltas.get(claim.id), claim, tokens)
        else:
            first_claims.setdefault(claim.id, (claim, user_id))
            if_existing[claim.id] = _merge_delta(if_existing.get(claim.id), claim, tokens)
    created = [_new_conversation(*first_claims[d.id], d) for d in sorted(if_existing.values(), key=by_id)]
    return _Counters(dict(sorted(by_user.items(), key=by_uuid)), sorted(deltas.values(), key=by_id), created, if_existing)


def _merge_delta(delta: ConversationDelta | None, claim: ConversationClaim, tokens: int) -> ConversationDelta:
    if delta is None:
        return ConversationDelta(claim.id, tokens, claim.title, claim.touch_at)
    return ConversationDelta(
        claim.id, delta.tokens + tokens, delta.title or claim.title, _later(delta.touch_at, claim.touch_at)
    )


def _new_conversation(first: ConversationClaim, user_id: uuid.UUID, delta: ConversationDelta) -> NewConversation:
    """The row to insert: created when its first event says, touched by the latest message."""
    return NewConversation(
        delta.id, user_id, first.model, delta.title, delta.tokens, first.at, _later(first.at, delta.touch_at)
    )


def _later(a, b):  # noqa: ANN001, ANN202 - datetimes or None
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
