"""What the ledger checker found: figures, every discrepancy by kind, and a verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SAMPLE = 10
"""Discrepancies listed by name per kind; the count is always complete."""

# Each kind of discrepancy (a list of descriptions in the report) and how a problem line names it.
_KINDS = {
    "lost": "confirmed event(s) lost",
    "stranded": "event(s) never processed, left in a queue",
    "double_applied": "event(s) applied more than once",
    "wrong_dead_letters": "wrong dead letter(s)",
    "counter_drift": "counter(s) off the events applied",
    "row_sum_drift": "counter(s) off their rows",
    "unexpected": "finding(s) in the database that no event sent accounts for",
}


@dataclass
class LedgerReport:
    """`ok` when nothing was lost, doubled, miscounted or left behind."""

    name: str
    faults_injected: list[str] = field(default_factory=list)
    published: int = 0
    confirmed_copies: int = 0
    confirmed: int = 0
    applied: int = 0
    applied_unconfirmed: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    wrong_dead_letters: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    stranded: list[str] = field(default_factory=list)
    double_applied: list[str] = field(default_factory=list)
    double_counted_tokens: int = 0
    missing_tokens: int = 0
    counter_drift: list[str] = field(default_factory=list)
    row_sum_drift: list[str] = field(default_factory=list)
    """Counters that differ from the sum of their rows (what `worker verify` reports)."""
    unexpected: list[str] = field(default_factory=list)
    """Rows no sent event accounts for (checked only when the ledger owns the whole database)."""
    left_in_queues: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (any(getattr(self, name) for name in _KINDS) or self.double_counted_tokens
                    or self.missing_tokens or any(self.left_in_queues.values()))

    @property
    def verify(self) -> str:
        """`worker verify`'s verdict on the database: ok or FAILED."""
        return "FAILED" if self.row_sum_drift else "ok"

    def problems(self) -> list[str]:
        """One line per kind of discrepancy, with a sample of ids; empty when `ok`."""
        lines = []
        for name, label in _KINDS.items():
            found = getattr(self, name)
            if found:
                lines.append(f"{len(found)} {label}, e.g. {'; '.join(found[:SAMPLE])}")
        if self.double_counted_tokens or self.missing_tokens:
            lines.append(f"tokens double-counted {self.double_counted_tokens}, missing {self.missing_tokens}")
        lines += [f"queue {queue} still holds {depth} message(s)" for queue, depth in self.left_in_queues.items() if depth]
        return lines

    def summary(self) -> str:
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.dead_lettered.items())) or "none"
        return (
            f"[{self.name}] faults={len(self.faults_injected)} published={self.published} "
            f"confirmed={self.confirmed_copies} copies/{self.confirmed} events applied={self.applied} "
            f"lost={len(self.lost)} stranded={len(self.stranded)} "
            f"double-applied={len(self.double_applied)} double-counted-tokens={self.double_counted_tokens} "
            f"missing-tokens={self.missing_tokens} dead-lettered: {reasons} "
            f"wrong-dead-letters={len(self.wrong_dead_letters)} left-in-queues={sum(self.left_in_queues.values())} "
            f"unexpected={len(self.unexpected)} verify={self.verify} ({self.seconds:.1f}s)"
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _KINDS:
            data[name] = data[name][:20]  # a sample is enough to investigate
        data["ok"] = self.ok
        data["verify"] = self.verify
        return data
