"""Worker processes for tests that need real process boundaries (kill, two pods)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from worker.settings import Settings
from worker.testkit.child_env import settings_env as child_settings_env

REPO = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    """`WORKER_*` variables that reproduce `settings` in a child process, logging JSON (read by the tests)."""
    return child_settings_env(settings, {"WORKER_LOG_FORMAT": "json"})


class WorkerProcess:
    """`python -m worker run` in a child process, its log in a file.

    `command` and `cwd` run another installation of the worker (an installed wheel's `worker`).
    """

    def __init__(
        self, settings: Settings, log_path: Path, command: tuple[str, ...] | None = None, cwd: Path = REPO
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.command = command or (sys.executable, "-m", "worker")
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        # Restarts may share a log file: this process's lines start here.
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*self.command, "run"], cwd=self.cwd, env=settings_env(self.settings), stdout=log, stderr=log
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def started(self) -> bool:
        """The worker logged that it is consuming (its signal handlers are in place)."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return b'"worker_started"' in log.read()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM once the worker has started (a process still importing has no handler yet) and wait."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and not self.started() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def applied_count(self) -> int:
        return self.outcome_counts()["applied"]

    def outcome_counts(self) -> Counter[str]:
        """Settled events by outcome: each `batch_committed` line's counts plus the lines of events
        settled on their own (an event's own line at DEBUG repeats what its batch line counts)."""
        counts: Counter[str] = Counter()
        for record in self.log_records():
            if record.get("event") == "batch_committed":
                counts.update(record["outcomes"])
            elif record.get("outcome") and record.get("level") != "debug":
                counts[str(record["outcome"])] += 1
        return counts

    def log_records(self) -> list[dict]:
        """The JSON log lines, parsed (anything else, such as a traceback, is skipped)."""
        records = []
        for line in self.log_lines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records
