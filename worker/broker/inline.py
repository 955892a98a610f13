"""Deliveries handed to a plain function inside aiormq's channel reader: no task per delivery.

aiormq reads a delivery's frames in the channel's reader task and then starts one task
per delivery to run the consumer callback (plus a done callback and a tracking set). The
worker's callback only files the delivery in a buffer, so that task is pure cost: about
a quarter of what receiving a delivery costs. `enable_inline_deliveries` makes the
channel call such a callback directly, in the reader, for consumers made with
`inline_consumer`; every other consumer on the channel keeps aiormq's own path.

The callback may return an awaitable: the reader awaits it before it reads the next frame,
which is how the consumer applies backpressure. The channel's frame queue is bounded, so
a reader that waits soon stops aiormq's connection reader, and the broker's socket is
not read until there is room again. aiormq takes a connection that received nothing for
three heartbeats for a dead one and closes it (every unsettled delivery would come back,
a step nearer the queue's delivery limit), so while the reader waits on purpose the hook
moves aiormq's last-frame clock on (`_Connection__last_frame_time`, the one other
internal used here). The link's own liveness is checked again once reading resumes.

A consumer cancelled with `cancel_consumer` (without waiting for the broker's CancelOk,
which a waiting reader could not read) still receives the deliveries the broker sent
before it saw the cancel, instead of aiormq dropping them unsettled.

It hooks aiormq's channel (`_on_deliver_frame`, `_get_frame`, `consumers`); when a
release lacks them the channel is left alone and the callback still works, through
aiormq's task, as an ordinary consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiormq.abc import DeliveredMessage
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

log = structlog.get_logger(__name__)

OnMessage = Callable[[DeliveredMessage], Awaitable[None] | None]
_HOOKS = ("_on_deliver_frame", "_get_frame", "consumers")
_LAST_FRAME_TIME = "_Connection__last_frame_time"
KEEPALIVE_S = 1.0
# Cancelled inline consumers remembered per channel for their late deliveries (a few flaps' worth).
_REMEMBERED_CANCELS = 16


def inline_consumer(on_message: OnMessage) -> Callable[[DeliveredMessage], Awaitable[None]]:
    """A consumer callback for `basic_consume` that an inline channel runs without a task."""

    async def callback(message: DeliveredMessage) -> None:
        waiter = on_message(message)
        if waiter is not None:
            await waiter

    callback.inline = on_message  # type: ignore[attr-defined]
    return callback


def enable_inline_deliveries(channel: Any) -> bool:
    """Make `channel` (an aiormq channel) run inline consumers in its reader; idempotent.

    Returns whether it did: False when this aiormq does not have the hooks.
    """
    if getattr(channel, "_inline_deliveries", False):
        return True
    if not all(hasattr(channel, name) for name in _HOOKS):
        log.warning("inline_deliveries_unavailable")
        return False
    aiormq_path = channel._on_deliver_frame
    get_frame = channel._get_frame

    async def on_deliver_frame(frame: Any) -> None:
        consumer = channel.consumers.get(frame.consumer_tag) or channel._inline_cancelled.get(frame.consumer_tag)
        on_message = getattr(consumer, "inline", None)
        if on_message is None:
            await aiormq_path(frame)
            return
        header = await get_frame()
        if not isinstance(header, ContentHeader):
            raise ValueError(f"Unexpected frame {header!r} instead of ContentHeader", header)
        parts = []
        received = 0
        while received < header.body_size:
            content = await get_frame()
            if not isinstance(content, ContentBody):
                raise ValueError(f"Unexpected frame {content!r}", content)
            parts.append(content.value)
            received += len(content.value)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        message = DeliveredMessage(delivery=frame, header=header, body=body, channel=channel)
        try:
            waiter = on_message(message)
            if waiter is not None:
                await _paused(channel.connection, waiter)
        except Exception:  # noqa: BLE001 - a failing callback must not close the channel's reader
            log.exception("inline_consumer_failed")

    channel._on_deliver_frame = on_deliver_frame
    channel._inline_cancelled = {}
    channel._inline_deliveries = True
    return True


async def _paused(connection: Any, waiter: Awaitable[None]) -> None:
    """Await `waiter`, telling aiormq every second meanwhile that the silence is ours, not a dead link."""
    task = asyncio.ensure_future(waiter)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=KEEPALIVE_S)
            if not task.done() and hasattr(connection, _LAST_FRAME_TIME):
                setattr(connection, _LAST_FRAME_TIME, connection.loop.time())
        task.result()
    finally:
        task.cancel()


async def cancel_consumer(channel: Any, consumer_tag: str) -> None:
    """basic.cancel; on an inline channel without waiting for CancelOk, keeping late deliveries coming."""
    if not getattr(channel, "_inline_deliveries", False):
        await channel.basic_cancel(consumer_tag)
        return
    callback = channel.consumers.get(consumer_tag)
    if callback is not None:
        remembered = channel._inline_cancelled
        remembered[consumer_tag] = callback
        while len(remembered) > _REMEMBERED_CANCELS:
            del remembered[next(iter(remembered))]
    await channel.basic_cancel(consumer_tag, nowait=True)
