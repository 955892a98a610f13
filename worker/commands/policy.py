"""`worker policy apply|check`: the worker queue's policy (delivery limit, at-least-once dead-lettering)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from worker.broker.management import ManagementError
from worker.broker.policy import WORKER_QUEUE_POLICY, PolicyStatus, apply_policy, check_policy
from worker.settings import Settings

# A new policy reaches an existing queue within a moment; wait that long before reporting.
APPLY_WAIT_S = 15.0
POLL_S = 0.25


def register(subparsers: argparse._SubParsersAction) -> None:
    policy = subparsers.add_parser("policy", help="apply or check the worker queue's policy")
    commands = policy.add_subparsers(dest="policy_command", required=True)
    apply = commands.add_parser("apply", help="create or replace the policy, then wait until it is in force")
    apply.add_argument("--no-wait", action="store_true", help="do not wait for the policy to reach the queue")
    apply.set_defaults(handler=run_apply)
    check = commands.add_parser("check", help="exit 0 when the policy is in force on the worker queue, else 1")
    check.set_defaults(handler=run_check)


def run_apply(args: argparse.Namespace, settings: Settings) -> int:
    try:
        status = asyncio.run(_apply(settings, wait=not args.no_wait))
    except ManagementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"applied policy {WORKER_QUEUE_POLICY.name!r}: {status.describe()}")
    return 0 if status.in_force or status.pending or args.no_wait else 1


def run_check(args: argparse.Namespace, settings: Settings) -> int:
    try:
        status = asyncio.run(check_policy(settings))
    except ManagementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if status.in_force:
        print(status.describe())
        return 0
    print(f"not in force: {status.describe()}", file=sys.stderr)
    return 1


async def _apply(settings: Settings, *, wait: bool) -> PolicyStatus:
    await apply_policy(settings)
    status = await check_policy(settings)
    deadline = time.monotonic() + APPLY_WAIT_S
    while wait and status.queue_exists and not status.in_force and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        status = await check_policy(settings)
    return status
