"""The one place that turns an outcome into ack, retry (delay queue) or dead-letter.

A delivery is acknowledged only after what it caused is durable: the commit for an
applied event, the confirmed publish for a retry or a dead-letter copy. A copy that
cannot be built or published, for whatever reason, leaves the delivery to the broker
(requeued after a pause); settlement itself never raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage

from worker.broker.acks import AckWindow
from worker.broker.delivery import Delivery
from worker.broker.headers import encodable_table
from worker.broker.publisher import ConfirmedPublisher, PublishFailed
from worker.broker.settled import Settled
from worker.contract.names import (
    DEAD_LETTER_QUEUE,
    HEADER_ATTEMPTS,
    HEADER_DEATH,
    HEADER_DELIVERY_COUNT,
    HEADER_DETAIL,
    HEADER_REASON,
    delay_queue_name,
)
from worker.contract.reasons import Reason
from worker.errors import RetryLater

log = structlog.get_logger(__name__)

HEADER_ORIGINAL_ROUTING_KEY = "x-original-routing-key"
# When the worker dead-lettered the event: the dead-letter queue's retention counts from here.
HEADER_DEAD_LETTERED_AT = "x-dead-lettered-at"
HEADER_RETRY_REASON = "x-retry-reason"
HEADER_RETRY_STEP = "x-retry-step"
# Delay-queue cycles made so far, whatever their reason: bounds retries when the reason keeps changing.
HEADER_RETRY_CYCLES = "x-retry-cycles"
# Headers describing the broker's or our own history of a copy; never carried over.
BROKER_HISTORY_HEADERS = (HEADER_DEATH, HEADER_DELIVERY_COUNT, "x-first-death-exchange",
                          "x-first-death-queue", "x-first-death-reason", "x-last-death-exchange",
                          "x-last-death-queue", "x-last-death-reason")
REQUEUE_PAUSE_S = 1.0
MAX_DETAIL_CHARS = 500
# Notes on headers made safe that fit in `x-error-detail` and a log line; the rest are counted.
MAX_NOTES = 8
SHORT_STRING_BYTES = 255
TEXT_PROPERTIES = ("content_type", "content_encoding", "correlation_id", "reply_to", "message_id", "type", "app_id")


def prior_attempts(message: Delivery | AbstractIncomingMessage) -> int:
    """Tries made before this delivery: earlier retry cycles plus broker redeliveries."""
    headers = message.headers or {}
    earlier_cycles = _as_int(headers.get(HEADER_ATTEMPTS))
    redeliveries = _as_int(headers.get(HEADER_DELIVERY_COUNT))
    if redeliveries == 0 and message.redelivered:
        redeliveries = 1
    return earlier_cycles + redeliveries


@dataclass(frozen=True)
class RetrySchedules:
    """Delay steps in seconds, per reason."""

    transient: list[int]
    unknown_user: list[int]

    def for_reason(self, reason: Reason) -> list[int]:
        return self.unknown_user if reason is Reason.UNKNOWN_USER else self.transient

    def all_delays(self) -> list[int]:
        return sorted(set(self.transient) | set(self.unknown_user))

    @property
    def total_cycles(self) -> int:
        """Delay-queue cycles an event may make in all: each schedule once, whatever the order of reasons."""
        return len(self.transient) + len(self.unknown_user)


class Settler:
    """Settles deliveries: acknowledgements go through the channel's AckWindow."""

    def __init__(self, publisher: ConfirmedPublisher, schedules: RetrySchedules, hold_limit: int = 256) -> None:
        self.publisher = publisher
        self.schedules = schedules
        self.window = AckWindow(hold_limit)

    def received(self, message: Delivery) -> None:
        self.window.received(message)

    async def ack(self, message: Delivery) -> bool:
        """Acknowledge (with the channel's next settled prefix); False when its channel is gone."""
        return bool(await self.window.ack([message]))

    async def ack_many(self, messages: list[Delivery]) -> set[int]:
        """Acknowledge committed deliveries; returns the `id()` of those whose channel was open."""
        return await self.window.ack(messages)

    async def dead_letter(self, message: Delivery, reason: Reason, detail: str, attempts: int) -> Settled:
        """Publish the original body to the dead-letter queue with the reason, then ack."""
        ours = {
            HEADER_REASON: str(reason),
            HEADER_ATTEMPTS: attempts,
            HEADER_DEAD_LETTERED_AT: datetime.now(UTC).replace(microsecond=0),
        }
        return await self._republish_then_ack(message, ours, DEAD_LETTER_QUEUE, Settled.DEAD_LETTERED, detail=detail)

    async def retry(self, message: Delivery, error: RetryLater, attempts: int) -> Settled:
        """Send the event round a delay queue, or dead-letter it once its schedule or the total budget is spent."""
        headers_in = message.headers or {}
        schedule = self.schedules.for_reason(error.reason)
        same_reason = str(headers_in.get(HEADER_RETRY_REASON, "")) == str(error.reason)
        step = _as_int(headers_in.get(HEADER_RETRY_STEP)) + 1 if same_reason else 0
        cycles = max(0, _as_int(headers_in.get(HEADER_RETRY_CYCLES)))
        if step >= len(schedule):
            return await self.dead_letter(message, error.reason, error.detail, attempts)
        if cycles >= self.schedules.total_cycles:
            detail = f"{error.detail}; retry budget spent ({cycles} delay-queue cycles in all)"
            return await self.dead_letter(message, error.reason, detail, attempts)
        ours = {
            HEADER_ATTEMPTS: attempts,
            HEADER_RETRY_REASON: str(error.reason),
            HEADER_RETRY_STEP: step,
            HEADER_RETRY_CYCLES: cycles + 1,
        }
        return await self._republish_then_ack(message, ours, delay_queue_name(schedule[step]), Settled.RETRIED)

    async def _republish_then_ack(
        self, message: Delivery, ours: dict[str, Any], queue: str, outcome: Settled, detail: str | None = None
    ) -> Settled:
        try:
            headers = _carried_headers(message.headers)
            headers.update(ours)
            copy, notes = copy_message(message, _with_origin(message, headers), detail=detail)
            if notes:
                log.warning("copy_made_encodable", queue=queue, changes=len(notes), notes=notes[:MAX_NOTES])
            await self.publisher.publish(copy, routing_key=queue)
        except Exception as exc:  # noqa: BLE001 - whatever fails here, the delivery goes back to the broker
            reason = str(exc) if isinstance(exc, PublishFailed) else None
            log.error("republish_failed", queue=queue, error=type(exc).__name__, reason=reason)
            await self.requeue(message)
            return Settled.REQUEUED
        await self.ack(message)
        return outcome

    async def requeue(self, message: Delivery) -> None:
        """Hand the delivery back to the broker (after a pause, so a broken path cannot spin)."""
        await asyncio.sleep(REQUEUE_PAUSE_S)
        await self.window.settle_alone(message, requeue=True)


