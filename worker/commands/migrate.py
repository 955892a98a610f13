"""`worker migrate`: Alembic upgrade to head, then the inbox partitions for the coming days."""

from __future__ import annotations

import argparse
import asyncio

from worker.db.schema import build_schema
from worker.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("migrate", help="upgrade the schema to head and create inbox partitions")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(build_schema(settings))
    return 0
