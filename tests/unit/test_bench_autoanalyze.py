"""The bench's stand-in for auto-analyze follows autovacuum's rule, with a scale factor of one."""

from __future__ import annotations

from worker.bench.autoanalyze import ANALYZE_SCALE_FACTOR, ANALYZE_THRESHOLD, due


def test_a_never_analyzed_table_is_due_past_the_base_threshold() -> None:
    assert not due(ANALYZE_THRESHOLD, -1)
    assert due(ANALYZE_THRESHOLD + 1, -1)


def test_a_large_table_is_due_only_past_its_share_of_changes() -> None:
    rows = 100_000
    limit = ANALYZE_THRESHOLD + ANALYZE_SCALE_FACTOR * rows
    assert not due(int(limit), rows)
    assert due(int(limit) + 1, rows)

