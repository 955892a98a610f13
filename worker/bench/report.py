"""The human-readable table and the machine-readable JSON of a bench result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.bench.latency import p99_of

COLUMNS = (
    ("workload", 8), ("B", 4), ("K", 2), ("events/s", 9), ("raw/s", 8), ("ratio", 6),
    ("full p50", 9), ("full p95", 9), ("full p99", 9), ("half p50", 9), ("half p95", 9), ("half p99", 9),
    ("p99 hi", 7), ("conf p99", 8), ("raw p99", 8), ("RSS MB", 7), ("wkr µs", 7), ("pg µs", 6), ("counters", 8),
)


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _row(run: dict[str, Any]) -> list[str]:
    full = run["latency_ms"]["full_load"] or {}
    half = run["latency_ms"]["half_load"] or {}
    return [
        run["workload"], str(run["batch_size"]), str(run["workers"]), _fmt(run["events_per_s"]),
        _fmt(run["raw_events_per_s"]), _fmt(run["ratio_to_raw"], 2),
        *(_fmt(full.get(q), 1) for q in ("p50", "p95", "p99")),
        *(_fmt(half.get(q), 1) for q in ("p50", "p95", "p99")),
        *(_fmt(p99_of(run, phase), 1) for phase in ("half_load_logged", "half_load_confirm", "raw_half_load")),
        _fmt(run["peak_rss_mb_max"]),
        *(_fmt(((run.get("cpu_us_per_event") or {}).get("drain") or {}).get(group)) for group in ("workers", "postgresql")),
        "OK" if run["counters_ok"] else "WRONG",
    ]


def render_table(result: dict[str, Any]) -> str:
    """Fixed-width table, one line per run; latencies in milliseconds.

    `half pNN` use `processed_at` (transaction start: a lower bound of the commit); `p99 hi`
    uses the worker's `applied` log line (after commit and ack: an upper bound). `conf p99`: the
    broker's publish-to-confirm p99 in the same phase, the floor under both. `raw p99`: the bare
    consumer's publish-to-delivery p99 at the same rate with no worker running, the floor the
    broker and the load generator alone give on this machine. `wkr µs` and
    `pg µs`: CPU microseconds per event of the workers (all K) and of PostgreSQL while draining.
    """
    header = " ".join(name.rjust(width) for name, width in COLUMNS)
    lines = [header, "-" * len(header)]
    for run in result["runs"]:
        lines.append(" ".join(cell.rjust(width) for cell, (_, width) in zip(_row(run), COLUMNS, strict=True)))
    fractions = sorted({run.get("load_fraction", 0.5) for run in result["runs"]} - {0.5})
    if fractions:
        lines.append(f"(`half` columns: the latency phase ran at {', '.join(map(str, fractions))} x the run's rate)")
    return "\n".join(lines)


def render_markdown(result: dict[str, Any]) -> str:
    """The same table as Markdown, for docs/BENCHMARKS.md."""
    names = [name for name, _ in COLUMNS]
    lines = ["| " + " | ".join(names) + " |", "|" + "---:|" * len(names)]
    lines += ["| " + " | ".join(_row(run)) + " |" for run in result["runs"]]
    return "\n".join(lines)


def render_targets(verdicts: list[dict[str, Any]]) -> str:
    marks = {True: "met", False: "NOT met", None: "not measured"}
    return "\n".join(f"  {v['target']:<22} {v['run']:<14} {_fmt(v['value'], 2):>8} {v['bound']:<8} {marks[v['met']]}"
                     + (f" ({v['note']})" if v.get("note") else "") for v in verdicts)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
