"""The one ledger checker (tests, bench): what a run sent against what PostgreSQL and the broker hold.

A run records each event it sends in a `Ledger`: one `Sent` per idempotency key, with how
often it was published and confirmed. Once the workers have stopped (so nothing can still
be unacknowledged), `LedgerChecker.check()` compares the ledger with the database and the
queues and returns a `LedgerReport`. The checks:

- *applied*: a confirmed valid event has one inbox row (`processed_events`) and one event
  row (its `messages` row by message id, its `usage_records` row by event id);
- *lost*: confirmed, not applied, not dead-lettered, in no queue;
- *stranded*: confirmed, still ready in the worker queue or a delay queue (never processed);
- *double-applied*: more than one inbox or event row, inbox and event rows that disagree,
  applied *and* dead-lettered, or a bad input with an inbox row;
- *dead-lettered* by reason, and *wrong dead letters*: a valid event in the dead-letter
  queue, a bad input with another reason than the one expected or dead-lettered more often
  than published, a dead letter of no event in the ledger;
- *counters*: every user's `tokens_used` and every conversation's `total_tokens` equal the
  sum over the applied events naming it (*double-counted* and *missing tokens*); a
  conversation an applied event names exists; its `cost_used` equals the sum of the applied
  events' `cost_usd` when every one of them carried it (the worker prices the others);
- *counters against rows*: every counter in the database equals the sum of its rows
  (`worker.db.counter_drift`, the check `worker verify` runs);
- *left in queues*: the worker queue and its delay queues are empty;
- with `whole_database` (the ledger is everything the database holds, as in the bench):
  no inbox row of another event, no more `messages` or `usage_records` rows than applied
  events of that type, every other user at 0 tokens, no conversation no event names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.contract.names import DEAD_LETTER_QUEUE, MESSAGE_CREATED, USAGE_RECORDED, WORKER_QUEUE, delay_queue_name
from worker.db.counter_drift import find_drift
from worker.testkit.ledger_report import LedgerReport
from worker.testkit.queues import QueueReader, dead_letter_reason, message_key

SETTLED_POLL_S = 0.3


@dataclass(slots=True)
class Sent:
    """One logical event (one idempotency key) and what its publisher saw of it."""

    key: str
    type: str
    user_id: str | None = None
    conversation_id: str | None = None
    message_id: str | None = None
    tokens: int = 0
    cost: Decimal | None = None
    """The `cost_usd` the event carried; None when it carried none and the worker prices it."""
    expected_reason: str | None = None
    """A bad input: the reason it must be dead-lettered with (None: a valid event)."""
    published: int = 0
    confirmed: int = 0

    @property
    def valid(self) -> bool:
        return self.expected_reason is None


class Ledger:
    """Everything a run published, keyed by idempotency key."""

    def __init__(self) -> None:
        self.entries: dict[str, Sent] = {}

    def add(self, sent: Sent) -> Sent:
        """Record `sent`; copies of one key share the first record."""
        return self.entries.setdefault(sent.key, sent)

    def confirmed(self) -> list[Sent]:
        return [e for e in self.entries.values() if e.confirmed]

    def valid(self) -> list[Sent]:
        return [e for e in self.entries.values() if e.valid]


@dataclass
class _Stored:
    """What the database holds for the ledger's keys (or for everything, with `whole_database`)."""

    inbox: dict[str, int]
    usage_rows: dict[str, int]
    message_rows: dict[str, int]


