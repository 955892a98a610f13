"""Which deliveries of a channel one multiple-ack may cover.

Delivery tags on a channel count up from 1 with every delivery. A multiple-ack of tag T
settles every outstanding tag ≤ T, so it is exact only when every tag ≤ T has been
received here (aiormq hands deliveries over in separate tasks, which may run out of
order) and every such tag still unsettled belongs to the deliveries being acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractIncomingMessage


@dataclass
class _Channel:
    channel: Any
    received_through: int = 0
    """Every tag ≤ this has been received."""
    received_above: set[int] = field(default_factory=set)
    unsettled: set[int] = field(default_factory=set)


def channel_of(message: AbstractIncomingMessage) -> Any | None:
    """The delivery's channel, or None once it is closed (its deliveries are void then)."""
    try:
        return message.channel
    except Exception:  # noqa: BLE001 - aio-pika raises when the channel is closed
        return None


class AckWindow:
    """Tracks received and unsettled delivery tags per channel."""

    def __init__(self) -> None:
        self._channels: dict[int, _Channel] = {}

    def received(self, message: AbstractIncomingMessage) -> None:
        channel = channel_of(message)
        if channel is None:
            return
        state = self._channels.get(id(channel))
        if state is None or state.channel is not channel:
            self._prune()
            state = self._channels[id(channel)] = _Channel(channel)
        tag = message.delivery_tag
        state.unsettled.add(tag)
        state.received_above.add(tag)
        while state.received_through + 1 in state.received_above:
            state.received_through += 1
            state.received_above.discard(state.received_through)

    def settled(self, message: AbstractIncomingMessage) -> None:
        channel = channel_of(message)
        state = self._channels.get(id(channel)) if channel is not None else None
        if state is not None and state.channel is channel:
            state.unsettled.discard(message.delivery_tag)

    def multiple_ack_covers_exactly(self, messages: list[AbstractIncomingMessage]) -> bool:
        """True when acking the highest tag of `messages` with multiple=True settles exactly them."""
        channel = channel_of(messages[0])
        state = self._channels.get(id(channel)) if channel is not None else None
        if state is None or state.channel is not channel:
            return False
        tags = {m.delivery_tag for m in messages}
        top = max(tags)
        if top > state.received_through:
            return False
        return all(tag in tags for tag in state.unsettled if tag <= top)

    def _prune(self) -> None:
        for key, state in list(self._channels.items()):
            if state.channel.is_closed:
                del self._channels[key]
