"""CPU time of the processes a run involves, from /proc (Linux), sampled in the background.

On a shared two-core machine wall-clock rates swing by ±15 % from one run to the next;
CPU time per event moves far less, so it is the figure to compare optimisations by, and
the split between worker, PostgreSQL, RabbitMQ and the bench itself shows where the time
goes. Processes of other users are read the same way (as root, or when /proc allows).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# Server processes by their command name (`/proc/<pid>/comm`).
SERVERS = {"postgres": "postgresql", "beam.smp": "rabbitmq"}


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of one process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return None
    # After the command name: state is field 3 of stat(5), utime and stime are 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def _server_pids() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {name: [] for name in SERVERS.values()}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                comm = Path(entry.path, "comm").read_text().strip()
            except OSError:
                continue
            if comm in SERVERS:
                found[SERVERS[comm]].append(int(entry.name))
    return found


class CpuSampler:
    """CPU seconds used so far by the workers, the bench, PostgreSQL and RabbitMQ, every `interval_s`."""

    def __init__(self, worker_pids: list[int], interval_s: float = 0.25) -> None:
        self.groups = {"workers": worker_pids, "bench": [os.getpid()]}
        self.interval_s = interval_s
        self.times: list[float] = []
        self.totals: list[dict[str, float]] = []
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        groups = {**self.groups, **_server_pids()}
        self.totals.append({name: sum(cpu_seconds(pid) or 0.0 for pid in pids) for name, pids in groups.items()})
        self.times.append(time.time())

    def cores_between(self, start: float, end: float) -> dict[str, float] | None:
        """Average cores each group used from the last sample at or before `start` to the first at or after `end`."""
        first = bisect.bisect_right(self.times, start) - 1
        last = bisect.bisect_left(self.times, end)
        if first < 0 or last >= len(self.times) or self.times[last] <= self.times[first]:
            return None
        span = self.times[last] - self.times[first]
        before, after = self.totals[first], self.totals[last]
        return {name: round(max(0.0, after[name] - before.get(name, 0.0)) / span, 3) for name in after}

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self.sample()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.sample()


def per_event_us(cores: dict[str, float] | None, events_per_s: float | None) -> dict[str, float] | None:
    """CPU microseconds per event of each group, from the cores it used at a known event rate."""
    if not cores or not events_per_s:
        return None
    return {name: round(value * 1e6 / events_per_s, 1) for name, value in cores.items()}
