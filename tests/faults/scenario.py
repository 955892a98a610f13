"""The pieces every fault test shares: settings, workload, the scenario and its verdict.

A test builds its `Scenario` (settings, topology), publishes, spawns workers and injects its
faults; `Scenario.finish()` drains, stops the workers, runs the kit's ledger checker and
asserts the verdict every fault test shares. What is left in the test is its scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import traceback
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.faults.fleet import WorkerFleet, log_excerpt, logged, outcomes
from tests.support.amqp import declare_worker_topology
from tests.support.config import make_settings
from tests.support.events import message_created, usage_recorded
from tests.support.processes import WorkerProcess
from tests.support.publisher import EventLedger, RecordingPublisher
from tests.support.waiting import eventually
from worker.settings import Settings
from worker.testkit.ledger import LedgerChecker
from worker.testkit.ledger_report import LedgerReport

# Every report of this run, in order, and the file they are written to; the conftest prints both.
REPORTS: list[dict[str, Any]] = []
REPORT_FILE: list[Path] = []


# Per token, in USD: digits down to the 12th after the point, as the contract allows at most.
INPUT_PRICE = Decimal("0.000000250001")
OUTPUT_PRICE = Decimal("0.000001000003")

# Every fault runs twice: one event per transaction, and micro-batches (see conftest.batch_mode).
BATCH_SIZE = [1]


def fault_settings(database_url: str, amqp_url: str, **overrides: object) -> Settings:
    """Test settings, with no HTTP port and no policy check (the private broker has no management API)."""
    defaults = {"http_port": 0, "require_queue_policy": False, "batch_size": BATCH_SIZE[0], "batch_wait_ms": 10}
    return make_settings(database_url, amqp_url, **{**defaults, **overrides})


def mixed_events(users: list[uuid.UUID], count: int, rng: random.Random, conversations_per_user: int = 4) -> list[dict]:
    """Messages and usage records for `users`, several per conversation, random token counts, each with
    the `cost_usd` a gateway would compute (so the ledger checker checks every cost counter too)."""
    conversations = {user: [uuid.uuid4() for _ in range(conversations_per_user)] for user in users}
    events = []
    for _ in range(count):
        user = rng.choice(users)
        prompt, completion = rng.randint(0, 5000), rng.randint(0, 2000)
        tokens = {"prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": gateway_cost(prompt, completion)}
        conversation = rng.choice(conversations[user])
        roll = rng.random()
        if roll < 0.6:
            events.append(message_created(user, conversation_id=conversation, **tokens))
        elif roll < 0.8:
            events.append(usage_recorded(user, conversation_id=conversation, **tokens))
        else:
            events.append(usage_recorded(user, **tokens))
    return events


def gateway_cost(prompt_tokens: int, completion_tokens: int) -> str:
    """A cost as a gateway sends it: a decimal string, down to the 12th digit after the point."""
    return f"{prompt_tokens * INPUT_PRICE + completion_tokens * OUTPUT_PRICE:f}"


async def publish_stream(publisher: RecordingPublisher, events: list[dict], per_second: float, chunk: int = 25) -> int:
    """Publish at about `per_second` (load shaping, so faults land mid-stream); returns copies confirmed."""
    confirmed = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    for start in range(0, len(events), chunk):
        confirmed += await publisher.publish_many(events[start:start + chunk], window=chunk)
        ahead = started + (start + chunk) / per_second - loop.time()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return confirmed


# -- one scenario: ledger, publisher, workers, checker, verdict ----------------------------------


@dataclass
class Finished:
    """A scenario after `finish()`: the checker's report and what the workers logged."""

    report: LedgerReport
    outcomes: Counter[str]
    workers: list[WorkerProcess]

    def logged(self, event: str) -> int:
        return logged(self.workers, event)


