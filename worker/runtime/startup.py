"""Start-up against dependencies that may not be there yet: wait for them with backoff, or refuse clearly.

A pod often starts before PostgreSQL or RabbitMQ answer (a rollout of the whole stack, a
failover). The worker then serves /livez (alive) and /readyz (not ready), writes one line
per attempt, and starts consuming once both answer. What waiting cannot fix (a missing
queue policy, invalid settings) ends the process with one line and an exit code of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Process exit codes of `worker run` (docs/RUNBOOK.md).
EXIT_OK = 0
EXIT_CONSUMER_NOT_RESTORED = 1
EXIT_CONFIG = 78  # sysexits EX_CONFIG: the settings or the broker's configuration are wrong

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 10.0


async def until_reachable(
    dependency: str,
    attempt: Callable[[], Awaitable[T]],
    unreachable: Callable[[BaseException], str | None],
    *,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> T:
    """Run `attempt` until it succeeds; `unreachable(error)` names an error worth waiting out (else it is raised)."""
    delay, attempts = first_delay_s, 0
    while True:
        attempts += 1
        try:
            result = await attempt()
        except Exception as exc:  # noqa: BLE001 - sorted by `unreachable`
            why = unreachable(exc)
            if why is None:
                raise
            log.warning("dependency_unreachable", dependency=dependency, attempt=attempts, error=why,
                        retry_in_s=round(delay, 1))
            await asyncio.sleep(delay)
            delay = min(max_delay_s, delay * 2)
            continue
        if attempts > 1:
            log.info("dependency_reachable", dependency=dependency, attempts=attempts)
        return result
