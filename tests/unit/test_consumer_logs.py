"""What the consumer logs for a committed batch: one line with its outcomes and ids; each event's own line at DEBUG."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import structlog
from structlog.testing import capture_logs

from tests.support.events import body, message_created, usage_recorded
from worker.broker.consumer import Batching, Consumer
from worker.contract.decoding import Limits, decode_event
from worker.observability.metrics import Metrics
from worker.service.applier import Applied
from worker.service.outcomes import Outcome

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class _Settler:
    """Acknowledges every delivery except those whose channel is said to be gone."""

    def __init__(self, dropped: set[int]) -> None:
        self.dropped = dropped

    async def ack_many(self, deliveries: list[Any]) -> set[int]:
        return {id(d) for d in deliveries if d.delivery_tag not in self.dropped}


def _consumer(dropped: set[int], level: int) -> Consumer:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    return Consumer(SimpleNamespace(), SimpleNamespace(name="q"), None, _Settler(dropped), None,  # type: ignore[arg-type]
                    Metrics(), Batching(size=8, wait_s=0.0, concurrency=1))


def _committed(*outcomes: Outcome) -> list[tuple[Any, Any, Applied]]:
    user = uuid.uuid4()
    rows = []
    for tag, outcome in enumerate(outcomes, start=1):
        event = message_created(user) if tag % 2 else usage_recorded(user)
        delivery = SimpleNamespace(delivery_tag=tag, received=time.perf_counter(), headers={}, redelivered=False)
        rows.append((delivery, decode_event(body(event), None, NOW, Limits()), Applied(outcome, 1)))
    return rows


async def _logged(committed: list, dropped: set[int], level: int) -> list[dict[str, Any]]:
    try:
        consumer = _consumer(dropped, level)
        with capture_logs() as lines:
            await consumer._ack_committed(committed)  # noqa: SLF001 - the step that settles a commit
    finally:
        structlog.reset_defaults()
    return lines


async def test_a_committed_batch_is_one_line_with_its_outcomes_and_ids() -> None:
    committed = _committed(Outcome.APPLIED, Outcome.DUPLICATE, Outcome.APPLIED)
    [line] = await _logged(committed, dropped=set(), level=logging.INFO)
    ids = [event.id for _, event, _ in committed]
    assert line["event"] == "batch_committed" and line["log_level"] == "info"
    assert line["events"] == 3 and line["outcomes"] == {"applied": 2, "duplicate": 1}
    assert line["applied_ids"] == [ids[0], ids[2]] and line["duplicate_ids"] == [ids[1]]
    assert line["duration_ms"] >= 0


async def test_an_event_whose_ack_was_dropped_keeps_its_own_warning() -> None:
    committed = _committed(Outcome.APPLIED, Outcome.APPLIED)
    lines = await _logged(committed, dropped={2}, level=logging.INFO)
    by_event = {line["event"]: line for line in lines}
    assert set(by_event) == {"batch_committed", "event"}
    assert by_event["batch_committed"]["outcomes"] == {"applied": 1}
    assert by_event["event"]["outcome"] == "ack_dropped" and by_event["event"]["log_level"] == "warning"
    assert by_event["event"]["event_id"] == committed[1][1].id


async def test_at_debug_each_event_also_has_its_own_line() -> None:
    committed = _committed(Outcome.APPLIED, Outcome.DUPLICATE)
    lines = await _logged(committed, dropped=set(), level=logging.DEBUG)
    own = [line for line in lines if line["event"] == "event"]
    assert [(line["event_id"], line["outcome"], line["log_level"]) for line in own] == [
        (committed[0][1].id, "applied", "debug"), (committed[1][1].id, "duplicate", "debug")
    ]
    assert [line["event"] for line in lines].count("batch_committed") == 1
