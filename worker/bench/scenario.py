"""One run: a workload at one batch size — backlog drain, half-load latency, memory, exact counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractConnection, AbstractExchange

from worker.bench.amqp_side import purge_worker_queues, ready_messages, retry_delays
from worker.bench.autoanalyze import AutoAnalyze
from worker.bench.baseline import measure_raw_latency
from worker.bench.cpu import CpuSampler, per_event_us
from worker.bench.latency import Percentiles, latencies_ms, summarise
from worker.bench.memory import PeakRss
from worker.bench.options import BenchOptions
from worker.bench.processes import WorkerProcesses
from worker.bench.progress import Progress
from worker.bench.publishing import PipelinedPublisher, publish_all
from worker.bench.store import BenchStore
from worker.bench.worker_log import applied_times
from worker.bench.workload import Workload, workload_for
from worker.broker.publisher import open_publisher_channel
from worker.db.engine import create_engine
from worker.runtime.heap import freeze_heap
from worker.settings import Settings
from worker.testkit.ledger import LedgerChecker

POLL_S = 0.25
HALF_LOAD_POLL_S = 1.0
MIN_HALF_LOAD_EVENTS = 200


class RunFailed(Exception):
    """The workers crashed or stopped making progress."""


@dataclass
class RunResult:
    """Figures of one (workload, batch size) run."""

    workload: str
    batch_size: int
    workers: int
    prefetch: int
    events: int
    events_per_s: float | None = None
    startup_s: float | None = None
    drain_s: float | None = None
    raw_events_per_s: float | None = None
    """The mean of `raw_bracket`: the raw rates measured just before and just after this run."""
    raw_bracket: list[float] = field(default_factory=list)
    full_load: Percentiles | None = None
    half_load: Percentiles | None = None
    half_load_logged: Percentiles | None = None
    half_load_confirm: Percentiles | None = None
    raw_half_load: Percentiles | None = None
    """The bare consumer's publish-to-delivery latency at the same rate, with no worker running."""
    half_load_rate: float | None = None
    load_fraction: float = 0.5
    half_load_events: int = 0
    half_load_published_rate: float | None = None
    peak_rss_mb: list[float] = field(default_factory=list)
    drain_cpu_cores: dict[str, float] | None = None
    half_load_cpu_cores: dict[str, float] | None = None
    worker_exit_codes: list[int | None] = field(default_factory=list)
    counters_ok: bool = False
    mismatches: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def cpu_us_per_event(self) -> dict[str, float] | None:
        """CPU microseconds per event while draining, per process group."""
        return per_event_us(self.drain_cpu_cores, self.events_per_s)

    @property
    def ratio_to_raw(self) -> float | None:
        if self.events_per_s is None or not self.raw_events_per_s:
            return None
        return self.events_per_s / self.raw_events_per_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "batch_size": self.batch_size,
            "workers": self.workers,
            "prefetch": self.prefetch,
            "events": self.events,
            "events_per_s": _round(self.events_per_s),
            "raw_events_per_s": _round(self.raw_events_per_s),
            "raw_bracket": [_round(r) for r in self.raw_bracket],
            "ratio_to_raw": _round(self.ratio_to_raw, 3),
            "startup_s": _round(self.startup_s, 2),
            "drain_s": _round(self.drain_s, 2),
            "latency_ms": {
                "full_load": self.full_load.as_dict() if self.full_load else None,
                "half_load": self.half_load.as_dict() if self.half_load else None,
                "half_load_logged": self.half_load_logged.as_dict() if self.half_load_logged else None,
                "half_load_confirm": self.half_load_confirm.as_dict() if self.half_load_confirm else None,
                "raw_half_load": self.raw_half_load.as_dict() if self.raw_half_load else None,
            },
            "half_load_rate": _round(self.half_load_rate),
            "load_fraction": self.load_fraction,
            "half_load_events": self.half_load_events,
            "half_load_published_rate": _round(self.half_load_published_rate),
            "peak_rss_mb": self.peak_rss_mb,
            "peak_rss_mb_max": max(self.peak_rss_mb) if self.peak_rss_mb else None,
            "cpu_cores": {"drain": self.drain_cpu_cores, "half_load": self.half_load_cpu_cores},
            "cpu_us_per_event": {"drain": self.cpu_us_per_event},
            "worker_exit_codes": self.worker_exit_codes,
            "counters_ok": self.counters_ok,
            "mismatches": self.mismatches,
            "error": self.error,
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class RunContext:
    """What every run shares: settings for the workers, the private database and vhost, the bench's connections."""

    settings: Settings
    options: BenchOptions
    store: BenchStore
    connection: AbstractConnection
    exchange: AbstractExchange
    log_dir: Path
    progress: Progress
    worker_env: dict[str, str]
    statistics: AutoAnalyze


