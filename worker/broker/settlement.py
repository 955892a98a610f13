"""The one place that turns an outcome into ack, retry (delay queue) or dead-letter.

A delivery is acknowledged only after what it caused is durable: the commit for an
applied event, the confirmed publish for a retry or a dead-letter copy.
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
from worker.broker.publisher import ConfirmedPublisher, PublishFailed
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
# Headers describing the broker's or our own history of a copy; never carried over.
BROKER_HISTORY_HEADERS = (HEADER_DEATH, HEADER_DELIVERY_COUNT, "x-first-death-exchange",
                          "x-first-death-queue", "x-first-death-reason", "x-last-death-exchange",
                          "x-last-death-queue", "x-last-death-reason")
REQUEUE_PAUSE_S = 1.0


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

    async def dead_letter(self, message: Delivery, reason: Reason, detail: str, attempts: int) -> str:
        """Publish the original body to the dead-letter queue with the reason, then ack."""
        headers = _carried_headers(message.headers)
        headers.update(
            {
                HEADER_REASON: str(reason),
                HEADER_DETAIL: detail[:500],
                HEADER_ATTEMPTS: attempts,
                HEADER_DEAD_LETTERED_AT: datetime.now(UTC).replace(microsecond=0),
            }
        )
        return await self._republish_then_ack(message, headers, DEAD_LETTER_QUEUE, "dead_lettered")

    async def retry(self, message: Delivery, error: RetryLater, attempts: int) -> str:
        """Send the event round a delay queue, or dead-letter it once its schedule is spent."""
        headers_in = message.headers or {}
        schedule = self.schedules.for_reason(error.reason)
        same_reason = str(headers_in.get(HEADER_RETRY_REASON, "")) == str(error.reason)
        step = _as_int(headers_in.get(HEADER_RETRY_STEP)) + 1 if same_reason else 0
        if step >= len(schedule):
            return await self.dead_letter(message, error.reason, error.detail, attempts)
        headers = _carried_headers(headers_in)
        headers.update({HEADER_ATTEMPTS: attempts, HEADER_RETRY_REASON: str(error.reason), HEADER_RETRY_STEP: step})
        return await self._republish_then_ack(message, headers, delay_queue_name(schedule[step]), "retried")

    async def _republish_then_ack(
        self, message: Delivery, headers: dict[str, Any], queue: str, outcome: str
    ) -> str:
        copy = copy_message(message, _with_origin(message, headers))
        try:
            await self.publisher.publish(copy, routing_key=queue)
        except PublishFailed as exc:
            log.error("republish_failed", queue=queue, error=str(exc))
            await self.requeue(message)
            return "requeued"
        await self.ack(message)
        return outcome

    async def requeue(self, message: Delivery) -> None:
        """Hand the delivery back to the broker (after a pause, so a broken path cannot spin)."""
        await asyncio.sleep(REQUEUE_PAUSE_S)
        await self.window.settle_alone(message, requeue=True)


def copy_message(message: Delivery | AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    """The original body byte for byte and its properties, with the given headers.

    `user_id` is left out (the broker refuses one that is not the publishing user) and so
    is `expiration` (a dead-lettered event must not expire from the dead-letter queue).
    """
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=message.delivery_mode or aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


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
