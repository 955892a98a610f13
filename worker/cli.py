"""The `worker` command line: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import asyncio
import sys

from worker.logs import configure_logging
from worker.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worker", description="LLM event persistence worker.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="upgrade the database schema to head and create inbox partitions")
    commands.add_parser("run", help="consume events until SIGTERM or SIGINT")
    publish = commands.add_parser("publish", help="publish JSON events to the exchange (reference producer)")
    publish.add_argument("file", help="a JSON event, a JSON array of events or JSON Lines; '-' for stdin")
    users = commands.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="create a user and print its id")
    create.add_argument("--email", required=True)
    create.add_argument("--tokens-limit", type=int, default=None)
    create.add_argument("--tier", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings)
    if args.command == "migrate":
        from worker.commands import migrate

        return migrate.run(settings)
    if args.command == "run":
        from worker.runtime.app import run_worker

        return asyncio.run(run_worker(settings))
    if args.command == "publish":
        from worker.commands import publish

        return publish.run(settings, args.file)
    if args.command == "users" and args.users_command == "create":
        from worker.commands import users

        return users.run(settings, args.email, args.tokens_limit, args.tier)
    return 2


if __name__ == "__main__":
    sys.exit(main())
