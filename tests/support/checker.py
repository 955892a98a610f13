"""A Jepsen-style total-queue checker: every confirmed event applied exactly once or dead-lettered.

The test publishes through `RecordingPublisher`, which writes every attempt and every broker
confirm into a `Ledger`. After the faults heal, the queue drains and the workers stop,
`Checker.check()` compares the ledger with the database and the queues and returns a
`Report`: confirmed, applied, dead-lettered by reason, lost, applied twice, token drift.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.events import body as encode
from tests.support.events import tokens_of
from worker.contract.names import DEAD_LETTER_QUEUE, EXCHANGE, HEADER_REASON, WORKER_QUEUE, delay_queue_name

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Entry:
    """One logical event (one idempotency key) and what happened to it on the publishing side."""

    key: str
    source: str
    routing_key: str
    body: bytes
    event: dict[str, Any] | None
    expected_reason: str | None = None
    content_type: str | None = "application/cloudevents+json"
    published: int = 0
    confirmed: int = 0

    @property
    def valid(self) -> bool:
        return self.expected_reason is None


class Ledger:
    """Everything the test publisher tried to publish, keyed by the event's idempotency key."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def add_event(self, event: dict[str, Any]) -> Entry:
        """A valid event; its copies (same id) share one entry, the first payload counts."""
        entry = self.entries.get(event["id"])
        if entry is None:
            entry = Entry(event["id"], event["source"], event["type"], encode(event), event)
            self.entries[entry.key] = entry
        return entry

    def add_bad(self, name: str, body: bytes, reason: str, routing_key: str, content_type: str | None) -> Entry:
        """An input the worker must dead-letter with `reason`; keyed by a fresh AMQP message id."""
        key = f"bad-{name}-{uuid.uuid4().hex[:8]}"
        entry = Entry(key, "", routing_key, body, None, expected_reason=reason, content_type=content_type)
        self.entries[key] = entry
        return entry

    def confirmed(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.confirmed]

    def valid(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.valid]


class RecordingPublisher:
    """A confirmed publisher (like the gateway) that records every confirm and rides out broker outages."""

    def __init__(self, amqp_url: str, ledger: Ledger, *, outage_budget_s: float = 120) -> None:
        self.amqp_url = amqp_url
        self.ledger = ledger
        self.outage_budget_s = outage_budget_s
        self.reconnects = 0
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> RecordingPublisher:
        await self._connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await _quietly(self._connection.close())

    async def _connect(self) -> None:
        self._connection = await aio_pika.connect(self.amqp_url)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        self._generation += 1

    async def _reconnect(self, seen_generation: int) -> None:
        """Reconnect once per broken connection, however many publishes saw it break."""
        async with self._lock:
            if self._generation != seen_generation:
                return
            deadline = time.monotonic() + self.outage_budget_s
            if self._connection is not None:
                await _quietly(self._connection.close())
            while True:
                try:
                    await self._connect()
                    self.reconnects += 1
                    return
                except Exception:  # noqa: BLE001 - the broker is still away
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.25)  # pacing of reconnect attempts, not a correctness wait

    async def publish_entry(self, entry: Entry) -> None:
        """Publish until the broker confirms (a new attempt after a failure: at-least-once, like the gateway)."""
        deadline = time.monotonic() + self.outage_budget_s
        while True:
            generation = self._generation
            message = aio_pika.Message(
                body=entry.body,
                content_type=entry.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=entry.key,
            )
            entry.published += 1
            try:
                assert self._exchange is not None
                await asyncio.wait_for(self._exchange.publish(message, entry.routing_key, mandatory=True), 15)
            except Exception:  # noqa: BLE001 - unconfirmed: maybe enqueued, maybe not; try again
                if time.monotonic() > deadline:
                    raise
                await self._reconnect(generation)
                continue
            entry.confirmed += 1
            return

    async def publish(self, event: dict[str, Any]) -> Entry:
        entry = self.ledger.add_event(event)
        await self.publish_entry(entry)
        return entry

    async def publish_many(self, events: Iterable[dict[str, Any]], window: int = 100) -> int:
        """Publish with up to `window` confirms outstanding; returns how many copies were confirmed."""
        return await self.publish_entries((self.ledger.add_event(e) for e in events), window)

    async def publish_entries(self, entries: Iterable[Entry], window: int = 100) -> int:
        pending: list[asyncio.Future[None]] = []
        count = 0
        for entry in entries:
            pending.append(asyncio.ensure_future(self.publish_entry(entry)))
            if len(pending) >= window:
                await asyncio.gather(*pending)
                count, pending = count + len(pending), []
        await asyncio.gather(*pending)
        return count + len(pending)


