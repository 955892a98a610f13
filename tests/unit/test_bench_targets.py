"""The bench's target verdicts (informative figures; the bench never fails on them)."""

from __future__ import annotations

from typing import Any

from worker.bench.report import render_markdown, render_table, render_targets
from worker.bench.targets import evaluate


def _run(workload: str, events_per_s: float, p99: float, load_fraction: float = 0.5) -> dict[str, Any]:
    latency = {"count": 100, "p50": p99 / 2, "p95": p99, "p99": p99, "max": p99}
    return {
        "workload": workload, "batch_size": 128, "workers": 1, "events_per_s": events_per_s,
        "raw_events_per_s": 8000.0, "ratio_to_raw": events_per_s / 8000.0, "peak_rss_mb_max": 90.0,
        "latency_ms": {"full_load": latency, "half_load": latency, "half_load_logged": latency},
        "load_fraction": load_fraction, "counters_ok": True,
    }


def _verdicts(runs: list[dict[str, Any]]) -> dict[tuple[str, str], bool | None]:
    return {(v["target"], v["run"]): v["met"] for v in evaluate({"runs": runs})}


def test_each_target_is_judged_against_its_bound() -> None:
    verdicts = _verdicts([_run("uniform", 6400.0, 40.0), _run("hot", 5000.0, 60.0)])
    assert verdicts[("end-to-end / raw", "uniform B=128")] is True  # 0.80
    assert verdicts[("end-to-end / raw", "hot B=128")] is False  # 0.625
    assert verdicts[("p99 at half load (ms)", "uniform B=128")] is True
    assert verdicts[("p99 at half load (ms)", "hot B=128")] is False
    assert verdicts[("hot / uniform", "B=128")] is False  # 0.78
    assert verdicts[("peak RSS (MB)", "hot B=128")] is True


def test_latency_measured_at_another_load_is_not_judged_against_the_half_load_target() -> None:
    verdicts = _verdicts([_run("uniform", 6400.0, 10.0, load_fraction=0.25)])
    assert verdicts[("p99 at half load (ms)", "uniform B=128")] is None
    assert "0.25 x the run's rate" in render_table({"runs": [_run("uniform", 6400.0, 10.0, load_fraction=0.25)]})


def test_the_table_shows_cpu_per_event_when_it_was_measured() -> None:
    run = _run("uniform", 4000.0, 40.0)
    run["cpu_us_per_event"] = {"drain": {"workers": 205.4, "postgresql": 166.6, "rabbitmq": 18.0, "bench": 1.0}}
    row = render_table({"runs": [run]}).splitlines()[2].split()
    assert row[-3:] == ["205", "167", "OK"]


def test_the_half_load_verdict_and_the_table_name_the_broker_alone_at_the_same_load() -> None:
    run = _run("uniform", 6400.0, 120.0)
    run["latency_ms"]["raw_half_load"] = {"count": 100, "p50": 40.0, "p95": 90.0, "p99": 110.5, "max": 130.0}
    [verdict] = [v for v in evaluate({"runs": [run]}) if v["target"] == "p99 at half load (ms)"]
    assert verdict["met"] is False and verdict["note"] == "the broker alone at this load: 110.5"
    assert "(the broker alone at this load: 110.5)" in render_targets([verdict])
    header, _, row = (line.strip("|").split("|") for line in render_markdown({"runs": [run]}).splitlines())
    assert row[[name.strip() for name in header].index("raw p99")].strip() == "110.5"
