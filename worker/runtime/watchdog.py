"""Gives up when the consumer stays gone: better a restart by the orchestrator than a silent pod."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


class ConsumerWatchdog:
    """`run()` returns once `healthy()` has been false for `limit_s` seconds in a row."""

    def __init__(self, healthy: Callable[[], bool], limit_s: float, interval_s: float = 1.0) -> None:
        self.healthy = healthy
        self.limit_s = limit_s
        self.interval_s = min(interval_s, limit_s / 4)

    async def run(self) -> None:
        unhealthy_since: float | None = None
        while True:
            await asyncio.sleep(self.interval_s)
            if self.healthy():
                if unhealthy_since is not None:
                    log.info("consumer_restored", after_s=round(time.monotonic() - unhealthy_since, 1))
                unhealthy_since = None
                continue
            now = time.monotonic()
            if unhealthy_since is None:
                unhealthy_since = now
                log.warning("consumer_lost", limit_s=self.limit_s)
            elif now - unhealthy_since >= self.limit_s:
                return
