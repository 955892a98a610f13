"""When each event was logged as applied: an upper bound of its commit time, from the workers' JSON logs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import orjson

APPLIED = "applied"
BATCH = "batch_committed"
BATCH_IDS = b'"applied_ids"'


def applied_times(log_paths: Iterable[Path], prefix: str) -> dict[str, float]:
    """Epoch seconds of the line that logged each event whose id starts with `prefix` as applied.

    The worker logs a committed batch (`batch_committed`, with its `applied_ids`) after the
    commit and the ack, and an event settled on its own in a line of its own, so this bounds
    the commit time from above, as `processed_at` (transaction start) bounds it from below.
    Empty when the workers log above INFO or not as JSON.
    """
    times: dict[str, float] = {}
    marker = prefix.encode()
    for path in log_paths:
        if not path.exists():
            continue
        with path.open("rb") as lines:
            for line in lines:
                # Cheap filter first: most lines are other events' or other prefixes'.
                if marker not in line or (BATCH_IDS not in line and b'"outcome"' not in line):
                    continue
                try:
                    record = orjson.loads(line)
                    at = datetime.fromisoformat(record["timestamp"]).timestamp()
                    if record.get("event") == BATCH:
                        ids = record.get("applied_ids") or []
                    elif record.get("outcome") == APPLIED:
                        ids = [record.get("event_id", "")]
                    else:
                        continue
                    times.update((str(i), at) for i in ids if str(i).startswith(prefix))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
    return times
