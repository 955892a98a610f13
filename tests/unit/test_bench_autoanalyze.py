"""The bench's stand-in for auto-analyze follows autovacuum's rule, with a scale factor of one."""

from __future__ import annotations

from worker.bench.autoanalyze import ANALYZE_PAGE_THRESHOLD, ANALYZE_SCALE_FACTOR, ANALYZE_THRESHOLD, due


def test_a_never_analyzed_table_is_due_past_the_base_threshold() -> None:
    assert not due(ANALYZE_THRESHOLD, -1)
    assert due(ANALYZE_THRESHOLD + 1, -1)


def test_a_large_table_is_due_only_past_its_share_of_changes() -> None:
    rows = 100_000
    limit = ANALYZE_THRESHOLD + ANALYZE_SCALE_FACTOR * rows
    assert not due(int(limit), rows)
    assert due(int(limit) + 1, rows)


def test_a_table_is_due_once_its_pages_grew_past_their_share_whatever_the_change_counts_say() -> None:
    # The counts lag (a backend reports them at most once a second); the size on disk does not.
    analyzed = 40
    limit = analyzed + ANALYZE_PAGE_THRESHOLD + ANALYZE_SCALE_FACTOR * analyzed
    assert not due(0, 1_000, pages=int(limit), analyzed_pages=analyzed)
    assert due(0, 1_000, pages=int(limit) + 1, analyzed_pages=analyzed)


def test_an_emptied_table_is_due_after_a_few_pages() -> None:
    assert not due(0, 0, pages=ANALYZE_PAGE_THRESHOLD, analyzed_pages=0)
    assert due(0, 0, pages=ANALYZE_PAGE_THRESHOLD + 1, analyzed_pages=0)
