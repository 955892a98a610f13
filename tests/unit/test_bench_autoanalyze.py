"""The bench's stand-in for auto-analyze follows autovacuum's default rule and pace."""

from __future__ import annotations

from worker.bench import autoanalyze
from worker.bench.autoanalyze import ANALYZE_SCALE_FACTOR, ANALYZE_THRESHOLD, AutoAnalyze, due


def test_a_never_analyzed_table_is_due_past_the_base_threshold() -> None:
    assert not due(ANALYZE_THRESHOLD, -1)
    assert due(ANALYZE_THRESHOLD + 1, -1)


def test_a_large_table_is_due_only_past_its_share_of_changes() -> None:
    rows = 100_000
    limit = ANALYZE_THRESHOLD + ANALYZE_SCALE_FACTOR * rows
    assert not due(int(limit), rows)
    assert due(int(limit) + 1, rows)


def test_a_table_is_analyzed_at_most_once_per_naptime_until_the_tables_are_emptied(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(autoanalyze.time, "monotonic", lambda: clock[0])
    stand_in = AutoAnalyze("postgresql://unused", interval_s=1.0)
    stand_in.naptime_s = 60.0
    assert stand_in._rested("messages")
    stand_in._last["messages"] = clock[0]
    clock[0] += 59.0
    assert not stand_in._rested("messages")
    assert stand_in._rested("usage_records")
    clock[0] += 1.0
    assert stand_in._rested("messages")
    stand_in._last["messages"] = clock[0]
    stand_in.forget()
    assert stand_in._rested("messages")
