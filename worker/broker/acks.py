"""Acknowledgements of one consuming channel, sent as multiple-acks over settled prefixes.

Delivery tags on a channel count up from 1. A multiple-ack of tag T settles every
outstanding tag ≤ T, so it is sent only for a prefix whose every tag was received here
and is ready to be acknowledged: committed, or safely copied to a retry or dead-letter
queue. (The worker's inline consumer receives in tag order; aiormq's own path, which it
falls back to, may not.) A delivery that holds the prefix back for long does not hold
the others: past a limit the waiting ones are acknowledged one by one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog

from worker.broker.delivery import Delivery

log = structlog.get_logger(__name__)


def channel_of(message: Delivery) -> Any | None:
    """The delivery's channel, or None once it is closed (its deliveries are void then)."""
    try:
        return message.channel
    except Exception:  # noqa: BLE001 - an aio-pika message raises when its channel is closed
        return None


@dataclass
class _Channel:
    channel: Any
    received_through: int = 0
    """Every tag ≤ this has been received."""
    received_above: set[int] = field(default_factory=set)
    settled_through: int = 0
    """Every tag ≤ this is settled with the broker (acked or nacked)."""
    ready: dict[int, Delivery] = field(default_factory=dict)
    """Ready to acknowledge, above `settled_through`."""
    settled_alone: set[int] = field(default_factory=set)
    """Acked or nacked one by one, above `settled_through`."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class AckWindow:
    """Tracks deliveries per channel and acknowledges them as late and as few times as is exact."""

    def __init__(self, hold_limit: int = 256) -> None:
        self.hold_limit = hold_limit
        self._channels: dict[int, _Channel] = {}

    def received(self, message: Delivery) -> None:
        state = self._state(message, create=True)
        if state is None:
            return
        state.received_above.add(message.delivery_tag)
        while state.received_through + 1 in state.received_above:
            state.received_through += 1
            state.received_above.discard(state.received_through)

    async def ack(self, messages: list[Delivery]) -> set[int]:
        """Mark deliveries ready and send what acknowledgements are now exact.

        Returns the `id()` of each message whose channel was still open (its acknowledgement is
        sent now or with a later prefix); acknowledgements on a closed channel are dropped.
        """
        accepted: set[int] = set()
        by_state: dict[int, tuple[_Channel, list[Delivery]]] = {}
        for message in messages:
            state = self._state(message)
            if state is None:
                log.warning("ack_dropped", delivery_tag=message.delivery_tag, reason="channel closed")
                continue
            by_state.setdefault(id(state), (state, []))[1].append(message)
        for state, group in by_state.values():
            async with state.lock:
                for message in group:
                    if message.settled:
                        log.warning("settled_twice_refused", delivery_tag=message.delivery_tag)
                        continue
                    state.ready[message.delivery_tag] = message
                    message.settled = True
                    accepted.add(id(message))
                await self._release(state)
        return accepted

    async def settle_alone(self, message: Delivery, *, requeue: bool) -> None:
        """Nack one delivery (requeue) now, in step with the prefix acknowledgements."""
        state = self._state(message)
        if state is None:
            log.warning("nack_dropped", delivery_tag=message.delivery_tag, reason="channel closed")
            return
        async with state.lock:
            if message.settled:
                # NOTE: a second settlement of one tag is a protocol error: the broker closes the channel.
                log.warning("settled_twice_refused", delivery_tag=message.delivery_tag)
                return
            message.settled = True
            try:
                await message.nack(requeue=requeue)
            except Exception as exc:  # noqa: BLE001
                log.warning("nack_dropped", delivery_tag=message.delivery_tag, error=type(exc).__name__)
            state.settled_alone.add(message.delivery_tag)
            await self._release(state)

    async def _release(self, state: _Channel) -> None:
        """Send one multiple-ack for the settled prefix; acknowledge long-held ones alone."""
        tag, top = state.settled_through, None
        while tag + 1 <= state.received_through and (tag + 1 in state.ready or tag + 1 in state.settled_alone):
            tag += 1
            if tag in state.ready:
                top = tag
        if tag > state.settled_through:
            if top is not None:
                await _send_ack(state.ready[top], multiple=True)
            state.ready = {t: m for t, m in state.ready.items() if t > tag}
            state.settled_alone = {t for t in state.settled_alone if t > tag}
            state.settled_through = tag
        if len(state.ready) > self.hold_limit:
            for t, message in sorted(state.ready.items()):
                await _send_ack(message, multiple=False)
                state.settled_alone.add(t)
            state.ready.clear()

    def _state(self, message: Delivery, *, create: bool = False) -> _Channel | None:
        channel = channel_of(message)
        if channel is None:
            return None
        state = self._channels.get(id(channel))
        if state is not None and state.channel is channel:
            return state
        if not create:
            return None
        for key, old in list(self._channels.items()):
            if old.channel.is_closed:
                del self._channels[key]
        state = self._channels[id(channel)] = _Channel(channel)
        return state


async def _send_ack(message: Delivery, *, multiple: bool) -> None:
    try:
        await message.ack(multiple=multiple)
    except Exception as exc:  # noqa: BLE001 - any failure means the same: not acked
        # NOTE: a delivery tag belongs to its channel; it is never re-sent on a new one.
        log.warning("ack_dropped", delivery_tag=message.delivery_tag, error=type(exc).__name__)
