"""When each event's `applied` line was logged: an upper bound of its commit time, from the workers' JSON logs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import orjson

APPLIED = "applied"


def applied_times(log_paths: Iterable[Path], prefix: str) -> dict[str, float]:
    """Epoch seconds of the `applied` log line of every event whose id starts with `prefix`.

    The worker logs an event's outcome after the commit and the ack, so this bounds the
    commit time from above, as `processed_at` (transaction start) bounds it from below.
    Empty when the workers log above INFO or not as JSON.
    """
    times: dict[str, float] = {}
    for path in log_paths:
        if not path.exists():
            continue
        with path.open("rb") as lines:
            for line in lines:
                # Cheap filter first: most lines are other events' or other prefixes'.
                if b'"outcome"' not in line or prefix.encode() not in line:
                    continue
                try:
                    record = orjson.loads(line)
                    if record.get("outcome") == APPLIED and str(record.get("event_id", "")).startswith(prefix):
                        times[record["event_id"]] = datetime.fromisoformat(record["timestamp"]).timestamp()
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
    return times
