"""Throughput and p99 latency against batch size, one colour per workload (needs the `bench` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.bench.latency import p99_of

ORDER = ["uniform", "hot"]
HALF_LOAD_P99_TARGET_MS = 50


class PlotUnavailable(Exception):
    """matplotlib is not installed: `pip install 'llm-persistence-worker[bench]'`."""


def plot(result: dict[str, Any], path: Path) -> None:
    """Left: worker and raw broker events/s (log scale); right: p99 publish-to-commit, and the broker alone at
    the same load where measured. Failed runs are listed, not drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never a window
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter
    except ImportError as exc:
        raise PlotUnavailable("--plot needs matplotlib: install the `bench` extra") from exc

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.4))
    runs = result["runs"]
    failed = [f"{r['workload']} B={r['batch_size']}" for r in runs if not r["counters_ok"]]
    good = [r for r in runs if r["counters_ok"]]
    workloads = sorted({r["workload"] for r in runs}, key=lambda w: ORDER.index(w) if w in ORDER else len(ORDER))
    for colour, workload in zip(("tab:blue", "tab:orange", "tab:green"), workloads, strict=False):
        mine = sorted((r for r in good if r["workload"] == workload), key=lambda r: r["batch_size"])
        sizes = [r["batch_size"] for r in mine]
        throughput.plot(sizes, [r["events_per_s"] for r in mine], marker="o", color=colour, label=f"worker, {workload}")
        throughput.plot(sizes, [r["raw_events_per_s"] for r in mine], marker=".", linestyle=":", color=colour,
                        label=f"raw broker, {workload}")
        latency.plot(sizes, [_p99(r) for r in mine], marker="o", color=colour, label=f"{workload}, {_load_label(mine)}")
        alone = [(r["batch_size"], p99) for r in mine if (p99 := p99_of(r, "raw_half_load")) is not None]
        if alone:
            latency.plot(*zip(*alone, strict=True), marker=".", linestyle=":", color=colour,
                         label=f"broker alone, same load, {workload}")
    latency.axhline(HALF_LOAD_P99_TARGET_MS, color="grey", linestyle="--", linewidth=1, label="target at half load")
    sizes = sorted({r["batch_size"] for r in runs})
    for axis, title, unit in ((throughput, "Throughput (backlog drain)", "events/s (log)"),
                              (latency, "p99 publish-to-commit", "ms (log)")):
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_locator(FixedLocator(sizes))
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_locator(NullLocator())
        axis.set_xlabel("batch size (WORKER_BATCH_SIZE)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    # Log scales: the worker is far below the raw rate, and p99 spans milliseconds to seconds.
    throughput.set_yscale("log")
    latency.set_yscale("log")
    options, machine = result["options"], result["machine"]
    figure.suptitle(f"worker bench: {options['events']} events per run, {options['workers']} worker(s), "
                    f"{machine['cpus']} CPUs ({machine.get('cpu_model') or 'unknown CPU'})", fontsize=10)
    if failed:
        figure.text(0.01, 0.01, "not drawn (run failed or counters wrong): " + ", ".join(failed), fontsize=7,
                    color="tab:red")
    figure.tight_layout(rect=(0, 0.04 if failed else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _p99(run: dict[str, Any]) -> float | None:
    return p99_of(run, "half_load" if run["latency_ms"]["half_load"] else "full_load")


def _load_label(runs: list[dict[str, Any]]) -> str:
    return "half load" if any(r["latency_ms"]["half_load"] for r in runs) else "full load (backlog)"
