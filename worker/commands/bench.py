"""`worker bench`: measure the worker against the broker's raw rate on a private database and vhost."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import signal
import sys
from pathlib import Path

from worker.bench.options import BUDGET_PERIODS, WORKLOADS, BenchOptions
from worker.settings import Settings

EXIT_MISMATCH = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("every value must be a positive integer")
    return values


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("must be above 0 and at most 1")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _workloads(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in WORKLOADS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"workloads are {', '.join(WORKLOADS)}; got {text!r}")
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = BenchOptions()
    parser = subparsers.add_parser(
        "bench",
        help="benchmark throughput, latency, memory and exact counters on a private database and vhost",
        description="Publishes a backlog, drains it with `worker run` processes, measures events/s against a raw "
                    "consumer, publish-to-commit latency at full and half load (and the broker alone at the same "
                    "load) and peak RSS, and verifies every counter. Exits 1 when a counter is wrong; never fails "
                    "on speed.",
    )
    parser.add_argument("--events", type=int, default=defaults.events, help="events per run (default %(default)s)")
    parser.add_argument("--users", type=int, default=defaults.users, help="users of the uniform workload")
    parser.add_argument("--conversations-per-user", type=int, default=defaults.conversations_per_user)
    parser.add_argument("--content-bytes", type=int, default=defaults.content_bytes,
                        help="mean size of a message's content")
    parser.add_argument("--content-spread", type=_share, default=defaults.content_spread,
                        help="content lengths vary by ± this fraction of --content-bytes (0: all equal)")
    parser.add_argument("--message-share", type=_share, default=defaults.message_share,
                        help="fraction of message.created events; the rest are usage.recorded")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="worker processes (K)")
    parser.add_argument("--batch-sizes", type=_positive_ints, default=defaults.batch_sizes,
                        help="comma-separated WORKER_BATCH_SIZE values (default 1,16,64,256)")
    parser.add_argument("--workloads", type=_workloads, default=defaults.workloads,
                        help="comma-separated: uniform (many users), hot (one user)")
    parser.add_argument("--prefetch", type=int, default=None,
                        help="worker and raw-consumer prefetch (default WORKER_PREFETCH); raised to the batch size")
    parser.add_argument("--no-half-load", dest="half_load", action="store_false",
                        help="skip the latency phase at half the measured rate")
    parser.add_argument("--half-load-seconds", type=float, default=defaults.half_load_seconds)
    parser.add_argument("--load-fraction", type=_fraction, default=defaults.load_fraction,
                        help="publish the latency phase at this fraction of the measured rate (default %(default)s; "
                             "the latency target is judged at 0.5 only)")
    parser.add_argument("--no-raw", dest="raw_baseline", action="store_false", help="skip the raw broker baseline: its rate and the broker-alone latency phase")
    parser.add_argument("--publish-window", type=int, default=defaults.publish_window,
                        help="publisher confirms outstanding at once")
    parser.add_argument("--stall-timeout", type=float, default=defaults.stall_timeout_s,
                        help="seconds without progress before a run counts as failed")
    parser.add_argument("--budget-period", choices=BUDGET_PERIODS, default=defaults.budget_period,
                        help="the users' budget period (default %(default)s); users get a cost limit and the bench's "
                             "models a price either way")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--keep", action="store_true", help="keep the private database for inspection")
    parser.add_argument("--json", dest="json_path", type=Path, default=None, help="write the result as JSON here")
    parser.add_argument("--plot", dest="plot_path", type=Path, default=None,
                        help="draw throughput and p99 against batch size (PNG; needs the `bench` extra)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="keep the workers' logs here (default: a temporary directory, removed)")
    parser.set_defaults(handler=run)


def options_from(args: argparse.Namespace, settings: Settings) -> BenchOptions:
    return BenchOptions(
        events=args.events,
        users=args.users,
        conversations_per_user=args.conversations_per_user,
        content_bytes=args.content_bytes,
        content_spread=args.content_spread,
        message_share=args.message_share,
        workers=args.workers,
        batch_sizes=args.batch_sizes,
        workloads=args.workloads,
        prefetch=args.prefetch or settings.prefetch,
        half_load=args.half_load,
        half_load_seconds=args.half_load_seconds,
        load_fraction=args.load_fraction,
        raw_baseline=args.raw_baseline,
        publish_window=args.publish_window,
        stall_timeout_s=args.stall_timeout,
        budget_period=args.budget_period,
        seed=args.seed,
        keep=args.keep,
        json_path=args.json_path,
        plot_path=args.plot_path,
        log_dir=args.log_dir,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from worker.bench.progress import Progress
    from worker.bench.report import render_table, render_targets, write_json
    from worker.bench.runner import run_bench
    from worker.bench.targets import evaluate
    from worker.runtime import loop

    options = options_from(args, settings)
    # The bench's own process (migrations, partitions) logs warnings only; its workers log as configured.
    logging.getLogger().setLevel(logging.WARNING)
    if min(options.events, options.users, options.workers, options.conversations_per_user) < 1:
        print("error: --events, --users, --workers and --conversations-per-user must be at least 1", file=sys.stderr)
        return EXIT_ERROR
    if options.plot_path and importlib.util.find_spec("matplotlib") is None:
        print("error: --plot needs matplotlib: install the `bench` extra", file=sys.stderr)
        return EXIT_ERROR
    try:
        # The same loop as the workers (`WORKER_EVENT_LOOP`), for the publisher and the raw consumer alike.
        result = loop.run(_cancellable(run_bench(settings, options, Progress())), settings.event_loop)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench interrupted; private database and vhost removed", file=sys.stderr)
        return EXIT_INTERRUPTED
    result["targets"] = evaluate(result)
    print(render_table(result))
    print("targets (informative; the bench never fails on speed):")
    print(render_targets(result["targets"]))
    if options.json_path:
        write_json(result, options.json_path)
    if options.plot_path:
        from worker.bench.plot import plot

        plot(result, options.plot_path)
    if not result["counters_ok"]:
        print("error: counters do not match the events sent (see `mismatches` per run)", file=sys.stderr)
        return EXIT_MISMATCH
    return 0


async def _cancellable(work):  # noqa: ANN001, ANN202
    """Run `work`, cancelled (so its clean-up runs) on SIGTERM as on Ctrl-C."""
    task = asyncio.ensure_future(work)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task
