"""The worker's garbage-collector set-up."""

from __future__ import annotations

import gc

from worker.runtime.heap import freeze_heap


def test_freeze_heap_exempts_the_live_objects_from_later_collections() -> None:
    survivor = [object() for _ in range(1000)]
    try:
        frozen = freeze_heap()
        assert frozen == gc.get_freeze_count() >= len(survivor)
        assert not any(survivor is o for o in gc.get_objects())  # frozen objects are outside every generation
    finally:
        gc.unfreeze()
