"""The worker's JSON log lines: one object per line, the shared chain's keys, exceptions rendered."""

from __future__ import annotations

import logging
import re

import orjson
import pytest
import structlog

from tests.support.config import make_settings
from worker.logs import configure_logging

RFC3339_UTC_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def json_lines(capsysbinary: pytest.CaptureFixture[bytes]):
    """structlog configured as the worker configures it (JSON, to stderr); the lines it wrote, parsed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(make_settings("postgresql+asyncpg://u@h/d", "amqp://h/", log_format="json", log_level="INFO"))
    yield lambda: [orjson.loads(line) for line in capsysbinary.readouterr().err.splitlines()]
    structlog.reset_defaults()
    root.handlers[:], root.level = handlers, level


def test_a_line_has_its_fields_then_event_level_logger_and_a_utc_timestamp(json_lines) -> None:
    structlog.get_logger("worker.broker.consumer").info("event", outcome="applied", attempts=1)
    [line] = json_lines()
    assert list(line) == ["outcome", "attempts", "event", "level", "logger", "timestamp"]
    assert line["event"] == "event" and line["level"] == "info" and line["logger"] == "worker.broker.consumer"
    assert RFC3339_UTC_MICROS.match(line["timestamp"]), line["timestamp"]


def test_warn_and_exception_are_logged_under_their_standard_level_names(json_lines) -> None:
    log = structlog.get_logger("worker.test")
    log.warn("careful")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    warned, failed = json_lines()
    assert warned["level"] == "warning"
    assert failed["level"] == "error"
    assert "ValueError: boom" in failed["exception"] and "exc_info" not in failed


def test_lines_below_the_level_are_not_written(json_lines) -> None:
    structlog.get_logger("worker.test").debug("noise")
    assert json_lines() == []


def test_a_committed_batch_renders_as_one_json_line(json_lines) -> None:
    from tests.unit.test_consumer_logs import _committed
    from worker.broker.settled import Settled
    from worker.broker.telemetry import ConsumerTelemetry
    from worker.observability.metrics import Metrics

    settlements = _committed(Settled.APPLIED, Settled.DUPLICATE, Settled.ACK_DROPPED)
    ConsumerTelemetry(Metrics()).record(settlements)
    lines = {line["event"]: line for line in json_lines()}
    assert lines["batch_committed"]["outcomes"] == {"applied": 1, "duplicate": 1}
    assert lines["batch_committed"]["applied_ids"] == [settlements[0].event.id]
    assert lines["event"]["outcome"] == "ack_dropped"