class LedgerChecker:
    """Compares a ledger with a database and a vhost."""

    def __init__(self, db: AsyncEngine, amqp_url: str, ledger: Ledger, *, delays_s: Iterable[int] = (),
                 whole_database: bool = False) -> None:
        self.db = db
        self.broker = QueueReader(amqp_url)
        self.ledger = ledger
        self.whole_database = whole_database
        self.delay_queues = [delay_queue_name(d) for d in sorted(set(delays_s))]
        self.queues = [WORKER_QUEUE, *self.delay_queues]

    # -- waiting ---------------------------------------------------------------------------

    async def settled(self) -> bool:
        """Every confirmed valid event has an inbox row, every bad one reached the DLQ, queues are empty."""
        confirmed = self.ledger.confirmed()
        valid = [e for e in confirmed if e.valid]
        applied = await self.inbox_counts([e.key for e in valid])
        if len(applied) < len(valid):
            return False
        depths = await self.broker.depths([*self.queues, DEAD_LETTER_QUEUE])
        expected_dead = sum(1 for e in confirmed if not e.valid)
        return depths[DEAD_LETTER_QUEUE] >= expected_dead and not any(depths[q] for q in self.queues)

    async def wait_settled(self, timeout: float) -> bool:
        """Wait for `settled()`; False (not an error) on timeout: the report then says what is missing."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if await self.settled():
                    return True
            except Exception:  # noqa: BLE001 - a service may still be recovering
                pass
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(SETTLED_POLL_S)

    async def inbox_counts(self, keys: list[str]) -> dict[str, int]:
        """Inbox rows per event id, for the ids that have any."""
        return await self._pairs(
            "SELECT event_id, count(*) FROM processed_events WHERE event_id = ANY(:ids) GROUP BY event_id", keys)

    # -- checking --------------------------------------------------------------------------

    async def check(self, name: str = "", faults: Sequence[str] = (), started: float | None = None) -> LedgerReport:
        """Run every check; call once the workers have stopped."""
        started = time.monotonic() if started is None else started
        report = LedgerReport(name, list(faults))
        entries = list(self.ledger.entries.values())
        report.published = sum(e.published for e in entries)
        report.confirmed_copies = sum(e.confirmed for e in entries)
        report.confirmed = sum(1 for e in entries if e.confirmed)

        consumers = await self.broker.consumers()
        if consumers:
            report.notes.append(f"{consumers} consumer(s) still attached to {WORKER_QUEUE} at check time")
        # With no consumer left, anything unacknowledged has gone back to ready.
        report.left_in_queues = {q: n for q, n in (await self.broker.depths(self.queues)).items() if n}
        # Left in a queue is not lost, but never processed either: take them out to name them.
        stranded = {message_key(m) for m in await self.broker.drain(self.queues)} if report.left_in_queues else set()
        dead: dict[str, list[str]] = {}
        for message in await self.broker.drain([DEAD_LETTER_QUEUE]):
            dead.setdefault(message_key(message), []).append(dead_letter_reason(message))

        stored = await self._stored(entries)
        for entry in entries:
            self._check_entry(report, entry, stored, dead.get(entry.key, []), stranded)
        for key in sorted(dead.keys() - self.ledger.entries.keys()):
            report.wrong_dead_letters.append(f"{key}: dead-lettered as {dead[key]}, not in the ledger")
        applied = [e for e in entries if e.valid and stored.inbox.get(e.key)]
        await self._check_counters(report, applied)
        if self.whole_database:
            await self._check_nothing_else(report, stored, applied)
        report.row_sum_drift = [drift.describe() for drift in await find_drift(self.db)]
        report.seconds = round(time.monotonic() - started, 1)
        return report

    @staticmethod
    def _check_entry(report: LedgerReport, entry: Sent, stored: _Stored, reasons: list[str], stranded: set[str]) -> None:
        for reason in reasons:
            report.dead_lettered[reason] = report.dead_lettered.get(reason, 0) + 1
        times_applied = stored.inbox.get(entry.key, 0)
        unprocessed = report.stranded if entry.key in stranded else report.lost
        if not entry.valid:
            if times_applied:
                report.double_applied.append(f"{entry.key} (bad input) has an inbox row")
            if entry.confirmed and not reasons:
                unprocessed.append(entry.key)
            elif any(r != entry.expected_reason for r in reasons) or len(reasons) > entry.published:
                report.wrong_dead_letters.append(f"{entry.key}: expected {entry.expected_reason}, got {reasons}")
            return
        rows = (stored.usage_rows.get(entry.key, 0) if entry.type == USAGE_RECORDED
                else stored.message_rows.get(entry.message_id or "", 0))
        if times_applied:
            report.applied += 1
            report.applied_unconfirmed += 0 if entry.confirmed else 1
        if times_applied > 1 or rows > 1 or (times_applied and reasons):
            report.double_applied.append(f"{entry.key} inbox={times_applied} rows={rows} dlq={reasons}")
        elif times_applied != rows:
            report.double_applied.append(f"{entry.key} inbox={times_applied} but rows={rows}")
        if reasons:
            report.wrong_dead_letters.append(f"{entry.key} (valid) dead-lettered as {reasons}")
        elif entry.confirmed and not times_applied:
            unprocessed.append(entry.key)

    async def _stored(self, entries: list[Sent]) -> _Stored:
        valid = [e for e in entries if e.valid]
        return _Stored(
            inbox=await self._scoped_pairs(
                "SELECT event_id, count(*) FROM processed_events {where} GROUP BY event_id",
                "event_id = ANY(:ids)", [e.key for e in entries]),
            usage_rows=await self._scoped_pairs(
                "SELECT event_id, count(*) FROM usage_records {where} GROUP BY event_id",
                "event_id = ANY(:ids)", [e.key for e in valid if e.type == USAGE_RECORDED]),
            message_rows=await self._scoped_pairs(
                "SELECT CAST(id AS text), count(*) FROM messages {where} GROUP BY id",
                "id = ANY(CAST(:ids AS uuid[]))",
                [e.message_id for e in valid if e.type == MESSAGE_CREATED and e.message_id]),
        )

    async def _check_counters(self, report: LedgerReport, applied: list[Sent]) -> None:
        """Every user's and conversation's counter equals the sum over the events applied for it."""
        users: dict[str, int] = {}
        conversations: dict[str, int] = {}
        for entry in self.ledger.valid():
            if entry.user_id:
                users.setdefault(entry.user_id, 0)
            if entry.conversation_id:
                conversations.setdefault(entry.conversation_id, 0)
        for entry in applied:
            if entry.user_id:
                users[entry.user_id] += entry.tokens
            if entry.conversation_id:
                conversations[entry.conversation_id] += entry.tokens
        must_exist = {e.conversation_id for e in applied if e.conversation_id}
        stored_users = await self._scoped_pairs(
            "SELECT CAST(id AS text), tokens_used FROM users {where}", "id = ANY(CAST(:ids AS uuid[]))", list(users))
        stored_conversations = await self._scoped_pairs(
            "SELECT CAST(id AS text), total_tokens FROM conversations {where}", "id = ANY(CAST(:ids AS uuid[]))",
            list(conversations))
        # A user outside the ledger (whole database only) must not have counted anything.
        for key in sorted(users.keys() | stored_users.keys()):
            _compare(report, "user", key, users.get(key, 0), stored_users.get(key, 0))
        for key in sorted(conversations.keys() | stored_conversations.keys()):
            if key not in conversations:
                report.unexpected.append(f"conversation {key} exists, but no event sent names it")
            elif key in stored_conversations:
                _compare(report, "conversation", key, conversations[key], stored_conversations[key])
            elif key in must_exist:
                report.missing_tokens += conversations[key]
                report.counter_drift.append(f"conversation {key}: expected {conversations[key]}, not stored")
        await self._check_costs(report, applied)

    async def _check_costs(self, report: LedgerReport, applied: list[Sent]) -> None:
        """`cost_used` of every user and conversation whose applied events all carried `cost_usd` equals their sum."""
        for kind, table, owner in (("user", "users", _user_of), ("conversation", "conversations", _conversation_of)):
            want, priced_by_worker = _cost_sums(applied, owner)
            got = await self._scoped_costs(table, list(want))
            # Whole database: a user no applied event names must not have spent anything; a conversation
            # no event names is reported by the token check already.
            keys = want.keys() | got.keys() if kind == "user" else want.keys() & got.keys()
            for key in sorted(keys - priced_by_worker):
                expected, stored = want.get(key, Decimal(0)), got.get(key, Decimal(0))
                if expected != stored:
                    report.counter_drift.append(f"{kind} {key}: cost expected {expected}, stored {stored}")

    async def _check_nothing_else(self, report: LedgerReport, stored: _Stored, applied: list[Sent]) -> None:
        """The database holds nothing the ledger does not account for."""
        others = sorted(stored.inbox.keys() - self.ledger.entries.keys())
        if others:
            report.unexpected.append(f"{len(others)} inbox row(s) of events not sent, e.g. {others[:10]}")
        for table, event_type in (("messages", MESSAGE_CREATED), ("usage_records", USAGE_RECORDED)):
            want = sum(1 for e in applied if e.type == event_type)
            got = await self._scalar(f"SELECT count(*) FROM {table}")
            if got != want:
                report.unexpected.append(f"{table}: {got} row(s), {want} applied event(s) of type {event_type}")

    # -- reading ---------------------------------------------------------------------------

    async def _scoped_pairs(self, sql: str, condition: str, ids: list[str]) -> dict[str, int]:
        """`sql` over the whole table with `whole_database`, else `WHERE condition` over `ids`."""
        if self.whole_database:
            return await self._pairs(sql.format(where=""), None)
        return await self._pairs(sql.format(where=f"WHERE {condition}"), ids)

    async def _scoped_costs(self, table: str, ids: list[str]) -> dict[str, Decimal]:
        """`cost_used` of the rows of `table` (users or conversations) with these ids, or of all of them."""
        sql = f"SELECT CAST(id AS text), cost_used FROM {table}"
        if self.whole_database:
            return await self._decimals(sql, None)
        return await self._decimals(f"{sql} WHERE id = ANY(CAST(:ids AS uuid[]))", ids)

    async def _decimals(self, sql: str, ids: list[str] | None) -> dict[str, Decimal]:
        if ids is not None and not ids:
            return {}
        async with self.db.connect() as conn:
            result = await conn.execute(text(sql), {} if ids is None else {"ids": ids})
            return {str(k): Decimal(v) for k, v in result.all()}

    async def _pairs(self, sql: str, ids: list[str] | None) -> dict[str, int]:
        if ids is not None and not ids:
            return {}
        async with self.db.connect() as conn:
            result = await conn.execute(text(sql), {} if ids is None else {"ids": ids})
            return {str(k): int(v) for k, v in result.all()}

    async def _scalar(self, sql: str) -> int:
        async with self.db.connect() as conn:
            return int((await conn.execute(text(sql))).scalar_one())


def _compare(report: LedgerReport, kind: str, key: str, want: int, got: int) -> None:
    if got > want:
        report.double_counted_tokens += got - want
    elif got < want:
        report.missing_tokens += want - got
    if got != want:
        report.counter_drift.append(f"{kind} {key}: expected {want}, stored {got}")


def _user_of(entry: Sent) -> str | None:
    return entry.user_id


def _conversation_of(entry: Sent) -> str | None:
    return entry.conversation_id


def _cost_sums(applied: list[Sent], owner: Callable[[Sent], str | None]) -> tuple[dict[str, Decimal], set[str]]:
    """Per owner, the sum of the costs its applied events carried; and the owners of an event that carried
    none (the worker priced it, from a table the ledger does not know: their cost is not checked)."""
    sums: dict[str, Decimal] = {}
    priced_by_worker: set[str] = set()
    for entry in applied:
        key = owner(entry)
        if not key:
            continue
        if entry.cost is None:
            priced_by_worker.add(key)
        else:
            sums[key] = sums.get(key, Decimal(0)) + entry.cost
    return {k: v for k, v in sums.items() if k not in priced_by_worker}, priced_by_worker