def copy_message(
    message: Delivery | AbstractIncomingMessage, headers: Mapping[str, Any], detail: str | None = None
) -> tuple[aio_pika.Message, list[str]]:
    """The original body byte for byte and its properties, with the given headers; and notes of what
    had to change so that the copy can be encoded at all (`worker.broker.headers`).

    With `detail`, the copy's `x-error-detail` is that detail followed by the notes.
    `user_id` is left out (the broker refuses one that is not the publishing user) and so
    is `expiration` (a dead-lettered event must not expire from the dead-letter queue).
    """
    safe_headers, notes = encodable_table(headers)
    properties, property_notes = _encodable_properties(message)
    notes += property_notes
    if detail is not None:
        safe_headers[HEADER_DETAIL] = with_notes(detail, notes)
    return aio_pika.Message(body=message.body, headers=safe_headers, **properties), notes


def with_notes(detail: str, notes: list[str]) -> str:
    """`detail`, then the first notes and how many more there were, within `x-error-detail`'s limit."""
    shown = notes[:MAX_NOTES]
    if len(notes) > len(shown):
        shown.append(f"{len(notes) - len(shown)} more headers changed")
    text = "; ".join([detail, *shown]) if shown else detail
    return text[:MAX_DETAIL_CHARS]


def _encodable_properties(message: Delivery | AbstractIncomingMessage) -> tuple[dict[str, Any], list[str]]:
    """The properties to copy, each one AMQP can carry; what it cannot is replaced or left out."""
    notes: list[str] = []
    values: dict[str, Any] = {}
    for name in TEXT_PROPERTIES:
        value = getattr(message, name)
        if value is None or _is_short_string(value):
            values[name] = value
        else:
            notes.append(f"property {name} dropped (not text of at most 255 UTF-8 bytes)")
    mode = message.delivery_mode
    if mode is None:
        values["delivery_mode"] = aio_pika.DeliveryMode.PERSISTENT
    elif isinstance(mode, int) and not isinstance(mode, bool) and mode in (1, 2):
        values["delivery_mode"] = int(mode)
    else:
        values["delivery_mode"] = aio_pika.DeliveryMode.PERSISTENT
        notes.append("property delivery_mode replaced by 2 (persistent): it was neither 1 nor 2")
    priority = message.priority
    if priority is None or (isinstance(priority, int) and not isinstance(priority, bool) and 0 <= priority <= 255):
        values["priority"] = priority
    else:
        notes.append("property priority dropped (not an integer from 0 to 255)")
    timestamp = message.timestamp
    if timestamp is None or _is_timestamp(timestamp):
        values["timestamp"] = timestamp
    else:
        notes.append("property timestamp dropped (not a time AMQP can carry)")
    return values, notes


def _is_short_string(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return len(value.encode("utf-8")) <= SHORT_STRING_BYTES
    except UnicodeEncodeError:
        return False


def _is_timestamp(value: Any) -> bool:
    """A datetime AMQP can carry: whole seconds since the epoch in 64 unsigned bits."""
    if not isinstance(value, datetime):
        return False
    aware = value if value.tzinfo is not None and value.utcoffset() is not None else value.replace(tzinfo=UTC)
    try:
        seconds = int(aware.timestamp())
    except (OverflowError, ValueError, OSError):
        return False
    return 0 <= seconds < 2**64


def _carried_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (headers or {}).items() if k not in BROKER_HISTORY_HEADERS}


def _with_origin(message: Delivery | AbstractIncomingMessage, headers: dict[str, Any]) -> dict[str, Any]:
    """Remember the gateway's routing key: a copy is published under a queue's name instead."""
    if HEADER_ORIGINAL_ROUTING_KEY not in headers and message.routing_key:
        headers[HEADER_ORIGINAL_ROUTING_KEY] = message.routing_key
    return headers


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0
