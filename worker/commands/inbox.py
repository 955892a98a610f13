"""`worker inbox maintain`: daily partitions of the inbox created ahead, expired ones dropped whole."""

from __future__ import annotations

import argparse
import asyncio

from worker.db.schema import maintain_inbox
from worker.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    inbox = subparsers.add_parser("inbox", help="idempotency inbox maintenance").add_subparsers(
        dest="inbox_command", required=True
    )
    maintain = inbox.add_parser(
        "maintain", help="create the coming days' partitions and drop those past WORKER_INBOX_RETENTION_DAYS"
    )
    maintain.set_defaults(handler=run_maintain)


def run_maintain(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(maintain_inbox(settings))
    return 0