@dataclass
class Report:
    """What the checker found; `ok` when nothing was lost, doubled or left behind."""

    scenario: str
    faults_injected: list[str] = field(default_factory=list)
    published: int = 0
    confirmed_copies: int = 0
    confirmed: int = 0
    applied: int = 0
    applied_unconfirmed: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    wrong_dead_letters: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    stranded: list[str] = field(default_factory=list)
    double_applied: list[str] = field(default_factory=list)
    double_counted_tokens: int = 0
    missing_tokens: int = 0
    counter_drift: list[str] = field(default_factory=list)
    left_in_queues: dict[str, int] = field(default_factory=dict)
    verify: str = "not run"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stranded or self.double_applied or self.double_counted_tokens
                    or self.missing_tokens or self.counter_drift or self.wrong_dead_letters
                    or any(self.left_in_queues.values()) or self.verify.startswith("FAILED"))

    def summary(self) -> str:
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.dead_lettered.items())) or "none"
        return (
            f"[{self.scenario}] faults={len(self.faults_injected)} published={self.published} "
            f"confirmed={self.confirmed_copies} copies/{self.confirmed} events applied={self.applied} "
            f"lost={len(self.lost)} stranded={len(self.stranded)} "
            f"double-applied={len(self.double_applied)} double-counted-tokens={self.double_counted_tokens} "
            f"missing-tokens={self.missing_tokens} dead-lettered: {reasons} "
            f"wrong-dead-letters={len(self.wrong_dead_letters)} left-in-queues={sum(self.left_in_queues.values())} "
            f"verify={self.verify.split(':')[0]} ({self.seconds:.1f}s)"
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("lost", "stranded", "double_applied", "wrong_dead_letters", "counter_drift"):
            data[name] = data[name][:20]  # a sample is enough to investigate
        data["ok"] = self.ok
        return data


class Checker:
    """Compares a ledger with the database and the broker once the workers have stopped."""

    def __init__(self, db: AsyncEngine, amqp_url: str, ledger: Ledger, *, database_url: str,
                 delays_s: Iterable[int] = ()) -> None:
        self.db = db
        self.amqp_url = amqp_url
        self.ledger = ledger
        self.database_url = database_url
        self.queues = [WORKER_QUEUE, *(delay_queue_name(d) for d in sorted(set(delays_s)))]

    # -- waiting ---------------------------------------------------------------------------

    async def settled(self) -> bool:
        """Every confirmed valid event has an inbox row, every bad one reached the DLQ, queues are empty."""
        confirmed = self.ledger.confirmed()
        valid = [e for e in confirmed if e.valid]
        applied = await self.inbox_counts([e.key for e in valid])
        if len(applied) < len(valid):
            return False
        depths = await self.queue_depths([*self.queues, DEAD_LETTER_QUEUE])
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
            await asyncio.sleep(0.3)

    async def queue_depths(self, names: Iterable[str]) -> dict[str, int]:
        """Ready messages per queue (passive declare: exact, unlike the statistics)."""
        connection = await aio_pika.connect(self.amqp_url)
        try:
            channel = await connection.channel()
            depths = {}
            for name in names:
                declared = await channel.declare_queue(name, passive=True)
                depths[name] = declared.declaration_result.message_count or 0
            return depths
        finally:
            await connection.close()

    async def consumers(self) -> int:
        connection = await aio_pika.connect(self.amqp_url)
        try:
            declared = await (await connection.channel()).declare_queue(WORKER_QUEUE, passive=True)
            return declared.declaration_result.consumer_count or 0
        finally:
            await connection.close()

    # -- checking --------------------------------------------------------------------------

    async def check(self, scenario: str, faults: list[str], started: float, *, verify: bool = True) -> Report:
        """Build the report; call after the workers have stopped (so nothing can be unacknowledged)."""
        report = Report(scenario, list(faults))
        entries = list(self.ledger.entries.values())
        report.published = sum(e.published for e in entries)
        report.confirmed_copies = sum(e.confirmed for e in entries)
        report.confirmed = sum(1 for e in entries if e.confirmed)

        consumers = await self.consumers()
        if consumers:
            report.notes.append(f"{consumers} consumer(s) still attached to {WORKER_QUEUE} at check time")
        # With no consumer left, anything unacknowledged has gone back to ready.
        report.left_in_queues = {q: n for q, n in (await self.queue_depths(self.queues)).items() if n}
        # Left in a queue is not lost, but never processed either: take them out to name them.
        stranded = set(await self._drain(self.queues)) if report.left_in_queues else set()
        dead = await self._drain_dead_letters()

        valid = [e for e in entries if e.valid]
        inbox = await self.inbox_counts([e.key for e in entries])
        usage_rows = await self._counts(
            "SELECT event_id, count(*) FROM usage_records WHERE event_id = ANY(:ids) GROUP BY event_id",
            [e.key for e in valid if e.routing_key == "usage.recorded"])
        message_ids = {e.key: e.event["data"]["message_id"] for e in valid if e.routing_key == "message.created"}
        message_rows = await self._counts(
            "SELECT CAST(id AS text), count(*) FROM messages WHERE id = ANY(CAST(:ids AS uuid[])) GROUP BY id",
            list(message_ids.values()))

        for entry in entries:
            reasons = dead.get(entry.key, [])
            for reason in reasons:
                report.dead_lettered[reason] = report.dead_lettered.get(reason, 0) + 1
            times_applied = inbox.get(entry.key, 0)
            if entry.valid:
                rows = (usage_rows.get(entry.key, 0) if entry.routing_key == "usage.recorded"
                        else message_rows.get(message_ids[entry.key], 0))
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
                    (report.stranded if entry.key in stranded else report.lost).append(entry.key)
            else:
                if times_applied:
                    report.double_applied.append(f"{entry.key} (bad input) has an inbox row")
                if entry.confirmed and not reasons:
                    (report.stranded if entry.key in stranded else report.lost).append(entry.key)
                elif any(r != entry.expected_reason for r in reasons) or len(reasons) > entry.published:
                    report.wrong_dead_letters.append(f"{entry.key}: expected {entry.expected_reason}, got {reasons}")
        await self._check_counters(report, [e for e in valid if inbox.get(e.key)])
        report.verify = await asyncio.to_thread(run_verify, self.database_url) if verify else "not run"
        report.seconds = round(time.monotonic() - started, 1)
        return report

    async def _check_counters(self, report: Report, applied: list[Entry]) -> None:
        """Every user's and conversation's counter equals the sum over the events applied for it."""
        users: Counter[str] = Counter()
        conversations: Counter[str] = Counter()
        for entry in self.ledger.valid():
            data = entry.event["data"]
            users[data["user_id"]] += 0
            if data.get("conversation_id"):
                conversations[str(data["conversation_id"])] += 0
        for entry in applied:
            data = entry.event["data"]
            users[data["user_id"]] += tokens_of(entry.event)
            if data.get("conversation_id"):
                conversations[str(data["conversation_id"])] += tokens_of(entry.event)
        actual_users = await self._counts(
            "SELECT CAST(id AS text), tokens_used FROM users WHERE id = ANY(CAST(:ids AS uuid[]))", list(users))
        actual_conversations = await self._counts(
            "SELECT CAST(id AS text), total_tokens FROM conversations WHERE id = ANY(CAST(:ids AS uuid[]))",
            list(conversations))
        for kind, expected, actual in (("user", users, actual_users), ("conversation", conversations,
                                                                          actual_conversations)):
            for key, want in expected.items():
                got = actual.get(key, 0)
                if got > want:
                    report.double_counted_tokens += got - want
                elif got < want:
                    report.missing_tokens += want - got
                if got != want:
                    report.counter_drift.append(f"{kind} {key}: expected {want}, stored {got}")

    async def inbox_counts(self, keys: list[str]) -> dict[str, int]:
        """Inbox rows per event id, for the ids that have any."""
        return await self._counts(
            "SELECT event_id, count(*) FROM processed_events WHERE event_id = ANY(:ids) GROUP BY event_id", keys)

    async def _counts(self, sql: str, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        async with self.db.connect() as conn:
            return {str(k): int(v) for k, v in (await conn.execute(text(sql), {"ids": ids})).all()}

    async def _drain_dead_letters(self) -> dict[str, list[str]]:
        """Take every message out of the DLQ; returns the reasons found per ledger key."""
        found: dict[str, list[str]] = {}
        for message in await self._drain_messages([DEAD_LETTER_QUEUE]):
            reason = (message.headers or {}).get(HEADER_REASON)
            reason = reason.decode() if isinstance(reason, bytes) else str(reason or "<no reason>")
            found.setdefault(message.message_id or _event_id(message.body), []).append(reason)
        return found

    async def _drain(self, queues: list[str]) -> list[str]:
        """Take every message out of `queues`; returns their ledger keys."""
        return [m.message_id or _event_id(m.body) for m in await self._drain_messages(queues)]

    async def _drain_messages(self, queues: list[str]) -> list[aio_pika.abc.AbstractIncomingMessage]:
        connection = await aio_pika.connect(self.amqp_url)
        messages = []
        try:
            channel = await connection.channel()
            for name in queues:
                queue = await channel.declare_queue(name, passive=True)
                while (message := await queue.get(fail=False, no_ack=True)) is not None:
                    messages.append(message)
        finally:
            await connection.close()
        return messages


def _event_id(body: bytes) -> str:
    try:
        return str(json.loads(body).get("id"))
    except Exception:  # noqa: BLE001 - a bad input without an id
        return "<unidentified>"


def run_verify(database_url: str) -> str:
    """`python -m worker verify` when the command exists; 'ok', 'skipped: …' or 'FAILED: …'."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update({"WORKER_DATABASE_URL": database_url, "WORKER_LOG_FORMAT": "json"})
    command = [sys.executable, "-m", "worker", "verify"]
    probe = subprocess.run([*command, "--help"], cwd=REPO, env=env, capture_output=True, timeout=60, check=False)
    if probe.returncode != 0:
        return "skipped: `worker verify --help` failed (command not available)"
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        return f"FAILED: exit {result.returncode}: {(result.stdout + result.stderr).strip()[-600:]}"
    return "ok"


async def _quietly(awaitable: Any) -> None:
    try:
        await asyncio.wait_for(awaitable, 5)
    except Exception:  # noqa: BLE001 - closing a connection that is already broken
        pass
