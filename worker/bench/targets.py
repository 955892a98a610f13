"""The performance targets, judged on a result. Informative only: the bench never fails on speed."""

from __future__ import annotations

from typing import Any

from worker.bench.latency import p99_of

RAW_RATIO = 0.75
HOT_RATIO = 0.9
HALF_LOAD_P99_MS = 50.0
PEAK_RSS_MB = 200.0


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per target and batch size: the figure, the bound, met or not (None: not measured)."""
    verdicts = []
    runs = result["runs"]
    by_key = {(run["workload"], run["batch_size"]): run for run in runs}
    for run in runs:
        where = f"{run['workload']} B={run['batch_size']}"
        verdicts.append(_verdict("end-to-end / raw", where, run["ratio_to_raw"], ">=", RAW_RATIO))
        half = run["latency_ms"]["half_load"] if run.get("load_fraction", 0.5) == 0.5 else None
        floor = p99_of(run, "raw_half_load") if half else None
        verdicts.append(_verdict("p99 at half load (ms)", where, half["p99"] if half else None, "<=", HALF_LOAD_P99_MS,
                                 note=None if floor is None else f"the broker alone at this load: {floor:.1f}"))
        verdicts.append(_verdict("peak RSS (MB)", where, run["peak_rss_mb_max"], "<=", PEAK_RSS_MB))
    for (workload, batch_size), run in by_key.items():
        uniform = by_key.get(("uniform", batch_size))
        if workload == "hot" and uniform and uniform["events_per_s"] and run["events_per_s"]:
            ratio = run["events_per_s"] / uniform["events_per_s"]
            verdicts.append(_verdict("hot / uniform", f"B={batch_size}", round(ratio, 3), ">=", HOT_RATIO))
    return verdicts


def _verdict(target: str, where: str, value: float | None, op: str, bound: float, note: str | None = None) -> dict[str, Any]:
    met = None if value is None else (value >= bound if op == ">=" else value <= bound)
    verdict = {"target": target, "run": where, "value": value, "bound": f"{op} {bound}", "met": met}
    if note:
        verdict["note"] = note
    return verdict
