"""Resident memory of processes from /proc/<pid>/status (Linux), sampled in the background."""

from __future__ import annotations

import asyncio
from pathlib import Path

KIB = 1024


def status_kib(pid: int, field: str) -> int | None:
    """A `Vm*` field of /proc/<pid>/status in KiB, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


class PeakRss:
    """Largest resident set seen per process: the kernel's VmHWM, and our own VmRSS samples as a fallback."""

    def __init__(self, pids: list[int], interval_s: float = 0.25) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self.peak_kib = {pid: 0 for pid in pids}
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        for pid in self.pids:
            for field in ("VmHWM", "VmRSS"):
                value = status_kib(pid, field)
                if value is not None:
                    self.peak_kib[pid] = max(self.peak_kib[pid], value)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[float]:
        """Stop sampling; return each process's peak in MiB (in the order of `pids`)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sample()
        return [round(self.peak_kib[pid] / KIB, 1) for pid in self.pids]
