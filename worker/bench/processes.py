"""`python -m worker run` child processes, configured through `WORKER_*` variables like any deployment."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from worker.settings import Settings
from worker.testkit.child_env import settings_env


class WorkerProcesses:
    """K worker processes sharing one queue, each logging to its own file."""

    def __init__(self, settings: Settings, count: int, log_dir: Path, label: str, extra_env: dict[str, str]) -> None:
        self.env = settings_env(settings, extra_env)
        self.count = count
        self.log_paths = [log_dir / f"{label}-worker{n}.log" for n in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for path in self.log_paths:
            with path.open("ab") as log:
                self.processes.append(
                    subprocess.Popen([sys.executable, "-m", "worker", "run"], env=self.env, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
                )

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def exited(self) -> list[tuple[int, int]]:
        """(index, exit code) of every worker that is no longer running."""
        return [(n, code) for n, p in enumerate(self.processes) if (code := p.poll()) is not None]

    def stop(self, timeout_s: float) -> list[int | None]:
        """SIGTERM (the worker drains and exits), SIGKILL after `timeout_s`; return the exit codes."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=timeout_s))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes.append(None)
        return codes

    def kill(self) -> None:
        """SIGKILL whatever still runs (clean-up after a failure)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def log_tail(self, lines: int = 20) -> str:
        parts = []
        for path in self.log_paths:
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)
