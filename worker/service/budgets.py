"""Budget periods, limits and threshold crossings: which thresholds a commit crossed, and the events that say so.

A user's budget period is `none` (lifetime), `day` or `month`, calendar periods in UTC. An
event counts in the period of its own time, so a redelivery lands in the same period. Usage
in a period is its own row; a new period is a new row, so nothing is ever reset.

A threshold (a percent of a limit, per tier) is crossed when usage reaches it. Each crossing
has an id derived from (user, period, period start, limit kind, limit value, threshold): the
database keeps one row per id, so a threshold is reported once per period and limit; a new
period, or a raised (or lowered) limit, is a new id, which re-arms it. The crossings one
commit makes for one limit become one `quota.threshold_crossed` event, listing them all; its
id is the id of the highest threshold in it, so a republished event keeps its id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson

from worker.contract.names import QUOTA_THRESHOLD_CROSSED
from worker.service.decimals import plain
from worker.service.rows import Crossing, OutboxRow, PeriodDelta, PeriodUsage, Usage, UserBudget

PERIODS = ("none", "day", "month")
LIFETIME = "none"
DEFAULT_TIER = "default"
DEFAULT_THRESHOLDS: Mapping[str, tuple[int, ...]] = {DEFAULT_TIER: (80, 100)}
# Namespace of the crossing ids (UUIDv5): fixed forever, subscribers deduplicate by these ids.
CROSSING_NAMESPACE = uuid.UUID("6f1c2a4e-9d0b-5c7e-8a31-2b4d6e8f0a17")


class BudgetObserver(Protocol):
    """Told what each committed batch did to budgets (metrics, waking the outbox relay)."""

    def committed(self, unpriced: int, threshold_events: int) -> None: ...


ReachedKey = tuple[int, datetime | None, str, date | None, str, Decimal | int, tuple[int, ...]]
"""(user id as an int, the user's creation, period, period start, limit kind, limit, the tier's thresholds):
a user deleted and created again under the same id (an external id's UUID) starts afresh."""


class ReachedMemory:
    """How many of a limit's thresholds this process knows are recorded, so a user above them
    costs no statement per batch. Only committed crossings are remembered (`remember` after the
    commit), so forgetting is always safe; the oldest entries go first past `capacity`."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._known: dict[ReachedKey, int] = {}

    def known(self, key: ReachedKey) -> int:
        return self._known.get(key, 0)

    def remember(self, reached: Iterable[tuple[ReachedKey, int]]) -> None:
        for key, count in reached:
            if count > self._known.get(key, 0):
                self._known[key] = count
        while len(self._known) > self.capacity:
            del self._known[next(iter(self._known))]


@dataclass(frozen=True)
class Budgets:
    """The budget policy: thresholds per tier, the outgoing events' source, who hears of commits."""

    thresholds: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    source: str = "llm-persistence-worker"
    observer: BudgetObserver | None = None
    announce: bool = True
    """Write a `quota.threshold_crossed` event for each commit's crossings (they are recorded either way)."""
    memory: ReachedMemory = field(default_factory=ReachedMemory, compare=False)

    def thresholds_of(self, tier: str) -> tuple[int, ...]:
        return self.thresholds.get(tier) or self.thresholds.get(DEFAULT_TIER) or ()


def period_start(period: str, at: datetime) -> date | None:
    """The first day of the `period` holding `at` (UTC); None for the lifetime period."""
    day = at.astimezone(UTC).date()
    if period == "day":
        return day
    if period == "month":
        return day.replace(day=1)
    return None


def period_end(period: str, start: date | None) -> date | None:
    """The first day after the period starting at `start` (exclusive end)."""
    if start is None:
        return None
    if period == "day":
        return date.fromordinal(start.toordinal() + 1)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


SECONDS_A_DAY = 86_400


def period_deltas(
    budgets: Mapping[uuid.UUID, UserBudget], charges: Sequence[tuple[uuid.UUID, datetime, Usage]]
) -> list[PeriodDelta]:
    """What the applied events add to the period rows of users whose budget has a period, sorted."""
    sums: dict[tuple[uuid.UUID, str, date], Usage] = {}
    starts: dict[tuple[str, int], date] = {}  # a batch's events share a few days: compute each once
    for user_id, at, usage in charges:
        user = budgets.get(user_id)
        if user is None or user.budget_period == LIFETIME or not usage:
            continue
        day_number = int(at.timestamp() // SECONDS_A_DAY)
        start = starts.get((user.budget_period, day_number))
        if start is None:
            start = starts[(user.budget_period, day_number)] = period_start(user.budget_period, at)  # type: ignore[assignment]
        key = (user_id, user.budget_period, start)
        sums[key] = sums.get(key, Usage()) + usage
    return [PeriodDelta(u, p, s, usage) for (u, p, s), usage in sorted(sums.items(), key=lambda i: (i[0][0].int, i[0][2]))]


def reached(
    budgets: Mapping[uuid.UUID, UserBudget], periods: Sequence[PeriodUsage], policy: Budgets
) -> tuple[list[Crossing], list[tuple[ReachedKey, int]]]:
    """The thresholds the grown users and periods now reach that this process does not know are
    recorded, and what to remember once they are committed."""
    crossings: list[Crossing] = []
    marks: list[tuple[ReachedKey, int]] = []
    for user in budgets.values():
        if user.budget_period == LIFETIME:
            _reached(user, None, user.tokens_used, user.cost_used, policy, crossings, marks)
    for row in periods:
        user = budgets[row.user_id]
        if row.period == user.budget_period:
            _reached(user, row.period_start, row.tokens, row.cost, policy, crossings, marks)
    return crossings, marks


def _reached(
    user: UserBudget,
    start: date | None,
    tokens: int,
    cost: Decimal,
    policy: Budgets,
    crossings: list[Crossing],
    marks: list[tuple[ReachedKey, int]],
) -> None:
    thresholds = policy.thresholds_of(user.tier)
    # Tokens compare as ints; a cost only where there is a cost limit (Decimal arithmetic is dearer).
    limits: list[tuple[str, Decimal | int, Decimal | int]] = [("tokens", user.tokens_limit, tokens)]
    if user.cost_limit_usd is not None:
        limits.append(("cost_usd", user.cost_limit_usd, cost))
    for kind, limit, used in limits:
        if not used:
            continue
        # Usage in a period only grows: the thresholds reached are always the lowest ones.
        count = 0
        for threshold in thresholds:
            if used * 100 < limit * threshold:
                break
            count += 1
        if not count:
            continue
        key = (user.id.int, user.created_at, user.budget_period, start, kind, limit, thresholds)
        known = policy.memory.known(key)
        if count <= known:
            continue
        marks.append((key, count))
        for threshold in thresholds[known:count]:
            event_id = crossing_id(user.id, user.budget_period, start, kind, limit, threshold)
            crossings.append(Crossing(event_id, user.id, user.budget_period, start, kind, limit, threshold, used))


def crossing_id(
    user_id: uuid.UUID, period: str, start: date | None, limit_kind: str, limit: Decimal | int, threshold: int
) -> uuid.UUID:
    """The stable id of one crossing: the same inputs give the same id in every process, forever."""
    name = "/".join((str(user_id), period, start.isoformat() if start else "lifetime", limit_kind,
                     _plain(limit), str(threshold)))
    return uuid.uuid5(CROSSING_NAMESPACE, name)


def threshold_events(new: Sequence[Crossing], policy: Budgets, now: datetime) -> list[OutboxRow]:
    """One `quota.threshold_crossed` event per (user, period, limit) among the new crossings."""
    groups: dict[tuple[uuid.UUID, date | None, str], list[Crossing]] = {}
    for crossing in new:
        groups.setdefault((crossing.user_id, crossing.period_start, crossing.limit_kind), []).append(crossing)
    rows = []
    for (user_id, _, _), crossings in sorted(groups.items(), key=_group_order):
        crossings.sort(key=lambda c: c.threshold)
        top = crossings[-1]
        payload = {
            "specversion": "1.0",
            "id": str(top.event_id),
            "source": policy.source,
            "type": QUOTA_THRESHOLD_CROSSED,
            "time": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": _data(top, [c.threshold for c in crossings]),
        }
        rows.append(OutboxRow(str(top.event_id), user_id, QUOTA_THRESHOLD_CROSSED, orjson.dumps(payload).decode()))
    return rows


def _group_order(item: tuple[tuple[uuid.UUID, date | None, str], list[Crossing]]) -> tuple[int, date, str]:
    (user_id, start, kind), _ = item
    return (user_id.int, start or date.min, kind)


def _data(crossing: Crossing, thresholds: list[int]) -> dict[str, Any]:
    tokens = crossing.limit_kind == "tokens"
    return {
        "user_id": str(crossing.user_id),
        "period": {
            "kind": crossing.period,
            "start": crossing.period_start.isoformat() if crossing.period_start else None,
            "end": (end.isoformat() if (end := period_end(crossing.period, crossing.period_start)) else None),
        },
        "limit_kind": crossing.limit_kind,
        "thresholds": thresholds,
        "usage": int(crossing.usage) if tokens else _plain(crossing.usage),
        "limit": int(crossing.limit_value) if tokens else _plain(crossing.limit_value),
    }


def _plain(value: Decimal | int) -> str:
    """A limit or usage as text without exponent or trailing zeros: `10`, `0.5`."""
    return str(value) if isinstance(value, int) else plain(value)