async def run_scenario(ctx: RunContext, workload_name: str, batch_size: int) -> RunResult:
    """Backlog of `events`, drained by fresh workers; then half load; then verification."""
    options = ctx.options
    label = f"{workload_name} B={batch_size}"
    prefetch = options.prefetch_for(batch_size)
    result = RunResult(workload_name, batch_size, options.workers, prefetch, options.events,
                       load_fraction=options.load_fraction)
    await ctx.store.reset()
    await purge_worker_queues(ctx.connection)
    workload = workload_for(workload_name, options)
    await ctx.store.create_users(workload.user_ids, options.budget_period)
    await ctx.statistics.after_reset()
    full_prefix, half_prefix = f"{workload_name}-b{batch_size}-full-", f"{workload_name}-b{batch_size}-half-"
    backlog = workload.events(options.events, full_prefix)
    # The load generator's own full collections would stall publishing and send bursts.
    freeze_heap()

    channel = await open_publisher_channel(ctx.connection)
    publisher = PipelinedPublisher(channel, options.publish_window, ctx.settings.publish_timeout_s)
    published = await publish_all(publisher, workload, backlog, ctx.exchange,
                                  progress=lambda n: ctx.progress.update(f"{label}: publish", n, len(backlog)))

    worker_settings = ctx.settings.model_copy(update={"batch_size": batch_size, "prefetch": prefetch})
    workers = WorkerProcesses(worker_settings, options.workers, ctx.log_dir, f"{workload_name}-b{batch_size}",
                              ctx.worker_env)
    spawned = time.time()
    workers.start()
    memory = PeakRss(workers.pids)
    memory.start()
    cpu = CpuSampler(workers.pids)
    cpu.start()
    try:
        await _wait_processed(ctx, workers, options.events, f"{label}: drain", lambda: publisher.confirmed)
        times = await ctx.store.processed_times(full_prefix)
        first, last = min(times.values()), max(times.values())
        result.startup_s = first - spawned
        result.drain_s = last - first
        # N events between the first and the last transaction: N-1 intervals.
        result.events_per_s = (len(times) - 1) / result.drain_s if result.drain_s > 0 else None
        cpu.sample()  # one sample past the last transaction
        result.drain_cpu_cores = cpu.cores_between(first, last)
        result.full_load = summarise(latencies_ms(full_prefix, published, times))
        # The peak while draining the backlog is the figure the memory target is about.
        result.peak_rss_mb = await memory.stop()

        if options.half_load and result.events_per_s:
            rate = result.events_per_s * options.load_fraction
            count = min(options.events, max(MIN_HALF_LOAD_EVENTS, int(rate * options.half_load_seconds)))
            half = workload.events(count, half_prefix)
            result.half_load_rate, result.half_load_events = rate, count
            wait = asyncio.create_task(_wait_processed(ctx, workers, options.events + count, None,
                                                       lambda: publisher.confirmed, HALF_LOAD_POLL_S))
            half_started = time.time()
            confirmed_before = len(publisher.confirm_s)
            try:
                half_published = await publish_all(
                    publisher, workload, half, ctx.exchange, rate=rate,
                    progress=lambda n: ctx.progress.update(f"{label}: half load", n, count))
                await wait
                half_ended = time.time()
                cpu.sample()
                result.half_load_cpu_cores = cpu.cores_between(half_started, half_ended)
            finally:
                wait.cancel()
            if count > 1 and half_published[-1] > half_published[0]:
                # What the publisher achieved: below the target when the bench itself runs short of CPU.
                result.half_load_published_rate = (count - 1) / (half_published[-1] - half_published[0])
            # The broker confirms a quorum-queue publish and delivers it once the same log entry is
            # committed: its confirm latency is the floor of any consumer's publish-to-commit latency.
            result.half_load_confirm = summarise([s * 1000 for s in publisher.confirm_s[confirmed_before:]])
            half_times = await ctx.store.processed_times(half_prefix)
            result.half_load = summarise(latencies_ms(half_prefix, half_published, half_times))
            logged = applied_times(workers.log_paths, half_prefix)
            result.half_load_logged = summarise(latencies_ms(half_prefix, half_published, logged))
    except RunFailed as exc:
        result.error = str(exc)
        ctx.progress.note(f"{label}: FAILED: {exc}\n{workers.log_tail()}")
    finally:
        await memory.stop()
        await cpu.stop()
        result.worker_exit_codes = await asyncio.to_thread(workers.stop, ctx.settings.shutdown_timeout_s + 10)
        await channel.close()

    if options.raw_baseline and result.half_load_rate and result.error is None:
        # The same load on the broker alone, once the workers are gone: the floor under `half_load`.
        raw_prefix = f"{workload_name}-b{batch_size}-rawhalf-"
        # A workload of its own: these events never reach the workers, so they stay out of the ledger.
        raw_workload = workload_for(workload_name, options)
        raw_half = raw_workload.events(result.half_load_events, raw_prefix)
        ctx.progress.update(f"{label}: raw half load", 0, len(raw_half))
        result.raw_half_load = await measure_raw_latency(
            ctx.connection, ctx.settings, raw_workload, raw_half, raw_prefix, prefetch, result.half_load_rate,
            options.publish_window, ctx.settings.publish_timeout_s)
        ctx.progress.update(f"{label}: raw half load", len(raw_half), len(raw_half))

    result.mismatches = await _ledger_mismatches(ctx, workload, label)
    if any(code != 0 for code in result.worker_exit_codes):
        result.mismatches.append(f"worker exit codes {result.worker_exit_codes}")
    result.counters_ok = not result.mismatches and result.error is None
    return result


