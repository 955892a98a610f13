"""A fault test's worker processes, and what their logs say."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from tests.support.processes import WorkerProcess
from worker.settings import Settings


class WorkerFleet:
    """Worker subprocesses of one test; whatever still runs at the end is killed by the fixture."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.all: list[WorkerProcess] = []

    def spawn(self, settings: Settings, name: str | None = None) -> WorkerProcess:
        name = name or f"worker{len(self.all)}"
        worker = WorkerProcess(settings, self.log_dir / f"{name}.log").start()
        self.all.append(worker)
        return worker

    @property
    def running(self) -> list[WorkerProcess]:
        return [w for w in self.all if w.process is not None and w.process.poll() is None]

    async def terminate_all(self, timeout: float = 60) -> list[int]:
        """SIGTERM every running worker at once and wait for all; their exit codes."""
        return list(await asyncio.gather(*(asyncio.to_thread(w.terminate, timeout) for w in self.running)))

    def kill_all(self) -> None:
        for worker in self.running:
            worker.kill()


def outcomes(workers: list[WorkerProcess]) -> Counter[str]:
    """How often each settlement outcome was logged across `workers`."""
    return sum((w.outcome_counts() for w in workers), Counter())


def logged(workers: list[WorkerProcess], event: str) -> int:
    """How many log lines named `event` the workers wrote."""
    return sum(1 for w in workers for r in w.log_records() if r.get("event") == event)


def log_excerpt(workers: list[WorkerProcess], lines: int = 25) -> str:
    return "\n".join(f"--- {w.log_path.name}\n" + "\n".join(w.log_lines()[-lines:]) for w in workers)
