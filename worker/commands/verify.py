"""`worker verify [--user ID]`: recompute every token counter from stored rows and report each drift."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from worker.db.counter_drift import Drift, find_drift
from worker.db.engine import create_engine
from worker.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="recompute token counters from rows; exit 1 on any drift")
    parser.add_argument("--user", type=uuid.UUID, default=None, metavar="ID", help="verify only this user")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    drifts = asyncio.run(_verify(settings, args.user))
    for drift in drifts:
        print(drift.describe())
    scope = f"user {args.user}" if args.user else "all users and conversations"
    if drifts:
        print(f"drift: {len(drifts)} counter(s) disagree with their rows ({scope})", file=sys.stderr)
        return 1
    print(f"ok: every counter matches its rows ({scope})")
    return 0


async def _verify(settings: Settings, user_id: uuid.UUID | None) -> list[Drift]:
    engine = create_engine(settings, pool_size=1)
    try:
        return await find_drift(engine, user_id)
    finally:
        await engine.dispose()
