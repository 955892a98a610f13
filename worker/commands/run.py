"""`worker run`: consume events until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse

from worker.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="consume events until SIGTERM or SIGINT")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from worker.runtime import loop
    from worker.runtime.app import run_worker

    return loop.run(run_worker(settings), settings.event_loop)
