"""The whole bench: private database and vhost, raw baselines, every (workload, batch size) run, clean-up."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.bench import machine
from worker.bench.amqp_side import connect, declare_worker_topology, server_version
from worker.bench.autoanalyze import AutoAnalyze
from worker.bench.baseline import RawRate, measure_raw_rate
from worker.bench.options import BenchOptions
from worker.bench.progress import Progress
from worker.bench.queue_policy import apply_and_wait
from worker.bench.scenario import RunContext, RunResult, run_scenario
from worker.bench.store import BenchStore
from worker.bench.workload import workload_for
from worker.settings import Settings
from worker.testkit.private_database import PrivateDatabase
from worker.testkit.private_vhost import PrivateVhost

SCHEMA_VERSION = 1


def worker_overrides(settings: Settings, database: PrivateDatabase, vhost: PrivateVhost) -> Settings:
    """The operator's settings, pointed at the private database and vhost; no HTTP port (K workers share a host)."""
    return settings.model_copy(update={
        "database_url": database.url,
        "amqp_url": vhost.amqp_url,
        "http_port": 0,
        "log_format": "json",
    })


async def run_bench(settings: Settings, options: BenchOptions, progress: Progress) -> dict[str, Any]:
    """Every run of the bench; returns the machine-readable result. Cleans up even when cancelled."""
    started = time.time()
    database, vhost = PrivateDatabase.beside(settings), PrivateVhost.beside(settings)
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "machine": machine.describe(),
        "options": options.as_dict(),
        "database": database.name,
        "vhost": vhost.name,
        "raw": [],
        "runs": [],
    }
    progress.note(f"bench: database {database.name}, vhost {vhost.name}")
    created_db = created_vhost = False
    try:
        await database.create(settings)
        created_db = True
        await vhost.create()
        created_vhost = True
        worker_settings = worker_overrides(settings, database, vhost)
        connection = await connect(vhost.amqp_url)
        try:
            result["machine"]["rabbitmq"] = server_version(connection)
            exchange = await declare_worker_topology(connection, worker_settings)
            policy_problem = await apply_and_wait(worker_settings)
            result["queue_policy"] = policy_problem or "in force"
            extra_env = _policy_env(policy_problem, progress)
            with _log_dir(options) as log_dir:
                async with BenchStore(database.dsn) as store:
                    result["machine"]["postgresql"] = await store.conn.fetchval("SHOW server_version")
                    statistics = AutoAnalyze(database.dsn)
                    await statistics.start()
                    ctx = RunContext(worker_settings, options, store, connection, exchange, Path(log_dir), progress,
                                     extra_env, statistics)
                    raws: list[RawRate] = []
                    try:
                        for workload_name in options.workloads:
                            before: RawRate | None = None
                            for batch_size in options.batch_sizes:
                                prefetch = options.prefetch_for(batch_size)
                                if before is None or before.prefetch != prefetch:
                                    before = await _raw_rate(ctx, raws, workload_name, prefetch)
                                run = await run_scenario(ctx, workload_name, batch_size)
                                after = await _raw_rate(ctx, raws, workload_name, prefetch)
                                run.raw_bracket = [r.events_per_s for r in (before, after) if r is not None]
                                run.raw_events_per_s = _mean(run.raw_bracket)
                                result["runs"].append(run.as_dict())
                                progress.note(_summary_line(run))
                                before = after
                    finally:
                        result["statistics"] = await statistics.stop()
                    result["raw"] = [_raw_dict(r) for r in raws]
        finally:
            await connection.close()
    finally:
        if created_vhost:
            await vhost.delete()
        if created_db and not options.keep:
            await database.drop()
        elif created_db:
            progress.note(f"bench: kept database {database.name} (--keep)")
    result["finished_at"] = datetime.now(UTC).isoformat()
    result["machine"]["load_average_at_end"] = machine.load_average()
    result["counters_ok"] = bool(result["runs"]) and all(run["counters_ok"] for run in result["runs"])
    return result


@contextlib.contextmanager
def _log_dir(options: BenchOptions) -> Iterator[str]:
    """Where worker logs go: the operator's directory (kept), or a temporary one (removed)."""
    if options.log_dir is not None:
        options.log_dir.mkdir(parents=True, exist_ok=True)
        yield str(options.log_dir)
        return
    with tempfile.TemporaryDirectory(prefix="worker-bench-") as path:
        yield path


def _policy_env(problem: str | None, progress: Progress) -> dict[str, str]:
    """Workers keep the operator's policy check, unless the policy could not be put in force here."""
    if problem is None:
        return {}
    progress.note(f"bench: queue policy not in force ({problem}); workers start without the policy check")
    return {"WORKER_REQUIRE_QUEUE_POLICY": "false"}


async def _raw_rate(ctx: RunContext, measured: list[RawRate], workload_name: str, prefetch: int) -> RawRate | None:
    """Measure the raw rate for this workload and prefetch now (the runs on either side of it are judged by it)."""
    options = ctx.options
    if not options.raw_baseline:
        return None
    # Same seed as the runs: the same payloads (ids differ, sizes and shapes do not).
    workload = workload_for(workload_name, options)
    specs = workload.events(options.events, f"{workload_name}-raw{len(measured)}-")
    raw = await measure_raw_rate(
        ctx.connection, workload, specs, prefetch, options.publish_window, ctx.settings.publish_timeout_s,
        lambda label, done, total: ctx.progress.update(f"{workload_name} {label}", done, total),
    )
    measured.append(raw)
    ctx.progress.note(f"{workload_name}: raw rate {raw.events_per_s:.0f} events/s (prefetch {prefetch})")
    return raw


def _mean(rates: list[float]) -> float | None:
    """A run's raw rate: the mean of the measurements just before and just after it.

    On a shared machine the rate drifts by a quarter within minutes; a raw rate taken once
    per workload judged the last batch size by the machine of several minutes earlier.
    """
    return sum(rates) / len(rates) if rates else None


def _raw_dict(raw: RawRate) -> dict[str, Any]:
    return {
        "workload": raw.workload,
        "prefetch": raw.prefetch,
        "ack_every": raw.ack_every,
        "events": raw.events,
        "seconds": round(raw.seconds, 3),
        "events_per_s": round(raw.events_per_s, 1),
    }


def _summary_line(run: RunResult) -> str:
    rate = f"{run.events_per_s:.0f} events/s" if run.events_per_s else "no rate"
    verdict = "counters OK" if run.counters_ok else f"COUNTERS WRONG: {'; '.join(run.mismatches) or run.error}"
    return f"{run.workload} B={run.batch_size}: {rate}, {verdict}"
