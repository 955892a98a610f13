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
from worker.broker.settled import Settled, Settlement
from worker.broker.telemetry import ConsumerTelemetry
from worker.contract.decoding import Limits, decode_event
from worker.observability.metrics import Metrics
from worker.service.event_types import EVENT_TYPES

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _committed(*outcomes: Settled) -> list[Settlement]:
    user = uuid.uuid4()
    rows = []
    settled_at = time.perf_counter()
    for tag, outcome in enumerate(outcomes, start=1):
        event = message_created(user) if tag % 2 else usage_recorded(user)
        delivery = SimpleNamespace(delivery_tag=tag, received=settled_at - 0.01, headers={}, redelivered=False)
        decoded = decode_event(body(event), None, NOW, Limits(), EVENT_TYPES)
        rows.append(Settlement(delivery, decoded, outcome, 1, settled_at, by_commit=True))  # type: ignore[arg-type]
    return rows


async def _logged(settlements: list[Settlement], level: int) -> list[dict[str, Any]]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    try:
        telemetry = ConsumerTelemetry(Metrics())
        with capture_logs() as lines:
            telemetry.record(settlements)
    finally:
        structlog.reset_defaults()
    return lines


async def test_a_committed_batch_is_one_line_with_its_outcomes_and_ids() -> None:
    committed = _committed(Settled.APPLIED, Settled.DUPLICATE, Settled.APPLIED)
    [line] = await _logged(committed, level=logging.INFO)
    ids = [s.event.id for s in committed]
    assert line["event"] == "batch_committed" and line["log_level"] == "info"
    assert line["events"] == 3 and line["outcomes"] == {"applied": 2, "duplicate": 1}
    assert line["applied_ids"] == [ids[0], ids[2]] and line["duplicate_ids"] == [ids[1]]
    assert line["duration_ms"] >= 0


async def test_an_event_whose_ack_was_dropped_keeps_its_own_warning() -> None:
    committed = _committed(Settled.APPLIED, Settled.ACK_DROPPED)
    lines = await _logged(committed, level=logging.INFO)
    by_event = {line["event"]: line for line in lines}
    assert set(by_event) == {"batch_committed", "event"}
    assert by_event["batch_committed"]["outcomes"] == {"applied": 1}
    assert by_event["event"]["outcome"] == "ack_dropped" and by_event["event"]["log_level"] == "warning"
    assert by_event["event"]["event_id"] == committed[1].event.id


async def test_at_debug_each_event_also_has_its_own_line() -> None:
    committed = _committed(Settled.APPLIED, Settled.DUPLICATE)
    lines = await _logged(committed, level=logging.DEBUG)
    own = [line for line in lines if line["event"] == "event"]
    assert [(line["event_id"], line["outcome"], line["log_level"]) for line in own] == [
        (committed[0].event.id, "applied", "debug"), (committed[1].event.id, "duplicate", "debug")
    ]
    assert [line["event"] for line in lines].count("batch_committed") == 1
