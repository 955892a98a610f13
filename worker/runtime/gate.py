"""Tracks whether the database is usable; while it is not, processing waits instead of failing events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

Probe = Callable[[], Awaitable[None]]
Listener = Callable[[bool], Awaitable[None]]


class DependencyGate:
    """Open while the database answers; closed (with a probe loop running) during an outage."""

    def __init__(self, probe: Probe, interval_s: float) -> None:
        self._probe = probe
        self._interval_s = interval_s
        self._open = asyncio.Event()
        self._open.set()
        self._probe_task: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self.reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def on_change(self, listener: Listener) -> None:
        """Call `listener(is_open)` whenever the gate opens or closes."""
        self._listeners.append(listener)

    async def close(self, reason: str) -> None:
        """Report an outage; a probe loop reopens the gate when the database answers again."""
        if not self._open.is_set():
            return
        self._open.clear()
        self.reason = reason
        log.error("outage_started", dependency="database", reason=reason)
        self._probe_task = asyncio.create_task(self._probe_until_up(), name="database-probe")
        await self._notify(False)

    async def wait_open(self) -> None:
        await self._open.wait()

    async def stop(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            await asyncio.gather(self._probe_task, return_exceptions=True)

    async def _probe_until_up(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._probe()
            except Exception as exc:  # noqa: BLE001 - still down, whatever the error
                log.debug("outage_probe_failed", error=type(exc).__name__)
                continue
            break
        log.warning("outage_ended", dependency="database")
        self.reason = None
        self._open.set()
        await self._notify(True)

    async def _notify(self, is_open: bool) -> None:
        for listener in self._listeners:
            try:
                await listener(is_open)
            except Exception:  # noqa: BLE001
                log.exception("gate_listener_failed")
