"""The bench reads when each event was logged as applied from the workers' JSON log lines."""

from __future__ import annotations

from pathlib import Path

import orjson

from worker.bench.worker_log import applied_times


def _line(**fields: object) -> bytes:
    return orjson.dumps(fields) + b"\n"


def test_applied_times_come_from_batch_lines_and_from_lines_of_single_events(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    log.write_bytes(
        _line(event="batch_committed", outcomes={"applied": 2, "duplicate": 1}, applied_ids=["run-1", "other-9"],
              duplicate_ids=["run-2"], timestamp="2026-12-01T10:00:01.500000Z")
        + _line(event="event", outcome="applied", event_id="run-3", timestamp="2026-12-01T10:00:02.000000Z")
        + _line(event="event", outcome="dead_lettered", event_id="run-4", timestamp="2026-12-01T10:00:03.000000Z")
        + b"Traceback (most recent call last): run-5\n"
    )
    times = applied_times([log, tmp_path / "missing.log"], "run-")
    assert times == {"run-1": 1796119201.5, "run-3": 1796119202.0}