async def _ledger_mismatches(ctx: RunContext, workload: Workload, label: str) -> list[str]:
    """What the ledger checker finds wrong; the run owns its database and vhost, so everything in them is checked."""
    engine = create_engine(ctx.settings, pool_size=1)
    try:
        checker = LedgerChecker(engine, ctx.settings.amqp_url, workload.ledger, delays_s=retry_delays(ctx.settings),
                                whole_database=True)
        return (await checker.check(label)).problems()
    finally:
        await engine.dispose()


async def _wait_processed(
    ctx: RunContext, workers: WorkerProcesses, target: int, label: str | None, published: Callable[[], int],
    interval_s: float = POLL_S,
) -> None:
    """Until the inbox holds `target` events; fails when a worker exits or nothing moves for the stall timeout.

    While the worker queue still has ready messages, progress is read from the broker (a
    passive declare): a count(*) of the inbox at every poll would take CPU from the
    workers being measured. The inbox is counted once the queue is empty.
    """
    stall_timeout = ctx.options.stall_timeout_s
    last_seen, last_change = None, time.monotonic()
    ready_channel = await ctx.connection.channel()
    try:
        while True:
            ready = await ready_messages(ready_channel)
            # With messages still ready, deliveries in flight count as done: an estimate for display.
            count = max(0, published() - ready) if ready else await ctx.store.processed_count()
            now = time.monotonic()
            if label is not None:
                ctx.progress.update(label, min(count, target), target)
            if not ready and count >= target:
                return
            if (ready, count) != last_seen:
                last_seen, last_change = (ready, count), now
            if exited := workers.exited():
                raise RunFailed(f"worker(s) exited early (index, code): {exited}")
            if now - last_change > stall_timeout:
                raise RunFailed(f"no progress for {stall_timeout:.0f}s at {count}/{target} events ({ready} ready)")
            await asyncio.sleep(interval_s)
    finally:
        await ready_channel.close()
