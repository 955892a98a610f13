"""What one `worker bench` invocation was asked to do."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

WORKLOADS = ("uniform", "hot")
BUDGET_PERIODS = ("none", "day", "month")


@dataclass(frozen=True)
class BenchOptions:
    """Parsed command-line options of the bench."""

    events: int = 100_000
    users: int = 1000
    conversations_per_user: int = 5
    content_bytes: int = 512
    content_spread: float = 0.5
    """A content's length is uniform within ± this fraction of `content_bytes` (0: every one exactly)."""
    message_share: float = 0.7
    """Share of `message.created` events; the rest are `usage.recorded` (no content)."""
    workers: int = 1
    batch_sizes: tuple[int, ...] = (1, 16, 64, 256)
    workloads: tuple[str, ...] = WORKLOADS
    prefetch: int = 64
    half_load: bool = True
    half_load_seconds: float = 20.0
    load_fraction: float = 0.5
    """The latency phase publishes at this fraction of the drain rate (the targets are judged at 0.5)."""
    raw_baseline: bool = True
    publish_window: int = 1000
    stall_timeout_s: float = 120.0
    budget_period: str = "month"
    """The users' budget period (`none`, `day`, `month`); they get a cost limit and the bench's models a
    price, so every event is priced and counted in its period, as with budgets in use."""
    seed: int = 1
    keep: bool = False
    json_path: Path | None = None
    plot_path: Path | None = None
    log_dir: Path | None = None

    def prefetch_for(self, batch_size: int) -> int:
        """The worker's prefetch for a batch size: never smaller than one batch, or batches could never fill."""
        return max(self.prefetch, batch_size)

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["json_path"] = str(self.json_path) if self.json_path else None
        values["plot_path"] = str(self.plot_path) if self.plot_path else None
        values["log_dir"] = str(self.log_dir) if self.log_dir else None
        values["batch_sizes"] = list(self.batch_sizes)
        values["workloads"] = list(self.workloads)
        return values
