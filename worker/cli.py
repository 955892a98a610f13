"""The `worker` command line: each subcommand module registers its parser and runs itself."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from pydantic import ValidationError

from worker.commands import (
    api,
    bench,
    dlq,
    inbox,
    migrate,
    policy,
    prices,
    publish,
    run,
    show_settings,
    users,
    verify,
)
from worker.logs import configure_logging
from worker.runtime.startup import EXIT_CONFIG
from worker.settings import Settings

# A new subcommand: a module in worker/commands with `register(subparsers)` and
# `run(args, settings) -> int`, listed here.
COMMANDS: tuple[ModuleType, ...] = (
    migrate, run, api, publish, users, prices, inbox, policy, dlq, verify, bench, show_settings
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worker", description="LLM event persistence worker.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as invalid:
        # NOTE: the field and the rule only; the rejected input may be a secret.
        for error in invalid.errors():
            name = "WORKER_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"worker: invalid setting {name}: {error['msg']}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings)
    return int(args.handler(args, settings))


if __name__ == "__main__":
    sys.exit(main())