@dataclass
class Scenario:
    """A fault test's ledger of publishes, its worker fleet, its checker, and the faults it injected."""

    name: str
    db: AsyncEngine
    database_url: str
    amqp_url: str
    settings: Settings
    report_path: Path
    fleet: WorkerFleet
    ledger: EventLedger = field(default_factory=EventLedger)
    faults: list[str] = field(default_factory=list)
    recoveries: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    stage_failure: str | None = None

    @property
    def delays(self) -> list[int]:
        return sorted(set(self.settings.retry_delays_s) | set(self.settings.unknown_user_delays_s))

    @property
    def checker(self) -> LedgerChecker:
        return LedgerChecker(self.db, self.amqp_url, self.ledger, delays_s=self.delays)

    async def declare_topology(self) -> None:
        await declare_worker_topology(self.amqp_url, self.delays)

    def publisher(self) -> RecordingPublisher:
        return RecordingPublisher(self.amqp_url, self.ledger)

    def spawn(self, name: str | None = None) -> WorkerProcess:
        """A worker process with the scenario's settings."""
        return self.fleet.spawn(self.settings, name)

    def fault(self, description: str) -> None:
        """Record (and print) a fault the test injected."""
        self.faults.append(description)
        print(f"  fault #{len(self.faults)}: {description}")

    def recover(self, description: str) -> None:
        """Record (and print) the end of a fault: a service back, a link healed, a lock released."""
        self.recoveries.append(description)
        print(f"  recovery: {description}")

    @contextlib.asynccontextmanager
    async def faulting(self) -> AsyncIterator[None]:
        """The fault phase: if it fails, remember why and go on, so the checker still reports."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - re-raised by `report()` once the figures are out
            self.stage_failure = (f"after {len(self.faults)} fault(s): {type(exc).__name__}: {exc}\n"
                                  + "".join(traceback.format_tb(exc.__traceback__)[-2:]))

    @contextlib.asynccontextmanager
    async def streaming(self, events: list[dict], per_second: float) -> AsyncIterator[RecordingPublisher]:
        """The fault phase while `events` are published at `per_second`; by its end every one was confirmed."""
        async with self.publisher() as publisher, self.faulting():
            stream = asyncio.ensure_future(publish_stream(publisher, events, per_second))
            try:
                yield publisher
                assert await stream == len(events), "every event published was confirmed"
            finally:
                stream.cancel()

    async def applied_at_least(self, threshold: int) -> bool:
        """At least `threshold` of the ledger's valid events have an inbox row."""
        keys = [e.key for e in self.ledger.valid()]
        return len(await self.checker.inbox_counts(keys)) >= threshold

    async def wait_applied(self, threshold: int, timeout: float = 60, interval: float = 0.05) -> None:
        await eventually(lambda: self.applied_at_least(threshold), timeout=timeout, interval=interval)

    async def wait_consumers(self, count: int, timeout: float = 60, interval: float = 0.1) -> None:
        """Until the worker queue has `count` consumers (a broker still starting counts as not yet)."""

        async def consumers_are() -> bool:
            try:
                return await self.checker.broker.consumers() == count
            except Exception:  # noqa: BLE001 - the broker is still starting
                return False

        await eventually(consumers_are, timeout=timeout, interval=interval)

    async def wait_logged(self, event: str, count: int, timeout: float = 30) -> None:
        """Until the scenario's workers logged `event` at least `count` times."""

        async def enough() -> bool:
            return logged(self.fleet.all, event) >= count

        await eventually(enough, timeout=timeout)

    async def settle(self, timeout: float) -> bool:
        """Wait for the checker's settled state (briefly when the fault phase already failed)."""
        return await self.checker.wait_settled(timeout=10 if self.stage_failure else timeout)

    async def report(self, *, notes: Sequence[str] = ()) -> LedgerReport:
        """Check (the workers must have stopped), print and record the figures; raise a fault-phase failure."""
        report = await self.checker.check(self.name, self.faults, self.started)
        report.notes.extend([*(f"recovery: {r}" for r in self.recoveries), *notes])
        if self.stage_failure:
            report.notes.append(f"fault phase failed {self.stage_failure}")
        record_report(report, self.report_path)
        if self.stage_failure:
            raise AssertionError(f"fault phase failed {self.stage_failure}")
        return report

    async def finish(self, *, settle_timeout: float, workers: int, applied: int, notes: Sequence[str] = ()) -> Finished:
        """Drain, stop the workers, check, and give the suite's verdict: everything settled, the `workers`
        still running exit 0, `applied` events applied, nothing lost, doubled or left behind."""
        settled = await self.settle(settle_timeout)
        codes = await self.fleet.terminate_all()
        seen = outcomes(self.fleet.all)
        pauses = (logged(self.fleet.all, "outage_started"), logged(self.fleet.all, "outage_ended"))
        report = await self.report(notes=[f"outcomes: {dict(seen)}", f"pauses started/ended: {pauses}", *notes])
        assert settled, log_excerpt(self.fleet.all[-workers:])
        assert codes == [0] * workers, (codes, log_excerpt(self.fleet.all[-workers:]))
        assert report.applied == applied, (report.applied, applied)
        assert_clean(report)
        return Finished(report, seen, self.fleet.all)


def record_report(report: LedgerReport, path: Path) -> None:
    """Print the figures and rewrite the run's JSON report with them."""
    REPORTS.append({**report.as_dict(), "summary": report.summary()})
    REPORT_FILE[:] = [path]
    path.write_text(json.dumps(REPORTS, indent=2, default=str))
    print(f"\n{report.summary()}\nreport: {path}")
    for name in ("lost", "stranded", "double_applied", "wrong_dead_letters", "counter_drift", "row_sum_drift",
                 "unexpected", "notes"):
        if getattr(report, name):
            print(f"  {name}: {getattr(report, name)[:10]}")


def assert_clean(report: LedgerReport) -> None:
    """The suite's verdict: nothing lost, nothing counted twice, nothing left behind."""
    assert not report.lost, f"lost {len(report.lost)} confirmed events: {report.lost[:5]}"
    assert not report.stranded, f"{len(report.stranded)} confirmed events never processed: {report.left_in_queues}"
    assert not report.double_applied, f"applied twice: {report.double_applied[:5]}"
    assert report.double_counted_tokens == 0, report.counter_drift[:5]
    assert report.missing_tokens == 0, report.counter_drift[:5]
    assert not report.counter_drift, report.counter_drift[:5]
    assert not report.wrong_dead_letters, report.wrong_dead_letters[:5]
    assert not any(report.left_in_queues.values()), report.left_in_queues
    assert not report.row_sum_drift, f"worker verify: {report.row_sum_drift[:5]}"
    assert report.ok, report.problems()
