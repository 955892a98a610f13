"""Throughput and p99 latency against batch size, one line per workload (needs the `bench` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class PlotUnavailable(Exception):
    """matplotlib is not installed: `pip install 'llm-persistence-worker[bench]'`."""


def plot(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never a window
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("--plot needs matplotlib: install the `bench` extra") from exc

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    workloads = sorted({run["workload"] for run in result["runs"]}, key=["uniform", "hot"].index)
    for workload in workloads:
        runs = sorted((r for r in result["runs"] if r["workload"] == workload), key=lambda r: r["batch_size"])
        sizes = [r["batch_size"] for r in runs]
        throughput.plot(sizes, [r["events_per_s"] for r in runs], marker="o", label=f"worker, {workload}")
        p99 = [_p99(r) for r in runs]
        latency.plot(sizes, p99, marker="o", label=f"{workload} ({_load_label(runs)})")
    for raw in result.get("raw", []):
        throughput.axhline(raw["events_per_s"], linestyle=":", linewidth=1,
                           label=f"raw broker, {raw['workload']} (prefetch {raw['prefetch']})")
    latency.axhline(50, color="grey", linestyle="--", linewidth=1, label="target p99 at half load")
    for axis, title, unit in ((throughput, "Throughput (backlog drain)", "events/s"),
                              (latency, "p99 publish-to-commit", "ms")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("batch size (WORKER_BATCH_SIZE)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    throughput.set_ylim(bottom=0)
    latency.set_ylim(bottom=0)
    events = result["options"]["events"]
    workers = result["options"]["workers"]
    figure.suptitle(f"worker bench: {events} events, {workers} worker(s), {result['machine']['cpus']} CPUs", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _p99(run: dict[str, Any]) -> float | None:
    latency = run["latency_ms"]["half_load"] or run["latency_ms"]["full_load"]
    return latency["p99"] if latency else None


def _load_label(runs: list[dict[str, Any]]) -> str:
    return "half load" if any(r["latency_ms"]["half_load"] for r in runs) else "full load (backlog)"
