"""Progress on stderr: a redrawn bar on a terminal, a few plain lines otherwise (CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
PLAIN_EVERY_S = 10.0


class Progress:
    """`update(label, done, total)` as work advances; `note(text)` for a one-off line."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._label: str | None = None
        self._last_plain = 0.0
        self._last_draw = 0.0
        self._started = time.monotonic()
        self._open_line = False

    def update(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if label != self._label:
            self._end_line()
            self._label, self._started, self._last_plain = label, now, 0.0
        if self.tty:
            if finished or now - self._last_draw >= 0.1:
                self._draw(label, done, total, now)
                self._last_draw = now
            if finished:
                self._end_line()
        elif finished or now - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = now
            self._write(f"{label}: {done}/{total} ({now - self._started:.1f}s)\n")

    def note(self, text: str) -> None:
        self._end_line()
        self._write(text + "\n")

    def _draw(self, label: str, done: int, total: int, now: float) -> None:
        share = min(1.0, done / total) if total else 1.0
        filled = int(share * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self._write(f"\r{label:<24} [{bar}] {done}/{total} {now - self._started:6.1f}s")
        self._open_line = True

    def _end_line(self) -> None:
        if self._open_line:
            self._write("\n")
            self._open_line = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
