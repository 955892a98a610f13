"""The worker queue's policy in the bench's vhost, so the queue runs as in production."""

from __future__ import annotations

import asyncio
import time

from worker.broker.management import ManagementError
from worker.broker.policy import apply_policy, check_policy
from worker.settings import Settings

WAIT_S = 15.0
POLL_S = 0.25


async def apply_and_wait(settings: Settings) -> str | None:
    """Apply the policy and wait until it is in force; None when it is, else why not."""
    try:
        await apply_policy(settings)
        deadline = time.monotonic() + WAIT_S
        while True:
            status = await check_policy(settings)
            if status.in_force:
                return None
            if time.monotonic() > deadline:
                return status.describe()
            await asyncio.sleep(POLL_S)
    except ManagementError as exc:
        return str(exc)
